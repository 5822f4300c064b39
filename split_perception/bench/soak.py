"""`bench soak`: camera -> encoder -> decoder over DDS for minutes; RSS and latency every second.

A long run at a camera rate the machine cannot fully process: the drop-oldest slots in the
encoder and decoder must keep end-to-end latency flat (frames are dropped, not queued) and memory
must not grow. Each check compares the run with itself (first vs last part, least-squares slope),
so the verdict does not depend on how fast this machine is. Exit code 1 if a check fails.
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

NODES = ("encoder", "decoder")


def per_second(rec: dict, seconds: float) -> list[dict]:
    """One row per second of the probe's clock: sent, encoded and delivered frames; latency p50/max."""
    n = int(seconds)
    count = lambda xs: np.bincount(np.array([int(x["t"]) for x in xs if x["t"] < n], int), minlength=n)  # noqa: E731
    sent, encoded, delivered = count(rec["sent"]), count(rec["features"]), count(rec["detections"])
    lat: list[list[float]] = [[] for _ in range(n)]
    for d in rec["detections"]:
        if d["t"] < n:
            lat[int(d["t"])].append(d["latency_ms"])
    return [{"t": s, "sent": int(sent[s]), "encoded": int(encoded[s]), "delivered": int(delivered[s]),
             "latency_p50_ms": float(np.median(lat[s])) if lat[s] else None,
             "latency_max_ms": float(max(lat[s])) if lat[s] else None} for s in range(n)]


