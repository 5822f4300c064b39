"""`bench encoder-node`: how many camera frames the onboard encoder node takes in, and at what CPU cost.

A camera process publishes 640x480 rgb8 frames at `--fps` to the encoder node over real DDS; no
decoder runs on the machine. Per runtime (ONNX, torch) and per Fast DDS setting of the robot's
processes (defaults, and the large-frames profile that `config/fastdds_large_frames.xml` ships), it
reports the rate at which frames reached the node (its own count, from /diagnostics), the rate it
encoded, the CPU cores it used (its CPU time over wall time) and its encode ms. The baseline in
the same run is the offered camera rate.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..evaluation.report import command_line, machine_info, markdown_table, write_results
from ..harness.domains import domain_from
from ..model_files import model_file
from .common import frame_size
from .memory import MemorySampler

WARMUP_S = 4.0  # left out at the start (discovery, first frames)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summarize(rec: dict, lo: float, hi: float) -> dict:
    """Rates over the window [lo, hi) of the probe's clock: offered, reached the node, encoded."""
    span = hi - lo
    sent = [s for s in rec["sent"] if lo <= s["t"] < hi]
    feats = [f for f in rec["features"] if lo <= f["t"] < hi]
    diag = [d for d in rec["diagnostics"] if lo <= d["t"] < hi and d["name"].endswith("/encoder")]
    rate_in = [float(d["values"]["rate_in_fps"]) for d in diag if "rate_in_fps" in d["values"]]
    return {"offered_fps": len(sent) / span, "received_fps": float(np.mean(rate_in)) if rate_in else None,
            "encoded_fps": len(feats) / span,
            "encode_ms_p50": float(np.median([f["encode_ms"] for f in feats])) if feats else None}


def run_one(runtime: str, profile: str | None, args, domain: int, size: tuple[int, int]) -> dict:
    from ..harness.processes import finish_probe, start_node, start_probe, stop, wait_ready

    w, h = size
    env = {"FASTDDS_DEFAULT_PROFILES_FILE": profile} if profile else None
    cfg = {"seconds": args.seconds, "fps": args.fps, "size": [h, w], "record_diagnostics": True}
    with tempfile.TemporaryDirectory(prefix="sp_encoder_node_") as tmp:
        work = Path(tmp)
        params = {"runtime": runtime, "threads": args.threads, "width": args.width}
        if args.model:
            params["model_path"] = model_file(args.model)  # a bundled name as its checkpoint
        enc = start_node("encoder", domain, params=params, log_path=work / "encoder.log", env=env)
        sampler = MemorySampler({"encoder": enc.pid}, time.monotonic())
        try:
            wait_ready(work, "encoder")
            sampler.start()
            probe = start_probe(cfg, work, domain, env=env)
            t_start = time.monotonic()
            time.sleep(WARMUP_S)
            c0, t0 = cpu_seconds(enc.pid), time.monotonic()
            time.sleep(max(0.0, args.seconds - WARMUP_S - 1.0))
            c1, t1 = cpu_seconds(enc.pid), time.monotonic()
            rec = finish_probe(probe, cfg, work)
        finally:
            stop([enc])
            samples = sampler.stop()
        log = (work / "encoder.log").read_text()
    # the probe's clock starts a moment after t_start: the window is the CPU window, give or take that
    row = {"runtime": runtime, "camera_dds": "large-frames profile" if profile else "Fast DDS defaults",
           **summarize(rec, t0 - t_start, t1 - t_start), "encoder_cores": (c1 - c0) / (t1 - t0),
           "rss_max_mib": max((s["encoder"] for s in samples if s["encoder"]), default=None)}
    if "runtime " + runtime not in log:
        raise RuntimeError(f"the encoder did not run on {runtime}:\n{log[-2000:]}")
    print(f"  {runtime:5s} {row['camera_dds']:22s} offered {row['offered_fps']:.1f} fps, reached the node "
          f"{row['received_fps'] or 0:.1f}, encoded {row['encoded_fps']:.1f}, {row['encoder_cores']:.2f} cores",
          flush=True)
    return row


COLUMNS = [("runtime", "runtime", "s"), ("camera_dds", "robot's Fast DDS setting", "s"),
           ("offered_fps", "camera fps (baseline)", ".1f"), ("received_fps", "fps reaching the node", ".1f"),
           ("encoded_fps", "encoded fps", ".1f"), ("encoded_ratio", "encoded / offered", ".2f"),
           ("encoder_cores", "encoder CPU cores", ".2f"), ("encode_ms_p50", "encode ms p50", ".1f"),
           ("rss_max_mib", "peak RSS MiB", ".0f")]


def run(args) -> int:
    w, h = frame_size(args.size)
    if args.seconds <= WARMUP_S + 3 or args.fps <= 0:
        raise ConfigError(f"--seconds must exceed {WARMUP_S + 3:.0f} and --fps be > 0")
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    if not runtimes or set(runtimes) - {"onnx", "torch"}:
        raise ConfigError(f"--runtimes: comma-separated onnx and/or torch, got {args.runtimes!r}")
    from ..harness.processes import LARGE_FRAMES_PROFILE

    profile = args.dds_profile if args.dds_profile is not None else str(LARGE_FRAMES_PROFILE)
    if profile and not Path(profile).is_file():
        raise ConfigError(f"--dds-profile: no such file {profile}")
    domain = domain_from(args)
    print(f"encoder node: {w}x{h} rgb8 at {args.fps:g} fps, {args.seconds:g} s per run, width {args.width}, "
          f"ROS_DOMAIN_ID {domain}", flush=True)
    rows = []
    for runtime in runtimes:
        for prof in ([None, profile] if profile else [None]):
            rows.append(run_one(runtime, prof, args, domain, (w, h)))
    for r in rows:
        r["encoded_ratio"] = r["encoded_fps"] / r["offered_fps"] if r["offered_fps"] else None
    table = markdown_table(rows, COLUMNS)
    print(table)
    out = Path(args.out)
    write_results(out, "encoder_node", {"command": command_line(args), "machine": machine_info(args.threads),
                                        "size": [w, h], "fps": args.fps, "seconds": args.seconds,
                                        "width": args.width, "dds_profile": profile}, rows)
    (out / "table.md").write_text(table + "\n")
    print(f"wrote {out}/encoder_node.json, .csv, table.md")
    return 0 if all(r["encoded_fps"] > 0 for r in rows) else 1
