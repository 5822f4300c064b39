"""`bench transport`: camera -> encoder -> decoder over real DDS between processes, per width.

One encoder and one decoder process stay up for the whole run; the probe process publishes
camera frames at a fixed rate and switches the width every `--seconds`, so every width sees the
same frames and the memory samples cover one continuous run. The baseline in the same run is
the camera stream itself: raw bytes/s and the offered frame rate.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..evaluation.report import command_line, machine_info, markdown_table, write_results
from ..harness.domains import domain_from
from .common import frame_size
from .memory import MemorySampler, plot_rss, slope_per_min

WARMUP_S = 3.0  # left out at the start of each width phase (discovery, first frames, switch)


def summarize(rec: dict, widths: list[float], phase_s: float, frame_bytes: int) -> list[dict]:
    """Per width phase: offered/encoded/delivered fps, bytes/s, drops, latency percentiles."""
    det_latency = {d["stamp"]: d["latency_ms"] for d in rec["detections"]}
    rows = []
    for i, w in enumerate(widths):
        lo, hi = i * phase_s + WARMUP_S, (i + 1) * phase_s
        span = hi - lo
        sent = [s for s in rec["sent"] if lo <= s["t"] < hi]
        feats = [f for f in rec["features"] if lo <= f["t"] < hi and f["width"] == w]
        lat = [det_latency[f["stamp"]] for f in feats if f["stamp"] in det_latency]
        encoded = (feats[-1]["frame_id"] - feats[0]["frame_id"] + 1) if feats else 0
        row = {"width": w, "seconds": span, "offered_fps": len(sent) / span, "encoded_fps": encoded / span,
               "delivered_fps": len(lat) / span, "features_bytes_per_s": sum(f["bytes"] for f in feats) / span,
               "raw_bytes_per_s": frame_bytes * len(sent) / span,
               "bytes_per_frame": float(np.mean([f["bytes"] for f in feats])) if feats else None,
               "encoder_drops": max(0, len(sent) - encoded), "decoder_drops": max(0, len(feats) - len(lat)),
               "encode_ms": float(np.median([f["encode_ms"] for f in feats])) if feats else None}
        for q in (50, 95, 99):
            row[f"latency_p{q}_ms"] = float(np.percentile(lat, q)) if lat else None
        rows.append(row)
    return rows


def plot(rec: dict, samples: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    det = {d["stamp"]: d["latency_ms"] for d in rec["detections"]}
    f = [x for x in rec["features"] if x["stamp"] in det]
    ax[0].plot([x["t"] for x in f], [det[x["stamp"]] for x in f], ".", ms=2)
    ax[0].set_ylabel("end-to-end ms")
    ax[1].step([x["t"] for x in rec["features"]], [x["width"] for x in rec["features"]], where="post")
    ax[1].set_ylabel("width")
    plot_rss(ax[2], samples, ("encoder", "decoder"))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


COLUMNS = [("width", "width", ".2f"), ("offered_fps", "offered fps", ".1f"), ("encoded_fps", "encoded fps", ".1f"),
           ("delivered_fps", "delivered fps", ".1f"), ("bytes_per_frame", "bytes/frame", ".0f"),
           ("features_bytes_per_s", "features B/s", ".0f"), ("raw_bytes_per_s", "raw image B/s (baseline)", ".0f"),
           ("encoder_drops", "encoder drops", "d"), ("decoder_drops", "decoder drops", "d"),
           ("latency_p50_ms", "latency p50 ms", ".1f"), ("latency_p95_ms", "p95", ".1f"),
           ("latency_p99_ms", "p99", ".1f")]


def run(args) -> int:
    from ..harness.processes import run_probe, start_node, stop, wait_for_log
    from ..model_files import model_file
    from ..models.checkpoint import read_checkpoint

    w, h = frame_size(args.size)
    if args.seconds <= WARMUP_S + 2 or args.fps <= 0:
        raise ConfigError(f"--seconds must exceed {WARMUP_S + 2:.0f} and --fps be > 0")
    model = str(model_file(args.model))
    widths = [float(x) for x in read_checkpoint(model)["model_config"].widths]
    domain = domain_from(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    calls = [{"at": i * args.seconds, "width": wd} for i, wd in enumerate(widths)]
    cfg = {"seconds": args.seconds * len(widths), "fps": args.fps, "size": [h, w], "set_width": calls}
    print(f"transport: {w}x{h} rgb8 at {args.fps:g} fps, {args.seconds:g} s per width {widths}, "
          f"ROS_DOMAIN_ID {domain}", flush=True)
    with tempfile.TemporaryDirectory(prefix="sp_transport_") as tmp:
        work = Path(tmp)
        m = {"model_path": model, "threads": args.threads}
        procs = [start_node("encoder", domain, params={**m, "width": widths[0]}, log_path=work / "encoder.log"),
                 start_node("decoder", domain, params=m, log_path=work / "decoder.log")]
        sampler = MemorySampler({"encoder": procs[0].pid, "decoder": procs[1].pid}, time.monotonic())
        try:
            wait_for_log(work / "encoder.log", "encoder ready", 120)
            wait_for_log(work / "decoder.log", "decoder ready", 120)
            sampler.t0 = time.monotonic()
            sampler.start()
            rec = run_probe(cfg, work, domain)
        finally:
            stop(procs)
            samples = sampler.stop()
            for name in ("encoder.log", "decoder.log"):
                (out / name).write_text((work / name).read_text())
    rows = summarize(rec, widths, args.seconds, w * h * 3)
    memory = {k: {"max_mib": max((s[k] for s in samples if s[k]), default=None),
                  "slope_mib_per_min": slope_per_min(samples, k, WARMUP_S)} for k in ("encoder", "decoder")}
    table = markdown_table(rows, COLUMNS)
    print(table)
    for k, v in memory.items():
        print(f"{k} RSS: max {v['max_mib'] or 0:.0f} MiB, slope {v['slope_mib_per_min']:+.2f} MiB/min")
    payload = {"command": command_line(args), "machine": machine_info(args.threads),
               "size": [w, h], "fps": args.fps, "seconds_per_width": args.seconds, "memory": memory,
               "memory_samples": samples}
    write_results(out, "transport", payload, rows)
    (out / "table.md").write_text(table + "\n")
    plot(rec, samples, out / "transport.png")
    print(f"wrote {out}/transport.json, .csv, .png, table.md")
    return 0 if all(r["delivered_fps"] > 0 for r in rows) else 1

