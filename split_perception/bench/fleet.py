"""`bench fleet`: one offboard server for N robots against one decoder process per robot.

N simulated robots, each an encoder node in its own namespace fed by a camera at `--fps` with
held-out frames (one driver process publishes all the cameras), over real DDS on this machine.
Offboard, either one decoder node serves every robot (`robots`: one model in memory, one batch per
wake-up) or one decoder node per robot. Both modes run on the same machine in the same run: the
per-robot mode is the baseline. Rows: frames delivered per second (all robots), per-robot fps
min/max, latency p50/p95 (camera stamp -> detections), peak RSS of the offboard processes.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..evaluation.report import command_line, machine_info, markdown_table, write_results
from ..harness.domains import domain_from
from ..model_files import model_file
from .common import frames_source, load_frames
from .memory import MemorySampler

WARMUP_S = 5.0  # left out at the start (discovery, first batches)
MODES = ("one-server", "per-robot")


def camera_images(data, n: int, folder: Path) -> list[str]:
    """The cameras' frames, the first `n` of `data` (`load_frames`: a dataset's images or frames of clips),
    as PNG files in `folder`, which the camera process reads."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, rgb in enumerate(load_frames(data, n)):
        paths.append(str((folder / f"frame_{k:03d}.png").resolve()))
        Image.fromarray(rgb).save(paths[-1])
    return paths


def summarize(rec: dict, lo: float, hi: float) -> dict:
    """Delivered fps (all robots), per-robot fps min/max and latency percentiles over [lo, hi)."""
    span = hi - lo
    per_robot = {r: [d for d in v["detections"] if lo <= d["t"] < hi] for r, v in rec.items()}
    sent = sum(1 for v in rec.values() for s in v["sent"] if lo <= s["t"] < hi)
    lat = np.array([d["latency_ms"] for ds in per_robot.values() for d in ds])
    fps = [len(ds) / span for ds in per_robot.values()]
    return {"offered_fps": sent / span, "delivered_fps": sum(fps), "robot_fps_min": min(fps),
            "robot_fps_max": max(fps),
            "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
            "latency_p95_ms": float(np.percentile(lat, 95)) if lat.size else None}


def run_one(n: int, mode: str, args, domain: int, images: list[str], widths: list[float]) -> dict:
    from ..harness.processes import ROBOT_ENV, python_module, ros_env, start_node, stop, wait_for_log

    robots = [f"r{k + 1}" for k in range(n)]
    model = {"model_path": model_file(args.model)} if args.model else {}  # a bundled name as its checkpoint
    procs, offboard = [], []
    with tempfile.TemporaryDirectory(prefix="sp_fleet_") as tmp:
        work = Path(tmp)
        try:
            for k, r in enumerate(robots):  # the robots' links differ: so do their widths
                procs.append(start_node("encoder", domain, namespace=r, log_path=work / f"encoder_{r}.log",
                                        params={**model, "threads": 1, "width": widths[k % len(widths)]},
                                        env=ROBOT_ENV))
            dec = {**model, "threads": args.threads, "publish_mask": False}
            if mode == "one-server":
                offboard.append(start_node("decoder", domain, params={**dec, "robots": robots},
                                           log_path=work / "decoder.log"))
            else:
                offboard += [start_node("decoder", domain, namespace=r, params=dec, log_path=work / f"decoder_{r}.log")
                             for r in robots]
            procs += offboard
            for log in sorted(work.glob("*.log")):
                wait_for_log(log, "ready", 300)
            sampler = MemorySampler({f"p{k}": p.pid for k, p in enumerate(offboard)}, time.monotonic())
            sampler.start()
            cfg = {"robots": robots, "fps": args.fps, "seconds": args.seconds, "images": images}
            (work / "camera.json").write_text(json.dumps(cfg))
            cam = subprocess.Popen([*python_module("split_perception.harness.fleet_camera"), str(work / "camera.json"),
                                    str(work / "camera_out.json")], env={**ros_env(domain), **ROBOT_ENV}, cwd=work,
                                   start_new_session=True)
            procs.append(cam)
            if cam.wait(timeout=args.seconds + 120) != 0:
                raise RuntimeError(f"the fleet camera failed (exit {cam.returncode})")
            samples = sampler.stop()
            rec = json.loads((work / "camera_out.json").read_text())
        finally:
            stop(procs)
    totals = [sum(v for k, v in s.items() if k != "t" and v) for s in samples]
    row = {"robots": n, "mode": mode, **summarize(rec, WARMUP_S, args.seconds - 1.0),
           "rss_mib": max(totals, default=None), "offboard_processes": len(offboard)}
    print(f"  {n} robots, {mode:10s}: offered {row['offered_fps']:.1f} fps, delivered {row['delivered_fps']:.1f} "
          f"(per robot {row['robot_fps_min']:.1f}-{row['robot_fps_max']:.1f}), latency p50 "
          f"{row['latency_p50_ms'] or float('nan'):.0f} ms, offboard RSS {row['rss_mib'] or 0:.0f} MiB", flush=True)
    return row


