"""Anchor-based SSD outputs, as MediaPipe decodes them -> detections (numpy only, so it runs onboard or offboard).

The model gives, per anchor, a box encoding (y, x, h, w: TF Object Detection API order) and class logits
(with a background column first when `background_class`). Anchors are those of MediaPipe's
SsdAnchorsCalculator (`GenerateAnchors`, not the multiscale variant): per stride level a grid of
ceil(input / stride) cells with offset centres; the lowest level optionally only three boxes (scale 0.1
at ratio 1, the layer scale at ratios 2 and 0.5); the other levels one box per aspect ratio plus one at
`interpolated_scale_aspect_ratio` with the geometric mean of this and the next layer's scale; consecutive
levels with the same stride share a grid. Decoding follows TensorsToDetectionsCalculator with
`apply_exponential_on_box_size`: centre = encoding / scale * anchor size + anchor centre, size =
exp(encoding / scale) * anchor size; a box's score is the highest (sigmoid) class score, background
excluded, kept when at least `score_threshold`. MediaPipe's NonMaxSuppressionCalculator then suppresses
across classes; here NMS runs per class, as for every teacher, so that overlapping objects of different
classes (a Car inside a Vehicle) both stay.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ..errors import ConfigError
from .detections import Detection, class_wise_nms
from .heads import register_head
from .letterbox import Letterbox

F32 = np.float32


@dataclass(frozen=True)
class AnchorOptions:
    """SsdAnchorsCalculatorOptions' fields for grid anchors (sizes relative to the input)."""

    strides: tuple[int, ...]
    min_scale: float
    max_scale: float
    aspect_ratios: tuple[float, ...]
    anchor_offset_x: float
    anchor_offset_y: float
    reduce_boxes_in_lowest_layer: bool
    interpolated_scale_aspect_ratio: float

    def scale(self, layer: int) -> np.float32:
        """CalculateScale: min_scale + (max_scale - min_scale) * layer / (layers - 1), in the C++'s precisions."""
        if len(self.strides) == 1:
            return F32((F32(self.min_scale) + F32(self.max_scale)) * F32(0.5))
        span = float(F32(self.max_scale) - F32(self.min_scale))
        return F32(float(F32(self.min_scale)) + span * layer / float(len(self.strides) - 1))

    def _shapes(self, first: int, last: int) -> list[tuple[np.float32, np.float32]]:
        """(scale, aspect ratio) of the boxes at each cell of layers first..last (one stride)."""
        shapes = []
        for layer in range(first, last + 1):
            scale = self.scale(layer)
            if layer == 0 and self.reduce_boxes_in_lowest_layer:
                shapes += [(F32(0.1), F32(1.0)), (scale, F32(2.0)), (scale, F32(0.5))]
                continue
            shapes += [(scale, F32(ratio)) for ratio in self.aspect_ratios]
            if self.interpolated_scale_aspect_ratio > 0:
                following = F32(1.0) if layer == len(self.strides) - 1 else self.scale(layer + 1)
                shapes.append((np.sqrt(scale * following), F32(self.interpolated_scale_aspect_ratio)))
        return shapes

    def anchors(self, input_width: int, input_height: int) -> np.ndarray:
        """(N, 4) float32 anchors (x_centre, y_centre, width, height) relative to the input, in the model's order."""
        out, first = [], 0
        while first < len(self.strides):
            last = first
            while last + 1 < len(self.strides) and self.strides[last + 1] == self.strides[first]:
                last += 1
            shapes = self._shapes(first, last)
            sizes = np.array([(s * np.sqrt(r), s / np.sqrt(r)) for s, r in shapes], F32)  # (width, height)
            rows = math.ceil(input_height / self.strides[first])
            cols = math.ceil(input_width / self.strides[first])
            y = ((np.arange(rows, dtype=F32) + F32(self.anchor_offset_y)) / F32(rows)).astype(F32)
            x = ((np.arange(cols, dtype=F32) + F32(self.anchor_offset_x)) / F32(cols)).astype(F32)
            centres = np.stack(np.meshgrid(x, y, indexing="xy"), axis=-1).reshape(-1, 1, 2)  # row-major cells
            cells = np.concatenate([np.broadcast_to(centres, (rows * cols, len(shapes), 2)),
                                    np.broadcast_to(sizes, (rows * cols, len(shapes), 2))], axis=-1)
            out.append(cells.reshape(-1, 4))
            first = last + 1
        return np.concatenate(out).astype(F32)


