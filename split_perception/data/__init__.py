"""Data: synthetic scene generator and COCO-format datasets."""
