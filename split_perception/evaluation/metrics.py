"""COCO detection mAP through pycocotools and segmentation mIoU from a confusion matrix."""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def xywh(box) -> list[float]:
    """An (x1, y1, x2, y2) box as COCO's [x, y, width, height]."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def coco_results(image_id: int, dets, cat_ids) -> list[dict]:
    """Detections (`box` x1, y1, x2, y2, `label_id` 1..K, `score`) -> COCO results (xywh boxes, the
    dataset's category ids)."""
    return [{"image_id": image_id, "category_id": cat_ids[int(d.label_id) - 1], "bbox": xywh(d.box),
             "score": float(d.score)} for d in dets]


def coco_map(gt: COCO, results: list[dict], image_ids: list[int]) -> dict[str, float]:
    """mAP@[.5:.95] and mAP@.5 of COCO-format `results` on `image_ids` (0.0 when nothing detected)."""
    if not results:
        return {"map": 0.0, "map50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"map": max(0.0, float(ev.stats[0])), "map50": max(0.0, float(ev.stats[1]))}


class ConfusionMatrix:
    """Accumulates pixel counts; mIoU averages IoU over classes that occur (background included)."""

    def __init__(self, num_classes: int):
        self.n = num_classes
        self.m = np.zeros((num_classes, num_classes), np.int64)

    def update(self, truth: np.ndarray, pred: np.ndarray) -> None:
        k = (truth.astype(np.int64) * self.n + pred.astype(np.int64)).ravel()
        self.m += np.bincount(k, minlength=self.n * self.n).reshape(self.n, self.n)

    def miou(self) -> float:
        inter = np.diag(self.m)
        union = self.m.sum(0) + self.m.sum(1) - inter
        valid = union > 0
        return float((inter[valid] / union[valid]).mean()) if valid.any() else 0.0


def semantic_truth(coco: COCO, label_of: dict, image_id: int, size: tuple[int, int]) -> np.ndarray:
    """Class-id mask (0 = background) of an image's ground-truth instance masks."""
    sem = np.zeros(size, np.uint8)
    for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False)):
        sem[coco.annToMask(a).astype(bool)] = label_of[a["category_id"]]
    return sem
