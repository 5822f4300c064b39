"""`bench rate-accuracy --footage DIR`: bytes/frame against agreement with the teacher on real footage.

Real footage has no labels, so the reference is the teacher itself on the uncompressed frame (its
detections at the decoder's score threshold taken as ground truth); agreement is the COCO mAP
(pycocotools) of each method's detections against it. Compared on the same frames: our widths (real
packets through the onboard encoder and the offboard decoder), JPEG and WebP of the frame at the
teacher's input size (the letterbox content, decoded offboard and fed to the teacher), and PCA of
the teacher's split tensor (fitted on training footage) coded with rANS. The headline is the same as
on the synthetic scenes (`equal_accuracy.agreement_headlines`), with agreement in place of mAP, by
mAP@[.5:.95] and by mAP@.5.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ..data.footage import iter_frames
from ..data.image_codecs import decode_image, encode_image
from ..errors import ConfigError
from ..evaluation.bag_eval import detections_coco
from ..evaluation.evaluate import EVAL_SCORE_THRESH
from ..evaluation.metrics import coco_map, coco_results
from ..evaluation.report import command_line, machine_info, markdown_table, write_results
from ..models.pca import PCA, positions, subsample
from ..offboard.decoder import Detection, OffboardDecoder
from ..onboard.encoder import OnboardEncoder
from ..onboard.preprocess import model_input_tensor
from ..training.distill import footage_views
from . import pca_codec
from .equal_accuracy import HEADLINE_COLUMNS, HEADLINE_FAMILIES, HEADLINE_GROUPS, HOW_HEADLINE, agreement_headlines

IMAGE_GRID = [("jpeg", q) for q in (95, 75, 50, 30, 15, 5)] + [("webp", q) for q in (75, 50, 30, 15, 5, 1)]
QUICK_IMAGE_GRID = [("jpeg", 50), ("jpeg", 5), ("webp", 15)]
PCA_COMPONENTS = (4, 8, 16, 32)
PCA_STEPS = (1.0, 2.0, 4.0, 8.0)  # in RMS of the split tensor
QUICK_PCA = dict(components=(8,), steps=(4.0,))


def clips(folder: Path) -> list[Path]:
    """The held-out clips: video files (or bags, or image folders) directly in `folder`, by name."""
    if not folder.is_dir():
        raise ConfigError(f"--footage {folder}: no such folder (`make footage` writes data/footage/heldout/clips)")
    found = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    if not found:
        raise ConfigError(f"--footage {folder}: no clips in it")
    return found


class _Methods:
    """Each method's detections (COCO results) and bytes over the frames, and the teacher's reference."""

    def __init__(self):
        self.results: dict[tuple, list[dict]] = {}
        self.sizes: dict[tuple, list[int]] = {}
        self.extra: dict[tuple, dict] = {}  # more columns of a method's row (a video codec's settings)
        self.reference: list[list[Detection]] = []

    def add(self, key: tuple, image_id: int, dets: list[Detection], nbytes: int, labels: list[int],
            extra: dict | None = None) -> None:
        self.results.setdefault(key, []).extend(coco_results(image_id, dets, labels))
        self.sizes.setdefault(key, []).append(nbytes)
        if extra:
            self.extra[key] = extra


def _scaled(dets: list[Detection], factor: float) -> list[Detection]:
    return [Detection(d.label_id, d.label, d.score, tuple(v * factor for v in d.box)) for d in dets]


def letterbox_content(rgb: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """The frame at the teacher's input size, aspect kept (what its letterbox holds): what an image or
    video codec is given, so that it sends no more pixels than the teacher reads."""
    ih, iw = input_size
    scale = min(iw / rgb.shape[1], ih / rgb.shape[0])
    return cv2.resize(rgb, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)


def scaled_back(dets: list[Detection], rgb: np.ndarray, small: np.ndarray) -> list[Detection]:
    """Detections on the codec's `small` frame in the pixels of the original frame `rgb`."""
    return _scaled(dets, rgb.shape[1] / small.shape[1])


