"""`analyze-split`: how compressible are the teacher's features at each candidate split layer?

For a split after MobileNetV3 `features[0][:k]`, PCA is fitted on training features (channels
are the dimension, spatial positions the samples); we report the components that keep 90/95/99%
of the variance, and the real bytes of PCA + uniform quantization + rANS against the accuracy
of the teacher's tail on the decoded features. Only k = 1..7 are candidates: LR-ASPP's low
branch reads stem[6] (stride 8), so a later split would have to send that tensor as well, i.e.
at least what k = 7 sends, plus the later features.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..errors import ConfigError
from ..evaluation.evaluate import evaluate_teacher
from ..evaluation.report import command_line, log_kb_axis, machine_info, markdown_table, write_results
from ..models.checkpoint import load_model
from ..models.pca import PCA, training_samples
from ..models.teacher import LOW_INDEX
from . import pca_codec
from .common import count_macs, dataset
from .equal_accuracy import pareto_front

CANDIDATES = tuple(range(1, LOW_INDEX + 2))
QUICK_GRID = dict(levels=(0.90, 0.99), scales=(2.0,))
RULE = ("Suggested split: for each k, the fewest bytes/frame among its PCA settings whose mAP@[.5:.95] "
        "and mIoU both stay within {tol:g} point(s) of the teacher on uncompressed input; the suggestion is "
        "the k with the fewest such bytes (onboard MACs break ties).")


def parse_splits(text: str) -> list[int]:
    try:
        ks = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise ConfigError(f"--splits must be comma-separated integers, got {text!r}") from None
    if not ks or not set(ks) <= set(CANDIDATES):
        raise ConfigError(f"--splits must be within {CANDIDATES[0]}..{CANDIDATES[-1]} (LR-ASPP's low branch "
                          f"reads stem[{LOW_INDEX}]; a later split would have to send it too), got {text!r}")
    return ks


def onboard_mmacs(teacher, k: int) -> float:
    """Multiply-accumulates of the teacher's front up to split k, in millions (convolutions only)."""
    return count_macs(lambda x: teacher.front(x, k), torch.zeros(1, 3, *teacher.cfg.input_size)) / 1e6


def analyze(args, teacher, splits: list[int], progress: bool = True) -> tuple[dict, list[dict], list[dict]]:
    """(teacher's accuracy, one summary row per split, one row per (split, PCA setting))."""
    data, fit = dataset(args.data), dataset(args.fit_data)
    ref = evaluate_teacher(teacher, data, args.max_images, progress)
    print(f"teacher: mAP {100 * ref['map']:.1f}, mIoU {100 * ref['miou']:.1f} on {ref['images']} images", flush=True)
    splits_rows, points = [], []
    for k in splits:
        samples = training_samples(teacher, fit, k, args.fit_images, progress)
        pca = PCA.fit(samples)
        with torch.no_grad():
            shape = tuple(teacher.front(torch.zeros(1, 3, *teacher.cfg.input_size), k).shape[1:])
        c, h, w = shape
        s = {"split": k, "stride": teacher.cfg.input_size[0] // h, "channels": c, "positions": h * w,
             "onboard_mmacs": onboard_mmacs(teacher, k), "raw_fp16_bytes": 2 * c * h * w,
             **{f"components_{round(100 * v)}": pca.components_for(v) for v in pca_codec.VARIANCE_LEVELS},
             "explained": [float(v) for v in pca.explained()]}
        for p in pca_codec.grid(pca, **(QUICK_GRID if args.quick else {})):
            codec = pca_codec.PCACodec(pca, p["components"], p["step"], samples)
            r = evaluate_teacher(teacher, data, args.max_images, progress, feature_codec=codec, split_index=k,
                                 desc=f"k={k} n={p['components']} step {p['step_scale']:g}x")
            row = {"split": k, **p, "bytes_mean": r["bytes_mean"], "bytes_p95": r["bytes_p95"],
                   "kb_mean": r["bytes_mean"] / 1000, "map": r["map"], "map50": r["map50"], "miou": r["miou"],
                   "nmse_fit": codec.nmse(samples),
                   "within_tolerance": ref["map"] - r["map"] <= args.tolerance / 100
                   and ref["miou"] - r["miou"] <= args.tolerance / 100}
            points.append(row)
            print(f"k={k} ({c}x{h}x{w}) n={p['components']:2d} step {p['step_scale']:g}x rms: "
                  f"{row['kb_mean']:.2f} KB  mAP {100 * row['map']:.1f}  mIoU {100 * row['miou']:.1f}", flush=True)
        ok = [p for p in points if p["split"] == k and p["within_tolerance"]]
        best = min(ok, key=lambda p: p["bytes_mean"]) if ok else None
        s.update(best_bytes=best and best["bytes_mean"], best_map=best and best["map"], best_miou=best and best["miou"],
                 best_setting=best and f"{best['components']} comp, step {best['step_scale']:g}x rms")
        splits_rows.append(s)
    return ref, splits_rows, points


