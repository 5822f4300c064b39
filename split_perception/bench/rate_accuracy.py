"""`bench rate-accuracy`: bytes/frame against detection mAP and segmentation mIoU, same frames.

Compared: our split model at every width (real packets), the images ROS users send today
(JPEG, WebP, PNG at the network's input size, decoded offboard and fed to the teacher), a
non-learned feature codec (PCA + uniform quantization + rANS at the split point) and the
teacher on uncompressed input (the ceiling). The headline is the bytes each baseline needs
to reach each width's mAP, interpolated along its rate-accuracy curve in log-bytes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from ..data.image_codecs import decode_image, encode_image
from ..errors import ConfigError
from ..evaluation.evaluate import evaluate_split, evaluate_teacher
from ..evaluation.report import command_line, log_kb_axis, machine_info, markdown_table, write_results
from ..models.pca import PCA, training_samples
from ..offboard.decoder import OffboardDecoder
from ..onboard.encoder import OnboardEncoder
from . import pca_codec
from .common import dataset
from .equal_accuracy import HOW_HEADLINE, headline, headline_table, pareto_front

# JPEG 95 and 75: compressed_image_transport's default quality and a common setting; PNG 3: its default level
IMAGE_GRID = [("jpeg", q) for q in (95, 75, 50, 25, 10)] + [("webp", q) for q in (90, 75, 50, 25, 10)] + [("png", 3)]
QUICK_IMAGE_GRID = [("jpeg", 95), ("jpeg", 50), ("jpeg", 10), ("webp", 50), ("png", 3)]
QUICK_PCA_GRID = dict(levels=(0.95,), scales=(2.0,))


def image_codec(fmt: str, quality: int, input_size: tuple[int, int]):
    """RGB -> (decoded RGB, bytes): resize to the network input size, encode, decode (OpenCV)."""
    h, w = input_size

    def code(rgb: np.ndarray) -> tuple[np.ndarray, int]:
        if rgb.shape[:2] != (h, w):
            rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        data = encode_image(rgb, fmt, quality)
        return decode_image(data), len(data)

    return code


def _row(method: str, setting: str, r: dict, **extra) -> dict:
    row = {"method": method, "setting": setting, **extra, "bytes_mean": r.get("bytes_mean"),
           "bytes_p95": r.get("bytes_p95"), "map": r["map"], "map50": r["map50"], "miou": r["miou"],
           "images": r["images"]}
    row["kb_mean"] = None if row["bytes_mean"] is None else row["bytes_mean"] / 1000
    return row


def measure(args, progress: bool = True) -> tuple[list[dict], dict]:
    """Every method on the same frames: (rows, facts about the PCA fit)."""
    data, fit = dataset(args.data), dataset(args.fit_data)
    enc, dec = OnboardEncoder(args.model, runtime="torch"), OffboardDecoder(args.model)
    teacher, cfg = enc.model.teacher, enc.cfg
    n = args.max_images

    def done(row: dict) -> dict:
        kb = "-" if row["kb_mean"] is None else f"{row['kb_mean']:.2f} KB"
        print(f"{row['method']:8s} {row['setting']:34s} {kb:>10s}  mAP {100 * row['map']:.1f}  "
              f"mIoU {100 * row['miou']:.1f}", flush=True)
        return row

    rows = [done(_row("teacher", "uncompressed input", evaluate_teacher(teacher, data, n, progress)))]
    base = earlier_baselines(args, rows[0], cfg) if args.baselines else None
    for w, r in evaluate_split(enc, dec, data, max_images=n, progress=progress).items():
        rows.append(done(_row("ours", f"w={w:g}", r, width=w)))
    if base is not None:
        rows += [done(r) for r in base["rows"] if r["method"] not in ("teacher", "ours")]
        return rows, {k: base[k] for k in BASELINE_FACTS}
    for fmt, q in QUICK_IMAGE_GRID if args.quick else IMAGE_GRID:
        setting = f"level {q} (lossless)" if fmt == "png" else f"q{q}"
        r = evaluate_teacher(teacher, data, n, progress, image_codec=image_codec(fmt, q, cfg.input_size),
                             desc=f"{fmt} {setting}")
        rows.append(done(_row(fmt, setting, r, quality=q)))
    samples = training_samples(teacher, fit, cfg.split_index, args.fit_images, progress)
    pca = PCA.fit(samples)
    for p in pca_codec.grid(pca, **(QUICK_PCA_GRID if args.quick else {})):
        codec = pca_codec.PCACodec(pca, p["components"], p["step"], samples)
        setting = f"{p['components']} comp ({100 * p['variance_level']:g}% var), step {p['step_scale']:g}x rms"
        r = evaluate_teacher(teacher, data, n, progress, feature_codec=codec, desc=f"pca {setting}")
        rows.append(done(_row("pca", setting, r, **p, nmse_fit=codec.nmse(samples))))
    info = {"input_size": list(cfg.input_size), "split_index": cfg.split_index,
            "split_channels": teacher.split_channels,
            "pca_fit_samples": len(samples), "pca_feature_rms": pca.rms(),
            "pca_explained": [float(v) for v in pca.explained()]}
    return rows, info


BASELINE_FACTS = ("input_size", "split_index", "split_channels", "pca_fit_samples", "pca_feature_rms", "pca_explained")


def earlier_baselines(args, teacher_row: dict, cfg) -> dict:
    """The baselines of an earlier run on the same frames: its JSON, checked against this run (same
    data, PCA fit, input size and split, and a teacher that scores the same on these frames)."""
    path = Path(args.baselines) / "rate_accuracy.json"
    try:
        base = json.loads(path.read_text())
        rows, teacher = base["rows"], next(r for r in base["rows"] if r["method"] == "teacher")
        facts = {k: base[k] for k in BASELINE_FACTS}
        theirs = {"data": base["data"], "fit_data": base["fit_data"], "images": teacher["images"],
                  "input_size": list(facts["input_size"]), "split_index": facts["split_index"],
                  "fit_images": base["fit_images"]}
    except (OSError, ValueError, KeyError, StopIteration) as exc:
        raise ConfigError(f"--baselines {args.baselines}: no readable rate-accuracy results ({exc})") from None
    ours = {"data": args.data, "fit_data": args.fit_data, "images": teacher_row["images"],
            "input_size": list(cfg.input_size), "split_index": cfg.split_index, "fit_images": args.fit_images}
    differ = [k for k in ours if ours[k] != theirs[k]]
    if differ:
        raise ConfigError(f"--baselines {args.baselines} were measured otherwise: "
                          + ", ".join(f"{k} {theirs[k]} there, {ours[k]} here" for k in differ))
    if abs(teacher["map"] - teacher_row["map"]) > 1e-3:  # thread counts may move the last bits, not more
        raise ConfigError(f"--baselines {args.baselines}: the teacher scored {teacher['map']:.4f} mAP there and "
                          f"{teacher_row['map']:.4f} here: another teacher, whose baselines do not apply")
    return {"rows": rows, **facts}


COLUMNS = [("method", "method", ""), ("setting", "setting", ""), ("kb_mean", "KB/frame (mean)", ".2f"),
           ("bytes_p95", "bytes p95", ".0f"), ("map", "mAP@[.5:.95]", ".3f"), ("map50", "mAP@.5", ".3f"),
           ("miou", "mIoU", ".3f")]

STYLE = {"ours": ("o-", "C3"), "jpeg": ("s-", "C0"), "webp": ("^-", "C2"), "png": ("D", "C4"), "pca": ("x", "C1")}


def plot(path: Path, rows: list[dict], title: str) -> None:
    """KB/frame (log) against mAP and against mIoU; the teacher's ceiling as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    teacher = next(r for r in rows if r["method"] == "teacher")
    for ax, key, label in ((axes[0], "map", "detection mAP@[.5:.95]"), (axes[1], "miou", "segmentation mIoU")):
        for method, (marker, color) in STYLE.items():
            pts = sorted((r["kb_mean"], 100 * r[key], r["setting"]) for r in rows if r["method"] == method)
            if not pts:
                continue
            x, y, names = zip(*pts)
            if method == "pca":  # a 2-D grid: its points, and the front the headline uses
                ax.plot(x, y, marker, color=color, alpha=0.5)
                front = pareto_front(list(zip(x, y)))
                ax.plot(*zip(*front), "-", color=color, label="PCA features + rANS (front of grid)")
            else:
                ax.plot(x, y, marker, color=color, label={"ours": "ours (split, per width)", "jpeg": "JPEG",
                                                         "webp": "WebP", "png": "PNG (lossless)"}[method])
                if method != "png":
                    for xi, yi, n in zip(x, y, names):
                        ax.annotate(n, (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.axhline(100 * teacher[key], ls="--", color="gray", label="teacher, uncompressed")
        log_kb_axis(ax, "KB/frame (mean, log scale)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args) -> int:
    from ..models.checkpoint import read_checkpoint

    if args.footage is None and (args.video or read_checkpoint(args.model)["model_config"].teacher):
        args.footage = "data/footage/heldout/clips"  # an ONNX teacher's model: real footage, agreement
    if args.out is None:  # each kind of run its own folder, so one never overwrites another's results
        kind = "_video" if args.video else "_real" if args.footage else ""
        args.out = f"results/bench/rate_accuracy{kind}"
    if args.video:
        from . import rate_accuracy_video

        args.fit_data = args.fit_data or "data/footage/train"
        return rate_accuracy_video.run(args)
    if args.footage:
        from . import rate_accuracy_real

        args.fit_data = args.fit_data or "data/footage/train"
        return rate_accuracy_real.run(args)
    args.fit_data = args.fit_data or "data/synthetic/fit"
    if args.max_images < 0 or args.fit_images < 1 or args.threads < 1:
        raise ConfigError("--max-images must be >= 0, --fit-images and --threads >= 1")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rows, info = measure(args)
    heads = headline(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = rows[0]["images"]
    title = f"rate-accuracy on {args.data} ({images} images), model {args.model or 'bundled'}"
    plot(out / "rate_accuracy.png", rows, title)
    table = markdown_table(rows, COLUMNS)
    reused = f" Baselines taken from `{args.baselines}` (same frames, same teacher)." if args.baselines else ""
    text = (f"Rate-accuracy on `{args.data}` ({images} images; model {args.model or 'bundled'}).{reused} Image codecs "
            f"encode the frame at the network input size {info['input_size'][1]}x{info['input_size'][0]}; "
            "bytes are the encoded length. "
            f"Ours: the packet (header and CRC included). PCA: split-point features (k={info['split_index']}, "
            f"{info['split_channels']} channels), {pca_codec.HEADER.size}-byte header included.\n\n{table}\n\n"
            f"Bytes at equal mAP:\n\n{headline_table(heads)}\n\n{HOW_HEADLINE}\n")
    (out / "table.md").write_text(text)
    payload = {"command": command_line(args), "machine": machine_info(args.threads), "data": args.data,
               "fit_data": args.fit_data, "fit_images": args.fit_images, "model": args.model or "bundled",
               "baselines": args.baselines, **info, "headline": heads, "headline_method": HOW_HEADLINE,
               "seconds": time.perf_counter() - t0}
    files = write_results(out, "rate_accuracy", payload, rows)
    files += write_results(out, "headline", {"command": payload["command"], "method": HOW_HEADLINE}, heads)
    print()
    print(text)
    print("wrote " + ", ".join(str(f) for f in [*files, out / "rate_accuracy.png", out / "table.md"]))
    return 0

