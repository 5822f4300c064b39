"""COCO-format detection + segmentation datasets read through pycocotools."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import cv2
import numpy as np
import torch
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from ..errors import ConfigError
from ..onboard.preprocess import to_input_tensor


def load_coco(ann_path: str | Path) -> COCO:
    """Load an instances json quietly (pycocotools prints to stdout)."""
    ann_path = Path(ann_path)
    if not ann_path.is_file():
        raise ConfigError(f"annotations not found: {ann_path}")
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(ann_path))


def dataset_paths(root: str | Path) -> tuple[Path, Path]:
    """A dataset folder holds `annotations.json` and `images/`."""
    root = Path(root)
    ann, images = root / "annotations.json", root / "images"
    if not ann.is_file() or not images.is_dir():
        raise ConfigError(f"{root} is not a COCO dataset folder (needs annotations.json and images/); "
                          "make one with `split-perception make-dataset`")
    return ann, images


class CocoSceneDataset(Dataset):
    """Items: (normalized CHW tensor at input size, SSD target in input pixels, class-id mask, image id).

    Category ids of the json map to contiguous labels 1..K in the order of the json's categories.
    """

    def __init__(self, root: str | Path, input_size: tuple[int, int], mean, std, max_images: int = 0):
        ann, self.image_dir = dataset_paths(root)
        self.coco = load_coco(ann)
        self.ids = sorted(self.coco.getImgIds())
        if max_images:
            self.ids = self.ids[:max_images]
        self.cat_ids = sorted(self.coco.getCatIds())
        self.label_of = {c: i + 1 for i, c in enumerate(self.cat_ids)}
        self.input_size = tuple(input_size)
        self.mean, self.std = mean, std

    def __len__(self) -> int:
        return len(self.ids)

    def read_rgb(self, image_id: int) -> np.ndarray:
        info = self.coco.loadImgs(image_id)[0]
        bgr = cv2.imread(str(self.image_dir / info["file_name"]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ConfigError(f"cannot read image {self.image_dir / info['file_name']}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def __getitem__(self, idx: int):
        image_id = self.ids[idx]
        rgb = self.read_rgb(image_id)
        h, w = rgb.shape[:2]
        ih, iw = self.input_size
        sx, sy = iw / w, ih / h
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id, iscrowd=False))
        boxes, labels = [], []
        sem = np.zeros((h, w), np.uint8)
        for a in anns:
            x, y, bw, bh = a["bbox"]
            if bw < 1 or bh < 1:
                continue
            boxes.append([x * sx, y * sy, (x + bw) * sx, (y + bh) * sy])
            labels.append(self.label_of[a["category_id"]])
            sem[self.coco.annToMask(a).astype(bool)] = self.label_of[a["category_id"]]
        target = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
        }
        sem = cv2.resize(sem, (iw, ih), interpolation=cv2.INTER_NEAREST)
        return to_input_tensor(rgb, self.input_size, self.mean, self.std), target, torch.from_numpy(sem), image_id


def collate(batch):
    images, targets, masks, ids = zip(*batch)
    return torch.stack(images), list(targets), torch.stack(masks), list(ids)
