#!/usr/bin/env python3
"""Rebuild the Open Images SSD teacher (split_perception/assets/teachers/oid_ssd_mobilenetv2/) from its npm package.

MediaPipe's Objectron solution detects objects with an SSD MobileNetV2 trained on Open Images V4 (23
classes, 300x300 input, fp16 TFLite). The npm package @mediapipe/objectron (Apache-2.0) ships it inside
`objectron_solution_packed_assets.data`, an Emscripten file package: the label map, then the model. This script:

1. takes the package tarball (or runs `npm pack` for it) and checks its sha256 against the pinned one;
2. cuts the label map and the TFLite model out of the .data file at the byte ranges that the package's
   loader lists (checked against the pinned ones), and checks the labels;
3. converts the TFLite model with tf2onnx (opset 17, NCHW input), names the input, the two raw outputs and
   two backbone tensors clearly, numbers tf2onnx's generated names, and stores the convolution weights as
   fp16 initializers behind Cast nodes when the outputs stay within tolerance of the fp32 graph;
4. checks ONNX Runtime against the TFLite interpreter on real photos, preprocessed as MediaPipe's
   ImageToTensorCalculator does (whole image stretched to 300x300, RGB, values in [-1, 1]);
5. writes model.onnx, classes.txt, LICENSE and teacher.yaml (with every hash) into the output folder.

The anchor and decoding options in teacher.yaml are those of MediaPipe's graph for this model
(mediapipe/modules/objectron/object_detection_oid_v4_cpu.pbtxt: SsdAnchorsCalculator and
TensorsToDetectionsCalculator options). Run it from the conversion environment of requirements-convert.txt:

    /work/convert-venv/bin/python scripts/convert_objectron_ssd.py --photos test/data/photos
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
import tensorflow as tf
import tf2onnx
import yaml

from convert_nanodet import (APACHE_LICENSE, canonical_names, npm_tarball, rename_tensors, run_ort, sha256,
                             with_fp16_weights)

PACKAGE = "@mediapipe/objectron"
VERSION = "0.4.1675468480"
TARBALL_SHA256 = "fc3e37b326b05e8f596099c90b3e0931b05a56cd3160b9ac450b621794bac94c"
MEMBERS = {"data": "package/objectron_solution_packed_assets.data",
           "loader": "package/objectron_solution_packed_assets_loader.js", "package_json": "package/package.json"}
# byte ranges inside the .data file, as the package's loader lists them
PACKED_FILES = {"/object_detection_oidv4_labelmap.txt": (0, 184),
                "/third_party/mediapipe/modules/objectron/object_detection_ssd_mobilenetv2_oidv4_fp16.tflite":
                    (184, 9987912)}
LABELS_FILE, TFLITE_FILE = PACKED_FILES
OPSET = 17
INPUT_SIZE = 300
TFLITE_INPUT = "normalized_input_image_tensor"
INPUT_NAME = "image"
OUTPUT_NAMES = {"raw_outputs/box_encodings": "box_encodings", "raw_outputs/class_predictions": "class_predictions"}
# Ends of MobileNetV2 stages that alone separate the graph (the SSD head reads block 13's expansion and later).
BACKBONE_TENSORS = {"FeatureExtractor/MobilenetV2/expanded_conv_5/add": ("backbone_stride_8", [1, 32, 38, 38]),
                    "FeatureExtractor/MobilenetV2/expanded_conv_9/add": ("backbone_stride_16", [1, 64, 19, 19])}
SPLIT_TENSOR = "backbone_stride_16"
FP16_TOLERANCE = 1e-3  # largest acceptable |fp16 - fp32| of the raw box encodings and class logits
BACKGROUND_LABEL = "???"  # the label map's first line: the SSD's background class
CLASSES = ("Bicycle", "Boot", "Laptop", "Person", "Chair", "Cattle", "Desk", "Cat", "Computer mouse",
           "Computer monitor", "Box", "Mug", "Coffee cup", "Stationary bicycle", "Table", "Bottle", "High heels",
           "Vehicle", "Footwear", "Dog", "Book", "Camera", "Car")
# MediaPipe's graph for this model (object_detection_oid_v4_cpu.pbtxt)
MEDIAPIPE_GRAPH = "mediapipe/modules/objectron/object_detection_oid_v4_cpu.pbtxt"
MEDIAPIPE_COMMIT = "9d8807788567c01dbd998c0a3d0f730b9686912d"
ANCHORS = {"min_scale": 0.2, "max_scale": 0.95, "strides": [16, 32, 64, 128, 256, 512],
           "aspect_ratios": [1.0, 2.0, 0.5, 3.0, 0.3333], "anchor_offset_x": 0.5, "anchor_offset_y": 0.5,
           "reduce_boxes_in_lowest_layer": True, "interpolated_scale_aspect_ratio": 1.0}
BOX_SCALES = {"x": 10.0, "y": 10.0, "w": 5.0, "h": 5.0}
POSTPROCESS = {"sigmoid_score": True, "score_threshold": 0.5, "iou_threshold": 0.5, "max_detections": 100}


def fetch_tarball(given: Path | None, workdir: Path) -> bytes:
    """This package's tarball (see `convert_nanodet.npm_tarball`)."""
    return npm_tarball(PACKAGE, VERSION, TARBALL_SHA256, given, workdir)


