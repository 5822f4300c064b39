"""NanoDet's GFL head outputs -> detections (numpy only, so it runs onboard or offboard without torch).

Per stride level the model gives class scores (1, N, C), already through a sigmoid, and box
distributions (1, N, 4 * (reg_max + 1)): for each side (left, top, right, bottom) logits over the
distances 0..reg_max in units of the stride. As upstream RangiLyu/nanodet (v0.x `GFLHead.get_bboxes_single`,
`Integral`, `distance2bbox`, `multiclass_nms`): softmax per side, the expected distance times the
stride measured from the cell centre ((col + 0.5) * stride, (row + 0.5) * stride), boxes clamped to
the input; per level only the `pre_nms_top_k` points with the highest class score stay; every
(point, class) pair above `score_threshold` is a candidate; NMS per class; the best `max_detections`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from .detections import Detection, class_wise_nms
from .heads import register_head
from .letterbox import Letterbox


@dataclass(frozen=True)
class Level:
    """One stride level: its stride, grid size and the model outputs holding its scores and distributions."""

    stride: int
    rows: int
    cols: int
    cls_output: str
    dis_output: str

    def centres(self) -> np.ndarray:
        """(rows * cols, 2) cell centres (x, y) in input pixels, row-major as the outputs."""
        y, x = np.meshgrid((np.arange(self.rows) + 0.5) * self.stride, (np.arange(self.cols) + 0.5) * self.stride,
                           indexing="ij")
        return np.stack([x.ravel(), y.ravel()], axis=1).astype(np.float32)


def expected_distances(logits: np.ndarray, reg_max: int) -> np.ndarray:
    """(N, 4 * (reg_max + 1)) logits -> (N, 4) expected bin per side (softmax-weighted mean of 0..reg_max)."""
    x = logits.reshape(-1, 4, reg_max + 1).astype(np.float32)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)) @ np.arange(reg_max + 1, dtype=np.float32)


@register_head("nanodet_gfl")
@dataclass(frozen=True)
class NanoDetGFL:
    """Decoder of NanoDet's generalized-focal-loss head (legacy v0.x export: six outputs, one pair per stride)."""

    levels: tuple[Level, ...]
    num_classes: int
    reg_max: int
    input_width: int
    input_height: int
    score_threshold: float
    iou_threshold: float
    max_detections: int
    pre_nms_top_k: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any], input_width: int, input_height: int,
                    num_classes: int) -> "NanoDetGFL":
        try:
            outputs = {int(stride): names for stride, names in params["outputs"].items()}
            levels = tuple(Level(s, math.ceil(input_height / s), math.ceil(input_width / s),
                                 str(outputs[s]["cls"]), str(outputs[s]["dis"])) for s in params["strides"])
            head = cls(levels, num_classes, int(params["reg_max"]), input_width, input_height,
                       float(params["score_threshold"]), float(params["iou_threshold"]),
                       int(params["max_detections"]), int(params["pre_nms_top_k"]))
        except KeyError as missing:
            raise ConfigError(f"nanodet_gfl head: missing {missing}") from None
        except (TypeError, ValueError, AttributeError) as bad:
            raise ConfigError(f"nanodet_gfl head: malformed parameters ({bad})") from None
        if head.reg_max < 1 or not 0 <= head.score_threshold < 1 or not 0 < head.iou_threshold <= 1 \
                or head.max_detections < 1 or head.pre_nms_top_k < 1:
            raise ConfigError(f"nanodet_gfl head: parameters out of range: {params}")
        return head

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(name for level in self.levels for name in (level.cls_output, level.dis_output))

    @property
    def score_outputs(self) -> tuple[str, ...]:
        """The outputs holding class scores (probabilities): what output distillation treats as such."""
        return tuple(level.cls_output for level in self.levels)

    def _level_candidates(self, level: Level, scores: np.ndarray, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(boxes (K, 4) in input pixels, scores (K, C)) of one level after the top-k preselection."""
        n = level.rows * level.cols
        if scores.shape != (n, self.num_classes) or logits.shape != (n, 4 * (self.reg_max + 1)):
            raise ConfigError(f"stride {level.stride}: outputs {scores.shape}, {logits.shape} do not fit a "
                              f"{level.rows}x{level.cols} grid of {self.num_classes} classes, reg_max {self.reg_max}")
        centres = level.centres()
        if n > self.pre_nms_top_k:
            top = np.argsort(-scores.max(axis=1), kind="stable")[:self.pre_nms_top_k]
            centres, scores, logits = centres[top], scores[top], logits[top]
        distances = expected_distances(logits, self.reg_max) * np.float32(level.stride)
        boxes = np.concatenate([centres - distances[:, :2], centres + distances[:, 2:]], axis=1)
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, self.input_width)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, self.input_height)
        return boxes, scores

    def decode_one(self, outputs: Mapping[str, np.ndarray], index: int, letterbox: Letterbox) -> list[Detection]:
        """Detections (source-image pixels) of image `index` of a batch of outputs."""
        per_level = [self._level_candidates(level, np.asarray(outputs[level.cls_output][index], np.float32),
                                            np.asarray(outputs[level.dis_output][index], np.float32))
                     for level in self.levels]
        boxes = np.concatenate([b for b, _ in per_level])
        scores = np.concatenate([s for _, s in per_level])
        points, labels = np.nonzero(scores > self.score_threshold)
        boxes, scores = boxes[points], scores[points, labels]
        keep = class_wise_nms(boxes, scores, labels, self.iou_threshold, self.max_detections)
        source = letterbox.to_source(boxes[keep])
        return [Detection(tuple(float(v) for v in box), int(label), float(score))
                for box, label, score in zip(source, labels[keep], scores[keep])]

    def decode(self, outputs: Mapping[str, np.ndarray], letterboxes: Sequence[Letterbox]) -> list[list[Detection]]:
        """One list of detections per image; `letterboxes[i]` is how image i was fitted to the input."""
        return [self.decode_one(outputs, i, lb) for i, lb in enumerate(letterboxes)]
