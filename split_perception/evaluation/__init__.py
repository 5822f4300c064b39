"""Accuracy and size measurement: COCO mAP (pycocotools), mIoU, real bitstream sizes."""