def suggest(splits_rows: list[dict]) -> dict | None:
    ok = [s for s in splits_rows if s["best_bytes"] is not None]
    return min(ok, key=lambda s: (s["best_bytes"], s["onboard_mmacs"])) if ok else None


def reasoning(ref: dict, splits_rows: list[dict], choice: dict | None, tol: float, default_k: int) -> str:
    """The suggestion in words, with the numbers behind it."""
    if choice is None:
        return (f"No split keeps mAP and mIoU within {tol:g} point(s) of the teacher with any PCA setting tried; "
                "no suggestion (try finer steps or more components).")
    text = (f"Suggested split: k={choice['split']} (stride {choice['stride']}, {choice['channels']} channels): "
            f"{choice['best_bytes']:.0f} bytes/frame with PCA + quantization + rANS ({choice['best_setting']}) at "
            f"mAP {100 * choice['best_map']:.1f} / mIoU {100 * choice['best_miou']:.1f} (teacher "
            f"{100 * ref['map']:.1f} / {100 * ref['miou']:.1f}), {choice['onboard_mmacs']:.0f} MMACs onboard.")
    others = [s for s in splits_rows if s is not choice and s["best_bytes"] is not None]
    if others:
        runner = min(others, key=lambda s: s["best_bytes"])
        text += (f" Next best: k={runner['split']} at {runner['best_bytes']:.0f} bytes "
                 f"({runner['best_bytes'] / choice['best_bytes']:.1f}x).")
    if choice["split"] != default_k:
        d = next((s for s in splits_rows if s["split"] == default_k), None)
        if d is not None and d["best_bytes"] is not None:
            extra = d["onboard_mmacs"] - choice["onboard_mmacs"]
            text += (f" The default model's k={default_k} needs {d['best_bytes']:.0f} bytes "
                     f"({d['best_bytes'] / choice['best_bytes']:.2f}x) for {extra:+.0f} MMACs onboard.")
    return text