def extract(tarball: bytes) -> dict[str, bytes]:
    """The label map, the TFLite model and package.json, cut out of the tarball's packed .data file."""
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        members = {key: tar.extractfile(name).read() for key, name in MEMBERS.items()}
    listed = re.search(r'"files": (\[.*?\])', members["loader"].decode())
    if listed is None:
        sys.exit("the package's loader lists no packed files")
    ranges = {f["filename"]: (f["start"], f["end"]) for f in json.loads(listed[1])}
    if ranges != PACKED_FILES or len(members["data"]) != max(end for _, end in ranges.values()):
        sys.exit(f"packed files {ranges} ({len(members['data'])} bytes) are not the pinned {PACKED_FILES}")
    (label_start, label_end), (model_start, model_end) = PACKED_FILES[LABELS_FILE], PACKED_FILES[TFLITE_FILE]
    files = {"labels": members["data"][label_start:label_end], "tflite": members["data"][model_start:model_end],
             "package_json": members["package_json"]}
    if files["tflite"][4:8] != b"TFL3":
        sys.exit("the model's bytes are not a TFLite flatbuffer")
    labels = files["labels"].decode().splitlines()
    if labels != [BACKGROUND_LABEL, *CLASSES]:
        sys.exit(f"unexpected label map {labels}")
    return files


def without_counters(name: str) -> str:
    return re.sub(r"__\d+", "", name)


def sort_nodes(model: onnx.ModelProto) -> None:
    """Put the nodes in one fixed topological order: of the nodes whose inputs are ready, the first by
    (op type, output names, input names) with tf2onnx's counters (`__<n>`) left out.

    tf2onnx orders independent branches (the box and class predictors of a level) differently from run
    to run; names without its counters are the TFLite model's own, the same every time."""
    graph = model.graph
    def key(node: onnx.NodeProto) -> tuple:
        return node.op_type, [without_counters(name) for name in [*node.output, *node.input]]
    ready_names = {i.name for i in [*graph.input, *graph.initializer]}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [node for node in pending if all(not name or name in ready_names for name in node.input)]
        if not ready:
            sys.exit("the converted graph has a cycle or a dangling input")
        node = min(ready, key=key)
        ordered.append(node)
        pending.remove(node)
        ready_names.update(node.output)
    del graph.node[:]
    graph.node.extend(ordered)


def number_constants(model: onnx.ModelProto) -> None:
    """Name the initializers `const_<k>` in order of first use (node, then input slot) and store them in that order.

    tf2onnx names shared constants after whichever of their duplicates it kept (`Relu6__84_min__391`), and
    that choice, like its counters, differs from run to run; numbering by use gives the same bytes every time."""
    graph, names = model.graph, {}
    initializers = {init.name for init in graph.initializer}
    for node in graph.node:
        for name in node.input:
            if name in initializers and name not in names:
                names[name] = f"const_{len(names)}"
    rename_tensors(model, names)
    inits = sorted(graph.initializer, key=lambda init: int(init.name.removeprefix("const_")))
    del graph.initializer[:]
    graph.initializer.extend(inits)