def checks(series: list[dict], memory: list[dict], warmup_s: float, max_latency_growth_ms: float,
           max_rss_slope: float, alive: dict[str, bool]) -> tuple[dict, dict]:
    """Summary figures and pass/fail per check.

    Latency: median of the last fifth minus the first fifth (after warm-up) must stay under
    `max_latency_growth_ms`; RSS: the slope over the second half (allocators settle in the first)
    must stay under `max_rss_slope` MiB/min per node; and no 10-s window may deliver nothing."""
    run = [r for r in series if r["t"] >= warmup_s]
    if len(run) < 10:
        raise ConfigError(f"soak needs at least 10 s after the {warmup_s:g} s warm-up")
    fifth = max(1, len(run) // 5)
    lat = lambda rows: [r["latency_p50_ms"] for r in rows if r["latency_p50_ms"] is not None]  # noqa: E731
    first, last = lat(run[:fifth]), lat(run[-fifth:])
    half = run[len(run) // 2]["t"]
    windows = [sum(r["delivered"] for r in run[i:i + 10]) for i in range(0, len(run) - 9, 10)]
    span = len(run)
    summary = {
        "seconds": span, "offered_fps": sum(r["sent"] for r in run) / span,
        "encoded_fps": sum(r["encoded"] for r in run) / span,
        "delivered_fps": sum(r["delivered"] for r in run) / span,
        "encoder_drops": sum(r["sent"] - r["encoded"] for r in run),
        "decoder_drops": sum(r["encoded"] - r["delivered"] for r in run),
        "latency_first_ms": float(np.median(first)) if first else None,
        "latency_last_ms": float(np.median(last)) if last else None,
        "latency_slope_ms_per_min": slope_per_min(run, "latency_p50_ms"),
        "latency_max_ms": max((r["latency_max_ms"] for r in run if r["latency_max_ms"] is not None), default=None),
        "min_delivered_per_10s": min(windows, default=0),
    }
    for k in NODES:
        vals = [m[k] for m in memory if m.get(k) is not None and m["t"] >= warmup_s]
        summary[f"{k}_rss_start_mib"] = vals[0] if vals else None
        summary[f"{k}_rss_end_mib"] = vals[-1] if vals else None
        summary[f"{k}_rss_slope_mib_per_min"] = slope_per_min(memory, k, half)
    verdict = {
        "nodes alive to the end": all(alive.values()),
        "frames delivered in every 10 s": summary["min_delivered_per_10s"] > 0,
        f"latency grew < {max_latency_growth_ms:g} ms": bool(first and last) and
        summary["latency_last_ms"] - summary["latency_first_ms"] < max_latency_growth_ms,
        **{f"{k} RSS slope < {max_rss_slope:g} MiB/min": summary[f"{k}_rss_slope_mib_per_min"] < max_rss_slope
           for k in NODES},
    }
    return summary, verdict


def plot(series: list[dict], memory: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(3, 1, figsize=(9, 7), sharex=True)
    t = [r["t"] for r in series]
    ax[0].plot(t, [r["latency_p50_ms"] for r in series], label="p50")
    ax[0].plot(t, [r["latency_max_ms"] for r in series], label="max", alpha=0.5)
    ax[0].set_ylabel("end-to-end ms")
    ax[0].legend()
    for key in ("sent", "encoded", "delivered"):
        ax[1].plot(t, [r[key] for r in series], label=key)
    ax[1].set_ylabel("frames/s")
    ax[1].legend()
    plot_rss(ax[2], memory, NODES)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


COLUMNS = [("seconds", "seconds", "d"), ("offered_fps", "offered fps", ".1f"), ("encoded_fps", "encoded fps", ".1f"),
           ("delivered_fps", "delivered fps", ".1f"), ("encoder_drops", "encoder drops", "d"),
           ("decoder_drops", "decoder drops", "d"), ("latency_first_ms", "latency p50 first 1/5 ms", ".0f"),
           ("latency_last_ms", "last 1/5 ms", ".0f"), ("latency_slope_ms_per_min", "latency slope ms/min", "+.2f"),
           ("encoder_rss_end_mib", "encoder RSS MiB", ".0f"),
           ("encoder_rss_slope_mib_per_min", "encoder slope MiB/min", "+.2f"),
           ("decoder_rss_end_mib", "decoder RSS MiB", ".0f"),
           ("decoder_rss_slope_mib_per_min", "decoder slope MiB/min", "+.2f")]


def run(args) -> int:
    from ..harness.processes import (
        finish_probe,
        start_node,
        start_probe,
        stop,
        wait_for_log,
    )
    from ..model_files import model_file

    w, h = frame_size(args.size)
    seconds = args.minutes * 60.0
    if args.fps <= 0 or seconds < args.warmup_s + 10:
        raise ConfigError(f"--fps must be > 0 and --minutes cover the {args.warmup_s:g} s warm-up + 10 s")
    model = str(model_file(args.model))
    domain = domain_from(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {"seconds": seconds, "fps": args.fps, "size": [h, w], "progress_s": args.progress_s}
    print(f"soak: {w}x{h} rgb8 at {args.fps:g} fps for {args.minutes:g} min, width {args.width:g}, "
          f"ROS_DOMAIN_ID {domain}", flush=True)
    with tempfile.TemporaryDirectory(prefix="sp_soak_") as tmp:
        work = Path(tmp)
        m = {"model_path": model, "threads": args.threads}
        procs = [start_node("encoder", domain, params={**m, "width": args.width}, log_path=work / "encoder.log"),
                 start_node("decoder", domain, params={**m, "publish_annotated": True},  # all the offboard work
                            log_path=work / "decoder.log")]
        sampler = MemorySampler({k: p.pid for k, p in zip(NODES, procs)}, time.monotonic())
        try:
            wait_for_log(work / "encoder.log", "encoder ready", 120)
            wait_for_log(work / "decoder.log", "decoder ready", 120)
            probe = start_probe(cfg, work, domain)
            sampler.t0 = time.monotonic()
            sampler.start()
            rec = finish_probe(probe, cfg, work)
            alive = {k: p.poll() is None for k, p in zip(NODES, procs)}
        finally:
            memory = sampler.stop()
            stop(procs)
            for k in NODES:
                (out / f"{k}.log").write_text((work / f"{k}.log").read_text())
    series = per_second(rec, seconds)
    summary, verdict = checks(series, memory, args.warmup_s, args.max_latency_growth_ms, args.max_rss_slope, alive)
    table = markdown_table([summary], COLUMNS)
    print(table)
    for name, ok in verdict.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    payload = {"command": command_line(args), "machine": machine_info(args.threads), "size": [w, h],
               "fps": args.fps, "width": args.width, "summary": summary, "verdict": verdict, "memory": memory}
    write_results(out, "soak", payload, series)
    checklist = "\n".join(f"* {'pass' if ok else 'FAIL'}: {name}" for name, ok in verdict.items())
    (out / "table.md").write_text(f"{table}\n\n{checklist}\n")
    plot(series, memory, out / "soak.png")
    print(f"wrote {out}/soak.json, .csv (per second), .png, table.md")
    return 0 if all(verdict.values()) else 1