def compare(rows: list[dict]) -> None:
    """Per robot count: the one server's delivered frames and memory as ratios of the per-robot setup."""
    by = {(r["robots"], r["mode"]): r for r in rows}
    for r in rows:
        base = by.get((r["robots"], "per-robot"))
        ok = base and base["delivered_fps"] and base["rss_mib"]
        r["fps_vs_per_robot"] = r["delivered_fps"] / base["delivered_fps"] if ok else None
        r["rss_vs_per_robot"] = r["rss_mib"] / base["rss_mib"] if ok and r["rss_mib"] else None


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for mode in MODES:
        pts = sorted((r["robots"], r["delivered_fps"], r["rss_mib"] or 0) for r in rows if r["mode"] == mode)
        a.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=mode)
        b.plot([p[0] for p in pts], [p[2] for p in pts], "o-", label=mode)
    a.plot(sorted({r["robots"] for r in rows}), [max(r["offered_fps"] for r in rows if r["robots"] == n)
                                                  for n in sorted({r["robots"] for r in rows})], "k:", label="offered")
    a.set(xlabel="robots", ylabel="frames delivered per second (all robots)")
    b.set(xlabel="robots", ylabel="offboard peak RSS MiB")
    a.legend()
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


COLUMNS = [("robots", "robots", "d"), ("mode", "offboard", "s"), ("offered_fps", "offered fps", ".1f"),
           ("delivered_fps", "delivered fps", ".1f"), ("fps_vs_per_robot", "x per-robot fps", ".2f"),
           ("robot_fps_min", "per robot min", ".1f"), ("robot_fps_max", "per robot max", ".1f"),
           ("latency_p50_ms", "latency p50 ms", ".0f"), ("latency_p95_ms", "latency p95 ms", ".0f"),
           ("rss_mib", "offboard RSS MiB", ".0f"), ("rss_vs_per_robot", "x per-robot RSS", ".2f")]


def run(args) -> int:
    try:
        counts = sorted({int(v) for v in args.robots.split(",") if v.strip()})
    except ValueError:
        raise ConfigError(f"--robots must be comma-separated integers, got {args.robots!r}") from None
    if not counts or counts[0] < 1:
        raise ConfigError("--robots must be >= 1")
    if args.seconds <= WARMUP_S + 3 or args.fps <= 0:
        raise ConfigError(f"--seconds must exceed {WARMUP_S + 3:.0f} and --fps be > 0")
    from ..onboard.export_files import widths_and_bytes

    widths = widths_and_bytes(args.model)[0]
    args.data = frames_source(args.model, args.data)
    domain = domain_from(args)
    print(f"fleet: {counts} robots at {args.fps:g} fps each, {args.seconds:g} s per run, widths cycling "
          f"{widths}, frames of {args.data}, ROS_DOMAIN_ID {domain}", flush=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sp_fleet_frames_") as frames:
        images = camera_images(args.data, 16, Path(frames))
        rows = [run_one(n, mode, args, domain, images, widths) for n in counts for mode in MODES]
    compare(rows)
    table = markdown_table(rows, COLUMNS)
    note = (f"{args.fps:g} fps offered per robot, {args.seconds:g} s per run (the first {WARMUP_S:g} s left out); "
            f"every decoder process runs {args.threads} torch thread(s); all processes share this machine; the "
            f"robots' processes (camera, encoders) run with config/fastdds_large_frames.xml, as the README has a robot do.")
    print(f"{note}\n\n{table}")
    out = Path(args.out)
    write_results(out, "fleet", {"command": command_line(args), "machine": machine_info(args.threads),
                                 "fps": args.fps, "seconds_per_run": args.seconds,
                                 "seconds": round(time.monotonic() - t0, 1)}, rows)
    (out / "table.md").write_text(f"{note}\n\n{table}\n")
    plot(rows, out / "fleet.png")
    print(f"wrote {out}/fleet.json, .csv, table.md, fleet.png")
    return 0 if all(r["delivered_fps"] > 0 for r in rows) else 1