def mediapipe_input(path: Path) -> np.ndarray:
    """1 x 300 x 300 x 3 float32 (NHWC) as MediaPipe's ImageToTensorCalculator makes it on the CPU with this
    graph's options (keep_aspect_ratio false, range [-1, 1]): the RGB image's whole rectangle warped onto the
    tensor (cv::boxPoints -> cv::getPerspectiveTransform -> cv::warpPerspective, INTER_LINEAR, BORDER_REPLICATE),
    then `convertTo` with scale 2/255 and offset -1."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        sys.exit(f"cannot read {path}")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    src = cv2.boxPoints(((w / 2, h / 2), (w, h), 0.0)).astype(np.float32)
    size = float(INPUT_SIZE)
    dst = np.array([[0, size], [0, 0], [size, 0], [size, size]], np.float32)
    warped = cv2.warpPerspective(rgb, cv2.getPerspectiveTransform(src, dst), (INPUT_SIZE, INPUT_SIZE),
                                 flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    scale = np.float32(2.0) / np.float32(255.0)
    return (warped.astype(np.float64) * float(scale) - 1.0).astype(np.float32)[None]


def run_tflite(interpreter: tf.lite.Interpreter, image: np.ndarray) -> dict[str, np.ndarray]:
    """The TFLite model's raw outputs for an NHWC input, under the ONNX model's output names."""
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    interpreter.invoke()
    return {OUTPUT_NAMES[d["name"]]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}


@dataclass
class Comparison:
    """Largest absolute differences over all photos, for box encodings and class logits."""
    boxes: float = 0.0
    scores: float = 0.0

    def add(self, a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
        self.boxes = max(self.boxes, float(np.abs(a["box_encodings"] - b["box_encodings"]).max()))
        self.scores = max(self.scores, float(np.abs(a["class_predictions"] - b["class_predictions"]).max()))

    def __str__(self) -> str:
        return f"box encodings {self.boxes:.2e}, class logits {self.scores:.2e}"


def teacher_yaml(hashes: dict[str, str], fp16: bool, ort_vs_tflite: Comparison, command: str) -> dict:
    return {
        "name": "oid_ssd_mobilenetv2",
        "description": "SSD MobileNetV2 (Open Images V4, 23 classes, 300x300) of MediaPipe Objectron, "
                       "converted from the TFLite model of an npm package",
        "model": "model.onnx",
        "classes": "classes.txt",
        "head": {"family": "ssd_anchors", "num_classes": len(CLASSES), "background_class": True,
                 "outputs": {"boxes": OUTPUT_NAMES["raw_outputs/box_encodings"],
                             "scores": OUTPUT_NAMES["raw_outputs/class_predictions"]},
                 "anchors": ANCHORS, "box_scales": BOX_SCALES, **POSTPROCESS},
        "input": {"name": INPUT_NAME, "width": INPUT_SIZE, "height": INPUT_SIZE, "channel_order": "RGB",
                  "layout": "NCHW", "mean": [127.5] * 3, "std": [127.5] * 3, "resize": "stretch"},
        "split": {"tensor": SPLIT_TENSOR,
                  "shape": next(list(shape) for name, shape in BACKBONE_TENSORS.values() if name == SPLIT_TENSOR)},
        "provenance": {
            "npm_package": PACKAGE, "npm_version": VERSION, "npm_license": "Apache-2.0",
            "tarball_sha256": TARBALL_SHA256,
            "packed_file": MEMBERS["data"].removeprefix("package/"),
            "tflite_file": TFLITE_FILE, "tflite_bytes": list(PACKED_FILES[TFLITE_FILE]),
            "tflite_sha256": hashes["tflite"], "labelmap_sha256": hashes["labels"],
            "model_onnx_sha256": hashes["onnx"],
            "weights_storage": "fp16 initializers, Cast to float32" if fp16 else "float32",
            "upstream": "https://github.com/google/mediapipe", "upstream_license": "Apache-2.0",
            "upstream_graph": f"{MEDIAPIPE_GRAPH} at {MEDIAPIPE_COMMIT}",
            "backbone_tensors": {new: {"shape": shape, "converted_name": old}
                                 for old, (new, shape) in BACKBONE_TENSORS.items()},
            "conversion": {"command": command, "tools": f"tensorflow {tf.__version__}, tf2onnx {tf2onnx.__version__}, "
                           f"onnx {onnx.__version__}", "opset": OPSET,
                           "max_abs_diff_vs_tflite": {"box_encodings": float(f"{ort_vs_tflite.boxes:.2e}"),
                                                      "class_logits": float(f"{ort_vs_tflite.scores:.2e}")}},
        },
    }


def license_text(package_json: bytes) -> bytes:
    declared = json.loads(package_json)["license"]
    if declared != "Apache-2.0":
        sys.exit(f"package.json declares licence {declared!r}, not Apache-2.0")
    note = (f"The npm package {PACKAGE} {VERSION}, which holds this model, declares \"license\": \"{declared}\"\n"
            "in its package.json; this is the text of that licence.\n\n")
    return note.encode() + APACHE_LICENSE.read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tarball", type=Path, help=f"`npm pack {PACKAGE}@{VERSION}` output (default: run npm pack)")
    parser.add_argument("--photos", type=Path, nargs="+", required=True, help="real photos (files or folders of JPEGs)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1]
                        / "split_perception/assets/teachers/oid_ssd_mobilenetv2")
    args = parser.parse_args()
    photos = sorted(p for given in args.photos for p in ([given] if given.is_file() else given.glob("*.jpg")))

    with tempfile.TemporaryDirectory() as tmp:
        files = extract(fetch_tarball(args.tarball, Path(tmp)))
        tflite_path = Path(tmp) / "model.tflite"
        tflite_path.write_bytes(files["tflite"])
        model, _ = tf2onnx.convert.from_tflite(str(tflite_path), opset=OPSET, inputs_as_nchw=[TFLITE_INPUT])
    rename_tensors(model, {TFLITE_INPUT: INPUT_NAME, **OUTPUT_NAMES,
                           **{old: new for old, (new, _) in BACKBONE_TENSORS.items()}})
    sort_nodes(model)
    number_constants(model)
    canonical_names(model)
    model.producer_name = "split_perception convert_objectron_ssd.py"
    onnx.checker.check_model(model)
    fp16_model = with_fp16_weights(model)

    interpreter = tf.lite.Interpreter(model_content=files["tflite"])
    interpreter.allocate_tensors()
    ort_vs_tflite, fp16_vs_fp32 = Comparison(), Comparison()
    for photo in photos:
        image = mediapipe_input(photo)
        nchw = np.ascontiguousarray(image.transpose(0, 3, 1, 2))
        fp32 = run_ort(model, nchw)
        ort_vs_tflite.add(fp32, run_tflite(interpreter, image))
        fp16_vs_fp32.add(run_ort(fp16_model, nchw), fp32)
    print(f"{len(photos)} photos; ONNX Runtime vs TFLite: {ort_vs_tflite}")
    print(f"fp16 weights vs fp32 weights (ONNX Runtime): {fp16_vs_fp32}")
    fp16 = max(fp16_vs_fp32.boxes, fp16_vs_fp32.scores) <= FP16_TOLERANCE
    chosen = fp16_model if fp16 else model
    print(f"{len(chosen.graph.node)} nodes, op types {sorted({n.op_type for n in chosen.graph.node})}; "
          f"weights stored as {'fp16' if fp16 else 'fp32'}")

    args.out.mkdir(parents=True, exist_ok=True)
    onnx_bytes = chosen.SerializeToString()
    (args.out / "model.onnx").write_bytes(onnx_bytes)
    (args.out / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (args.out / "LICENSE").write_bytes(license_text(files["package_json"]))
    hashes = {"tflite": sha256(files["tflite"]), "labels": sha256(files["labels"]), "onnx": sha256(onnx_bytes)}
    command = " ".join(["python scripts/convert_objectron_ssd.py",
                        *([f"--tarball {args.tarball.name}"] if args.tarball else []),
                        "--photos", *map(str, args.photos)])
    spec = teacher_yaml(hashes, fp16, ort_vs_tflite, command)
    header = "# Written by scripts/convert_objectron_ssd.py; PROVENANCE.md says where every file comes from.\n"
    (args.out / "teacher.yaml").write_text(header + yaml.safe_dump(spec, sort_keys=False, width=110))
    print(f"wrote {args.out}: model.onnx sha256 {hashes['onnx']}")


if __name__ == "__main__":
    main()