def plot(path: Path, splits_rows: list[dict], points: list[dict], ref: dict, title: str) -> None:
    """Left: cumulative variance vs components per split. Right: KB/frame (log) vs mAP per split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for i, s in enumerate(splits_rows):
        color = f"C{i}"
        label = f"k={s['split']} ({s['channels']} ch, stride {s['stride']})"
        axes[0].plot(range(1, len(s["explained"]) + 1), [100 * v for v in s["explained"]], ".-", color=color,
                     label=label)
        pts = sorted((p["kb_mean"], 100 * p["map"]) for p in points if p["split"] == s["split"])
        axes[1].plot(*zip(*pts), "o", color=color, alpha=0.5)
        axes[1].plot(*zip(*pareto_front(pts)), "-", color=color, label=label)
    for level in pca_codec.VARIANCE_LEVELS:
        axes[0].axhline(100 * level, ls=":", color="gray")
    axes[0].set_xlabel("principal components kept")
    axes[0].set_ylabel("variance kept (%)")
    axes[0].set_xscale("log")
    axes[0].legend(fontsize=8)
    axes[1].axhline(100 * ref["map"], ls="--", color="gray", label="teacher, uncompressed")
    log_kb_axis(axes[1], "KB/frame (PCA + quantization + rANS, mean, log scale)")
    axes[1].set_ylabel("detection mAP@[.5:.95]")
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


SPLIT_COLUMNS = [("split", "k", ""), ("stride", "stride", ""), ("channels", "channels", ""),
                 ("positions", "positions", ""), ("onboard_mmacs", "onboard MMACs", ".1f"),
                 ("raw_fp16_bytes", "raw fp16 bytes", ""), ("components_90", "comp. 90%", ""),
                 ("components_95", "comp. 95%", ""), ("components_99", "comp. 99%", ""),
                 ("best_bytes", "bytes within tol.", ".0f"), ("best_setting", "at setting", ""),
                 ("best_map", "mAP", ".3f"), ("best_miou", "mIoU", ".3f")]
POINT_COLUMNS = [("split", "k", ""), ("components", "components", ""), ("variance_kept", "variance kept", ".3f"),
                 ("step_scale", "step (x rms)", "g"), ("kb_mean", "KB/frame", ".2f"), ("bytes_p95", "bytes p95", ".0f"),
                 ("nmse_fit", "NMSE (fit)", ".4f"), ("map", "mAP@[.5:.95]", ".3f"), ("map50", "mAP@.5", ".3f"),
                 ("miou", "mIoU", ".3f")]


def run(args) -> int:
    if load_model(args.model)[0].cfg.teacher:
        from . import analyze_split_teacher

        return analyze_split_teacher.run(args)
    args.out = args.out or "results/bench/analyze_split"
    args.data = args.data or "data/synthetic/val"
    args.fit_data = args.fit_data or "data/synthetic/fit"
    splits = parse_splits(args.splits)
    if args.max_images < 0 or args.fit_images < 1 or args.threads < 1 or args.tolerance < 0:
        raise ConfigError("--max-images and --tolerance must be >= 0, --fit-images and --threads >= 1")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    teacher = load_model(args.model)[0].teacher.eval()
    model_k = teacher.cfg.split_index
    ref, splits_rows, points = analyze(args, teacher, splits)
    choice = suggest(splits_rows)
    why = reasoning(ref, splits_rows, choice, args.tolerance, model_k)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    title = f"PCA per split layer on {args.data} ({ref['images']} images), model {args.model or 'bundled'}"
    plot(out / "analyze_split.png", splits_rows, points, ref, title)
    rule = RULE.format(tol=args.tolerance)
    text = (f"PCA study of candidate split layers (`features[0][:k]`), model {args.model or 'bundled'}: PCA fitted on "
            f"{args.fit_images} images of `{args.fit_data}`, accuracy on {ref['images']} images of `{args.data}` "
            f"(teacher: mAP {ref['map']:.3f}, mIoU {ref['miou']:.3f}). Quantization step = scale x RMS of the "
            f"split's features; bytes include a {pca_codec.HEADER.size}-byte header.\n\n"
            f"{markdown_table(splits_rows, SPLIT_COLUMNS)}\n\n{rule}\n\n{why}\n")
    (out / "table.md").write_text(text)
    (out / "settings.md").write_text(markdown_table(points, POINT_COLUMNS) + "\n")  # every (k, PCA setting)
    payload = {"command": command_line(args), "machine": machine_info(args.threads), "data": args.data,
               "fit_data": args.fit_data, "model": args.model or "bundled", "model_split_index": model_k,
               "teacher": ref, "splits": splits_rows, "rule": rule,
               "suggested_split": choice and choice["split"], "reasoning": why,
               "seconds": time.perf_counter() - t0}
    files = write_results(out, "analyze_split", payload, points)
    print()
    print(text)
    print("wrote " + ", ".join(str(f) for f in [*files, out / "analyze_split.png", out / "table.md", out / "settings.md"]))
    return 0
