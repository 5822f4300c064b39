#!/usr/bin/env python3
"""Write test/data/photos/nanodet_g_reference.json: NanoDet-g's detections on the test photos, computed
the way upstream RangiLyu/nanodet v0.4.2 computes them, independently of split_perception.teachers.

Upstream's own files do the preprocessing and the box arithmetic: they are loaded from a nanodet source
tree (`git clone https://github.com/RangiLyu/nanodet && git -C nanodet checkout v0.4.2`):
`data/transform/warp.py` (warp_and_resize, warp_boxes), `data/transform/color.py` (color_aug_and_norm),
`util/box_transform.py` (distance2bbox) and `model/module/nms.py` (multiclass_nms, on torchvision's nms).
`GFLHead.get_bboxes_single`, `get_single_level_center_point` and `Integral` live in `model/head/gfl_head.py`,
which imports the whole training stack, so they are ported below line for line, with one change: the
exported model's class scores have been through the sigmoid already (upstream's
`NanoDetHead.forward_single` applies it under ONNX export), so they are not put through it again.
The model itself runs on ONNX Runtime. Needs torch, torchvision, OpenCV and onnxruntime (requirements.txt).

    python scripts/nanodet_reference.py --nanodet-src PATH/TO/nanodet
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
import yaml

ROOT = Path(__file__).resolve().parents[1]
TEACHER = ROOT / "split_perception/assets/teachers/nanodet_g"
PHOTOS = ROOT / "test/data/photos"
# nanodet-g.yml's validation pipeline and head
VAL_PIPELINE = {"normalize": [[103.53, 116.28, 123.675], [57.375, 57.12, 58.395]]}
INPUT_SIZE = (416, 416)  # [w, h]
STRIDES = (8, 16, 32)
REG_MAX = 10
NUM_CLASSES = 80


def load_upstream(src: Path, relative: str):
    """One upstream module, loaded from its file (its imports are torch, torchvision, cv2, numpy only)."""
    spec = importlib.util.spec_from_file_location(relative.replace("/", "_"), src / "nanodet" / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def integral(x: torch.Tensor) -> torch.Tensor:
    """gfl_head.Integral.forward with reg_max 10."""
    project = torch.linspace(0, REG_MAX, REG_MAX + 1)
    x = F.softmax(x.reshape(-1, REG_MAX + 1), dim=1)
    return F.linear(x, project.type_as(x)).reshape(-1, 4)


def get_single_level_center_point(featmap_size, stride, dtype, device, flatten=True):
    """gfl_head.GFLHead.get_single_level_center_point."""
    h, w = featmap_size
    x_range = (torch.arange(w, dtype=dtype, device=device) + 0.5) * stride
    y_range = (torch.arange(h, dtype=dtype, device=device) + 0.5) * stride
    y, x = torch.meshgrid(y_range, x_range, indexing="ij")
    if flatten:
        y = y.flatten()
        x = x.flatten()
    return y, x


def get_bboxes_single(cls_scores, bbox_preds, img_shape, device, distance2bbox, multiclass_nms):
    """gfl_head.GFLHead.get_bboxes_single; cls_scores[i] are (C, H, W) sigmoid scores, bbox_preds[i] (44, H, W)."""
    mlvl_bboxes = []
    mlvl_scores = []
    for stride, cls_score, bbox_pred in zip(STRIDES, cls_scores, bbox_preds):
        assert cls_score.size()[-2:] == bbox_pred.size()[-2:]
        featmap_size = cls_score.size()[-2:]
        y, x = get_single_level_center_point(featmap_size, stride, cls_score.dtype, device, flatten=True)
        center_points = torch.stack([x, y], dim=-1)
        scores = cls_score.permute(1, 2, 0).reshape(-1, NUM_CLASSES)  # already sigmoid (see the docstring)
        bbox_pred = bbox_pred.permute(1, 2, 0)
        bbox_pred = integral(bbox_pred) * stride

        nms_pre = 1000
        if scores.shape[0] > nms_pre:
            max_scores, _ = scores.max(dim=1)
            _, topk_inds = max_scores.topk(nms_pre)
            center_points = center_points[topk_inds, :]
            bbox_pred = bbox_pred[topk_inds, :]
            scores = scores[topk_inds, :]

        bboxes = distance2bbox(center_points, bbox_pred, max_shape=img_shape)
        mlvl_bboxes.append(bboxes)
        mlvl_scores.append(scores)

    mlvl_bboxes = torch.cat(mlvl_bboxes)
    mlvl_scores = torch.cat(mlvl_scores)
    padding = mlvl_scores.new_zeros(mlvl_scores.shape[0], 1)
    mlvl_scores = torch.cat([mlvl_scores, padding], dim=1)
    return multiclass_nms(mlvl_bboxes, mlvl_scores, score_thr=0.05, nms_cfg=dict(type="nms", iou_threshold=0.6),
                          max_num=100)


def detect(photo: Path, session: ort.InferenceSession, spec: dict, up: dict) -> list[dict]:
    raw = cv2.imread(str(photo))
    meta = dict(img_info={"file_name": photo.name, "height": raw.shape[0], "width": raw.shape[1]}, raw_img=raw, img=raw)
    meta = up["warp"].warp_and_resize(meta, VAL_PIPELINE, INPUT_SIZE, keep_ratio=True)
    meta = up["color"].color_aug_and_norm(meta, VAL_PIPELINE)
    image = np.ascontiguousarray(meta["img"].transpose(2, 0, 1)[None], dtype=np.float32)
    outputs = spec["head"]["outputs"]
    names = [outputs[s][kind] for kind in ("cls", "dis") for s in STRIDES]
    values = dict(zip(names, session.run(names, {spec["input"]["name"]: image})))
    w, h = INPUT_SIZE
    grids = [(int(np.ceil(h / s)), int(np.ceil(w / s))) for s in STRIDES]
    cls = [torch.from_numpy(values[outputs[s]["cls"]][0]).permute(1, 0).reshape(-1, *g) for s, g in zip(STRIDES, grids)]
    dis = [torch.from_numpy(values[outputs[s]["dis"]][0]).permute(1, 0).reshape(-1, *g) for s, g in zip(STRIDES, grids)]
    dets, labels = get_bboxes_single(cls, dis, (h, w), "cpu", up["box"].distance2bbox, up["nms"].multiclass_nms)
    dets = dets.numpy()
    boxes = up["warp"].warp_boxes(dets[:, :4], np.linalg.inv(meta["warp_matrix"]), raw.shape[1], raw.shape[0])
    return [{"box": [round(float(v), 4) for v in box], "class_id": int(label), "score": round(float(score), 6)}
            for box, label, score in zip(boxes, labels.numpy(), dets[:, 4])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nanodet-src", type=Path, required=True, help="RangiLyu/nanodet source tree at v0.4.2")
    parser.add_argument("--out", type=Path, default=PHOTOS / "nanodet_g_reference.json")
    args = parser.parse_args()
    up = {"warp": load_upstream(args.nanodet_src, "data/transform/warp.py"),
          "color": load_upstream(args.nanodet_src, "data/transform/color.py"),
          "box": load_upstream(args.nanodet_src, "util/box_transform.py"),
          "nms": load_upstream(args.nanodet_src, "model/module/nms.py")}
    spec = yaml.safe_load((TEACHER / "teacher.yaml").read_text())
    session = ort.InferenceSession(str(TEACHER / "model.onnx"), providers=["CPUExecutionProvider"])
    try:
        commit = subprocess.run(["git", "-C", str(args.nanodet_src), "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "v0.4.2 (76e025b10019b457beae2ff7f706f79496b20629)"
    photos = sorted(PHOTOS.glob("*.jpg"))
    result = {
        "made_by": "scripts/nanodet_reference.py: upstream RangiLyu/nanodet v0.4.2 preprocessing (warp_and_resize, "
                   "keep_ratio, color_aug_and_norm), GFLHead.get_bboxes_single (ported), distance2bbox, "
                   "multiclass_nms (torchvision nms), warp_boxes; the model on ONNX Runtime",
        "nanodet_commit": commit,
        "model_onnx_sha256": spec["provenance"]["model_onnx_sha256"],
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__, "opencv": cv2.__version__},
        "detections": {photo.name: detect(photo, session, spec, up) for photo in photos},
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for name, dets in result["detections"].items():
        print(name, len(dets), "detections;", [(d["class_id"], d["score"]) for d in dets if d["score"] >= 0.3])


if __name__ == "__main__":
    main()