@register_head("ssd_anchors")
@dataclass(frozen=True)
class SSDAnchors:
    """Decoder of an SSD with MediaPipe's grid anchors: raw box encodings and class logits, no NMS inside."""

    boxes_output: str
    scores_output: str
    anchor_options: AnchorOptions
    box_scales: tuple[float, float, float, float]  # x, y, w, h
    num_classes: int
    background_class: bool
    sigmoid_score: bool
    input_width: int
    input_height: int
    score_threshold: float
    iou_threshold: float
    max_detections: int

    @classmethod
    def from_params(cls, params: Mapping[str, Any], input_width: int, input_height: int,
                    num_classes: int) -> "SSDAnchors":
        try:
            a, scales = params["anchors"], params["box_scales"]
            options = AnchorOptions(
                tuple(int(s) for s in a["strides"]), float(a["min_scale"]), float(a["max_scale"]),
                tuple(float(r) for r in a["aspect_ratios"]), float(a["anchor_offset_x"]),
                float(a["anchor_offset_y"]), bool(a["reduce_boxes_in_lowest_layer"]),
                float(a["interpolated_scale_aspect_ratio"]))
            head = cls(str(params["outputs"]["boxes"]), str(params["outputs"]["scores"]), options,
                       tuple(float(scales[k]) for k in "xywh"), num_classes, bool(params["background_class"]),
                       bool(params["sigmoid_score"]), input_width, input_height, float(params["score_threshold"]),
                       float(params["iou_threshold"]), int(params["max_detections"]))
        except KeyError as missing:
            raise ConfigError(f"ssd_anchors head: missing {missing}") from None
        except (TypeError, ValueError, AttributeError) as bad:
            raise ConfigError(f"ssd_anchors head: malformed parameters ({bad})") from None
        if not options.strides or min(options.strides) < 1 or not options.aspect_ratios \
                or min(options.aspect_ratios) <= 0 or not 0 < options.min_scale <= options.max_scale \
                or min(head.box_scales) <= 0 or not 0 <= head.score_threshold < 1 \
                or not 0 < head.iou_threshold <= 1 or head.max_detections < 1:
            raise ConfigError(f"ssd_anchors head: parameters out of range: {params}")
        return head

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.boxes_output, self.scores_output

    @property
    def score_outputs(self) -> tuple[str, ...]:
        """None: the class outputs are logits, which output distillation matches by squared error as the rest."""
        return ()

    @cached_property
    def anchors(self) -> np.ndarray:
        """(N, 4) anchors (x_centre, y_centre, width, height) relative to the input."""
        return self.anchor_options.anchors(self.input_width, self.input_height)

    def boxes(self, encodings: np.ndarray) -> np.ndarray:
        """(N, 4) y/x/h/w encodings, one per anchor -> (N, 4) xyxy boxes in input pixels."""
        x_scale, y_scale, w_scale, h_scale = (F32(s) for s in self.box_scales)
        ax, ay, aw, ah = self.anchors.T
        x = encodings[:, 1] / x_scale * aw + ax
        y = encodings[:, 0] / y_scale * ah + ay
        half_h = np.exp(encodings[:, 2] / h_scale) * ah / F32(2)
        half_w = np.exp(encodings[:, 3] / w_scale) * aw / F32(2)
        relative = np.stack([x - half_w, y - half_h, x + half_w, y + half_h], axis=1)
        return relative * np.array([self.input_width, self.input_height] * 2, F32)

    def decode_one(self, outputs: Mapping[str, np.ndarray], index: int, letterbox: Letterbox) -> list[Detection]:
        """Detections (source-image pixels) of image `index` of a batch of outputs."""
        encodings = np.asarray(outputs[self.boxes_output][index], F32)
        logits = np.asarray(outputs[self.scores_output][index], F32)
        n, columns = len(self.anchors), self.num_classes + self.background_class
        if encodings.shape != (n, 4) or logits.shape != (n, columns):
            raise ConfigError(f"ssd_anchors: outputs {encodings.shape}, {logits.shape} do not fit {n} anchors of "
                              f"{columns} score columns")
        logits = logits[:, int(self.background_class):]
        scores = F32(1) / (F32(1) + np.exp(-logits)) if self.sigmoid_score else logits
        labels = scores.argmax(axis=1)
        scores = scores[np.arange(n), labels]
        kept = np.flatnonzero(scores >= self.score_threshold)
        boxes, scores, labels = self.boxes(encodings)[kept], scores[kept], labels[kept]
        keep = class_wise_nms(boxes, scores, labels, self.iou_threshold, self.max_detections)
        source = letterbox.to_source(boxes[keep])
        return [Detection(tuple(float(v) for v in box), int(label), float(score))
                for box, label, score in zip(source, labels[keep], scores[keep])]

    def decode(self, outputs: Mapping[str, np.ndarray], letterboxes: Sequence[Letterbox]) -> list[list[Detection]]:
        """One list of detections per image; `letterboxes[i]` is how image i was fitted to the input."""
        return [self.decode_one(outputs, i, lb) for i, lb in enumerate(letterboxes)]