def measure(args, progress: bool = True, frames: list[tuple[str, np.ndarray]] | None = None,
            more=None) -> tuple[list[dict], dict]:
    """Rows of every method on `frames` ((clip name, RGB) pairs; default: every `--frame-stride`-th
    frame of each held-out clip). `more(m, dec, frames, labels)` adds further methods (image ids are
    1 + the frame's index) before the rows are made."""
    enc, dec = OnboardEncoder(args.model), OffboardDecoder(args.model, score_thresh=EVAL_SCORE_THRESH)
    cfg = dec.cfg
    if not cfg.teacher:
        raise ConfigError("--footage needs a model of an ONNX teacher (agreement with the teacher on real frames)")
    teacher = dec.model.teacher
    labels = list(range(1, cfg.num_classes + 1))
    if frames is None:
        frames = [(clip.name, rgb) for clip in clips(Path(args.footage))
                  for rgb in iter_frames(clip, stride=args.frame_stride, max_frames=args.max_images)]
    pca, samples, rms = _fit_pca(dec, args, progress)
    grid = QUICK_PCA if args.quick else dict(components=PCA_COMPONENTS, steps=PCA_STEPS)
    codecs = {(n, s): pca_codec.PCACodec(pca, n, s * rms, samples) for n in grid["components"] for s in grid["steps"]}
    m, sizes, ids = _Methods(), [], []
    for image_id, (clip, rgb) in enumerate(tqdm(frames, desc="rate-accuracy (real)", disable=not progress), 1):
        ids.append(image_id)
        sizes.append(rgb.shape[:2])
        dets, _ = dec.teacher(rgb)
        m.reference.append([d for d in dets if d.score >= cfg.score_thresh])
        m.add(("teacher", "uncompressed frame"), image_id, dets, rgb.nbytes, labels)
        for w in enc.widths:
            enc.set_width(w)
            data = enc.encode(rgb, frame_id=image_id)
            m.add(("ours", f"w={w:g}", w), image_id, dec.decode(data, with_mask=False).detections, len(data), labels)
        small = letterbox_content(rgb, cfg.input_size)
        for fmt, q in QUICK_IMAGE_GRID if args.quick else IMAGE_GRID:
            data = encode_image(small, fmt, q)
            seen, _ = dec.teacher(decode_image(data))
            m.add((fmt, f"q{q}"), image_id, scaled_back(seen, rgb, small), len(data), labels)
        with torch.no_grad():
            z = teacher.front(model_input_tensor(rgb, cfg))
            for (n, s), codec in codecs.items():
                z_hat, nbytes = codec(z)
                r = teacher.postprocess(teacher.back(z_hat), [rgb.shape[:2]])[0]
                m.add(("pca", f"{n} comp, step {s:g}x rms", n, s), image_id, dec.detections_of(r), nbytes, labels)
    if more is not None:
        more(m, dec, frames, labels)
    ref = detections_coco(ids, m.reference, sizes, cfg.class_names)
    rows = []
    for key, results in m.results.items():
        acc = coco_map(ref, results, ids)
        row = {"method": key[0], "setting": key[1], "width": key[2] if key[0] == "ours" else None,
               "bytes_mean": float(np.mean(m.sizes[key])), "bytes_p95": float(np.percentile(m.sizes[key], 95)),
               "map": acc["map"], "map50": acc["map50"], "images": len(ids)}
        if key[0] == "pca":
            row.update(components=key[2], step_scale=key[3])
        row.update(m.extra.get(key, {}))
        row["kb_mean"] = row["bytes_mean"] / 1000
        rows.append(row)
    info = {"footage": args.footage, "clips": sorted({c for c, _ in frames}), "frames": len(frames),
            "frame_stride": args.frame_stride, "input_size": list(cfg.input_size), "teacher": cfg.teacher,
            "split_channels": teacher.split_channels, "reference_detections": sum(len(r) for r in m.reference),
            "reference_score_thresh": cfg.score_thresh, "pca_fit_views": args.fit_images,
            "pca_explained": [float(v) for v in pca.explained()]}
    return rows, info


def _fit_pca(dec: OffboardDecoder, args, progress: bool) -> tuple[PCA, torch.Tensor, float]:
    """PCA of the teacher's split tensor on training footage (never the held-out clips)."""
    teacher, cfg = dec.model.teacher, dec.cfg
    feats = []
    views = footage_views([args.fit_data], frame_stride=5, crops_per_photo=0, seed=0, max_views=args.fit_images)
    with torch.no_grad():
        for rgb in tqdm(views, desc="PCA fit (training footage)", disable=not progress, leave=False):
            feats.append(positions(teacher.front(model_input_tensor(rgb, cfg))))
    samples = subsample(feats).float()
    pca = PCA.fit(samples)
    return pca, samples, pca.rms()


COLUMNS = [("method", "method", ""), ("setting", "setting", ""), ("kb_mean", "KB/frame (mean)", ".2f"),
           ("bytes_p95", "bytes p95", ".0f"), ("map", "agreement mAP@[.5:.95]", ".3f"),
           ("map50", "agreement mAP@.5", ".3f")]


def run(args) -> int:
    if args.max_images < 0 or args.fit_images < 1 or args.threads < 1 or args.frame_stride < 1:
        raise ConfigError("--max-images must be >= 0, --fit-images, --frame-stride and --threads >= 1")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rows, info = measure(args)
    intro = (f"Rate-accuracy on real footage: {info['frames']} frames of {', '.join(info['clips'])} (every "
             f"{info['frame_stride']}th frame; never trained on), model {args.model or 'bundled'}, teacher "
             f"{info['teacher']}. Reference: the teacher's detections on the uncompressed frames (score >= "
             f"{info['reference_score_thresh']:g}: {info['reference_detections']} objects); agreement = COCO mAP "
             f"against them. JPEG/WebP code the frame at the teacher's input size (the letterbox content); PCA "
             f"codes the split tensor ({info['split_channels']} channels), fitted on training footage.")
    return report(args, intro, rows, info, t0, COLUMNS)


def report(args, intro: str, rows: list[dict], info: dict, t0: float, columns, families=HEADLINE_FAMILIES,
           groups=HEADLINE_GROUPS, headline_columns=HEADLINE_COLUMNS) -> int:
    """Write a run scored against the teacher (table.md, rate_accuracy.json/.csv) and print it: `intro`,
    the rows, and the bytes every baseline family needs at each width's agreement
    (`equal_accuracy.agreement_headlines`)."""
    heads, heads50, headlines_text = agreement_headlines(rows, families, groups, headline_columns)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = f"{intro}\n\n{markdown_table(rows, columns)}\n\n{headlines_text}\n"
    (out / "table.md").write_text(text)
    payload = {"command": command_line(args), "machine": machine_info(args.threads), "model": args.model or "bundled",
               **info, "headline": heads, "headline50": heads50, "headline_method": HOW_HEADLINE,
               "seconds": time.perf_counter() - t0}
    files = write_results(out, "rate_accuracy", payload, rows)
    print(text)
    print("wrote " + ", ".join(str(f) for f in [*files, out / "table.md"]))
    return 0
