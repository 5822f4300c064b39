"""Networks: the teacher (torchvision SSDlite + LR-ASPP), the slimmable split student."""
