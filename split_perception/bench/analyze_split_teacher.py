"""`analyze-split` for a model of an ONNX teacher: where could this detector be cut, and what would
each cut cost to send?

The candidates are the tensors that alone carry everything from the image to the outputs (the only
places a single-tensor cut works, `teachers/importer.py`), at a stride of 4 or more and on the input's
grid (a padded tensor is the same cut as the one before it). At each, PCA is fitted on training
footage, and every (components, quantization step) setting codes the tensor of each held-out frame
with real rANS bytes; the tail, on ONNX Runtime, runs on the decoded tensor, and its detections are
compared with the whole teacher's on the uncompressed frame (agreement: COCO mAP against them, no
labels needed). The suggestion is the cut with the fewest bytes at a stated agreement.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from tqdm import tqdm

from ..data.footage import iter_frames
from ..errors import ConfigError
from ..evaluation.bag_eval import detections_coco
from ..evaluation.metrics import coco_map, coco_results
from ..evaluation.report import command_line, machine_info, markdown_table, write_results
from ..models.checkpoint import load_model
from ..models.pca import PCA, positions, subsample
from ..offboard.decoder import Detection
from ..onboard.preprocess import model_input_array
from ..teachers.importer import separating_tensors
from ..teachers.split import split_model
from ..training.distill import footage_views
from . import pca_codec
from .rate_accuracy_real import clips

COMPONENTS, STEPS = (4, 8, 16, 32), (1.0, 2.0, 4.0)
QUICK = dict(components=(8,), steps=(2.0,))
RULE = ("Suggested cut: for each candidate, the fewest bytes/frame among its PCA settings whose agreement "
        "mAP@.5 with the teacher is at least {target:g}; the suggestion is the candidate with the fewest such "
        "bytes (fewer values per frame break ties).")
SPLIT_COLUMNS = [("tensor", "tensor", ""), ("stride", "stride", ""), ("channels", "channels", ""),
                 ("values", "values/frame", ""), ("explained_8", "var. kept by 8 comp.", ".2f"),
                 ("best_bytes", "fewest bytes at the target", ".0f"), ("best_map50", "its mAP@.5", ".3f"),
                 ("top_map50", "best mAP@.5 (any setting)", ".3f")]
POINT_COLUMNS = [("tensor", "tensor", ""), ("components", "components", ""), ("step_scale", "step (x rms)", "g"),
                 ("kb_mean", "KB/frame", ".2f"), ("map", "agreement mAP@[.5:.95]", ".3f"),
                 ("map50", "agreement mAP@.5", ".3f")]


def candidates(model: onnx.ModelProto, input_hw: tuple[int, int]) -> list[tuple[str, tuple[int, ...]]]:
    """(tensor, shape) of every single-tensor cut at stride >= 4 on the input's grid, in graph order."""
    found = []
    for name in separating_tensors(model):
        shape = tuple(split_model(model, name).shape)
        if len(shape) == 4 and all(isinstance(s, int) for s in shape):
            stride = input_hw[0] // shape[2]
            if stride >= 4 and shape[2] * stride == input_hw[0] and shape[3] * stride == input_hw[1]:
                found.append((name, shape))
    return found


def _session(part: onnx.ModelProto, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(part.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _run(session: ort.InferenceSession, x: np.ndarray) -> list[np.ndarray]:
    return session.run(None, {session.get_inputs()[0].name: x})


def _detections(teacher, names, outputs, size, class_names) -> list[Detection]:
    r = teacher.postprocess({n: torch.from_numpy(o) for n, o in zip(names, outputs)}, [size])[0]
    return [Detection(int(lab), class_names[int(lab) - 1], float(s), tuple(b))
            for b, lab, s in zip(r["boxes"].tolist(), r["labels"].tolist(), r["scores"].tolist())]


def analyze(args, model, progress: bool = True) -> tuple[list[dict], list[dict], dict]:
    """(one row per candidate, one per (candidate, PCA setting), what was measured on)."""
    cfg, teacher = model.cfg, model.teacher
    graph = onnx.load(str(teacher.spec.model_path))
    whole = _session(graph, args.threads)
    names = [o.name for o in whole.get_outputs()]
    frames = [rgb for clip in clips(Path(args.data))
              for rgb in iter_frames(clip, stride=args.frame_stride, max_frames=args.max_images)]
    fit = list(footage_views([args.fit_data], frame_stride=5, crops_per_photo=0, seed=0, max_views=args.fit_images))
    inputs = [model_input_array(rgb, cfg)[None] for rgb in frames]
    ids, sizes = list(range(1, len(frames) + 1)), [rgb.shape[:2] for rgb in frames]
    teacher.score_thresh = cfg.score_thresh
    ref = [_detections(teacher, names, _run(whole, x), s, cfg.class_names) for x, s in zip(inputs, sizes)]
    ref_coco = detections_coco(ids, ref, sizes, cfg.class_names)
    teacher.score_thresh = 0.0  # the head's own floor: COCO mAP wants the low-score tail too
    labels = list(range(1, cfg.num_classes + 1))
    grid = QUICK if args.quick else dict(components=COMPONENTS, steps=STEPS)
    splits, points = [], []
    for tensor, shape in candidates(graph, cfg.input_size):
        parts = split_model(graph, tensor)
        front, tail = _session(parts.front, args.threads), _session(parts.tail, args.threads)
        feats = [positions(torch.from_numpy(_run(front, model_input_array(rgb, cfg)[None])[0])) for rgb in fit]
        samples = subsample(feats).float()
        pca = PCA.fit(samples)
        rms = pca.rms()
        zs = [torch.from_numpy(_run(front, x)[0]) for x in inputs]
        row = {"tensor": tensor, "stride": cfg.input_size[0] // shape[2], "channels": shape[1],
               "values": int(np.prod(shape[1:])), "explained_8": float(pca.explained()[min(8, shape[1]) - 1])}
        settings = [(n, s) for n in grid["components"] if n <= shape[1] for s in grid["steps"]]
        for n, s in tqdm(settings, desc=f"cut at {tensor}", disable=not progress, leave=False):
            codec = pca_codec.PCACodec(pca, n, s * rms, samples)
            results, nbytes = [], []
            for image_id, z, size in zip(ids, zs, sizes):
                z_hat, size_bytes = codec(z)
                nbytes.append(size_bytes)
                dets = _detections(teacher, names, _run(tail, z_hat.float().numpy()), size, cfg.class_names)
                results += coco_results(image_id, dets, labels)
            acc = coco_map(ref_coco, results, ids)
            points.append({"tensor": tensor, "components": n, "step_scale": s, "bytes_mean": float(np.mean(nbytes)),
                           "kb_mean": float(np.mean(nbytes)) / 1000, **acc})
        mine = [p for p in points if p["tensor"] == tensor]
        good = [p for p in mine if p["map50"] >= args.agreement]
        best = min(good, key=lambda p: p["bytes_mean"]) if good else None
        row.update(best_bytes=best and best["bytes_mean"], best_map50=best and best["map50"],
                   top_map50=max(p["map50"] for p in mine) if mine else None)
        splits.append(row)
        if progress:
            print(f"  {tensor} {list(shape)}: fewest bytes at mAP@.5 >= {args.agreement:g}: "
                  f"{'none' if best is None else round(best['bytes_mean'])}", flush=True)
    info = {"frames": len(frames), "clips": [c.name for c in clips(Path(args.data))],
            "reference_detections": sum(len(r) for r in ref), "fit_views": len(fit)}
    return splits, points, info


def suggest(splits: list[dict]) -> dict | None:
    good = [s for s in splits if s["best_bytes"] is not None]
    return min(good, key=lambda s: (s["best_bytes"], s["values"])) if good else None


def run(args) -> int:
    args.data = args.data or "data/footage/heldout/clips"
    args.fit_data = args.fit_data or "data/footage/train"
    if args.max_images < 0 or args.fit_images < 1 or args.threads < 1 or args.frame_stride < 1 \
            or not 0 < args.agreement <= 1:
        raise ConfigError("--max-images must be >= 0, --fit-images, --frame-stride and --threads >= 1, "
                          "--agreement in (0, 1]")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = load_model(args.model)[0].eval()
    args.out = args.out or f"results/bench/analyze_split_{model.cfg.teacher}"
    splits, points, info = analyze(args, model)
    choice = suggest(splits)
    configured = model.cfg.teacher_spec().split.tensor
    if choice is None:
        why = (f"No cut reaches agreement mAP@.5 {args.agreement:g} with any PCA setting tried: PCA of one tensor "
               f"is not enough here; a learned bottleneck (the student) has to do better.")
    else:
        why = (f"Suggested cut: `{choice['tensor']}` (stride {choice['stride']}, {choice['channels']} channels), "
               f"{choice['best_bytes']:.0f} bytes/frame at agreement mAP@.5 {choice['best_map50']:.3f}. "
               f"The model is cut at `{configured}`"
               f"{' (the same)' if choice['tensor'] == configured else ''}.")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rule = RULE.format(target=args.agreement)
    text = (f"PCA study of {model.cfg.teacher}'s single-tensor cuts, model {args.model or 'bundled'}: PCA fitted on "
            f"{info['fit_views']} views of `{args.fit_data}`, agreement with the teacher's detections on "
            f"{info['frames']} frames of {', '.join(info['clips'])} (every {args.frame_stride}th; "
            f"{info['reference_detections']} reference objects). Quantization step = scale x RMS of the tensor; "
            f"bytes include a {pca_codec.HEADER.size}-byte header.\n\n"
            f"{markdown_table(splits, SPLIT_COLUMNS)}\n\n{rule}\n\n{why}\n")
    (out / "table.md").write_text(text)
    (out / "settings.md").write_text(markdown_table(points, POINT_COLUMNS) + "\n")
    payload = {"command": command_line(args), "machine": machine_info(args.threads), "data": args.data,
               "fit_data": args.fit_data, "model": args.model or "bundled", "teacher": model.cfg.teacher,
               "configured_split": configured, "splits": splits, "rule": rule, **info,
               "suggested_split": choice and choice["tensor"], "reasoning": why, "seconds": time.perf_counter() - t0}
    files = write_results(out, "analyze_split", payload, points)
    print()
    print(text)
    print("wrote " + ", ".join(str(f) for f in [*files, out / "table.md", out / "settings.md"]))
    return 0
