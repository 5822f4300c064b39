"""`bench onboard`: the onboard encoder on ONNX Runtime vs torch, each in fresh processes.

Per runtime: install size (the interpreter's environment on disk, and how much of it the ROS 2 pip
wheels and their build tools take: a robot with a ROS 2 distro installs neither), cold start (process start to
the first packet, median of `--starts`) and peak RSS of a process that encodes frames at every width. Each
runtime may run in its own environment (`--onnx-python` a torch-free onboard venv); ratios are ONNX / torch,
measured in the same run. The time of an encode per width is `bench latency`'s (interleaved with the
whole teacher's, its baseline), and a relaunched node's start inside ROS is `bench restart`'s.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..evaluation.report import command_line, machine_info, markdown_table, write_results

REPO = Path(__file__).resolve().parents[2]
ENCODES_PER_WIDTH = 20  # frames encoded at each width by the process whose peak RSS is reported

CHILD = """
import json, sys, time
model, runtime, threads, frames_path, per_width = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
import numpy as np
from split_perception.onboard.encoder import OnboardEncoder

frames = np.load(frames_path)
enc = OnboardEncoder(model or None, runtime=runtime, threads=threads)
enc.encode(frames[0])
first = time.time()
for w in (enc.widths if per_width else ()):  # every width's buffers, for the peak RSS
    enc.set_width(w)
    for i in range(per_width):
        enc.encode(frames[i % len(frames)])
import importlib.metadata as md, os
def dist_mb(d):
    return sum(os.path.getsize(f.locate()) for f in d.files or [] if os.path.isfile(f.locate())) / 1e6
ros_mb = sum(dist_mb(d) for d in md.distributions()
             if (d.metadata["Name"] or "").lower().startswith(("ros-", "colcon-", "catkin-pkg")))
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "torchvision", "compressai", "onnxruntime"})
print(json.dumps({"first_packet": first, "runtime": enc.runtime, "prefix": sys.prefix, "loaded": loaded,
                  "ros_wheels_mb": ros_mb,
                  "rss_peak_mib": int(hwm.split()[1]) / 1024}))  # VmHWM: ru_maxrss would count the pre-exec fork
"""


def _child(python: str, model: str, runtime: str, threads: int, frames: Path, per_width: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    start = time.time()
    res = subprocess.run([python, "-c", CHILD, model, runtime, str(threads), str(frames), str(per_width)],
                         env=env, capture_output=True, text=True, timeout=600)
    if res.returncode:
        raise RuntimeError(f"{runtime} child ({python}) failed:\n{res.stderr[-3000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["cold_start_s"] = out.pop("first_packet") - start
    return out


def du_mb(path: str | Path) -> float:
    """Bytes on disk under `path` (files once, links not followed), in MB."""
    total, seen = 0, set()
    for root, _, files in os.walk(path):
        for f in files:
            st = os.lstat(os.path.join(root, f))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total / 1e6


def measure(model: str, pythons: dict[str, str], threads: int, starts: int, work: Path) -> list[dict]:
    from ..data.synthetic import render_scene
    from ..onboard.encoder import OnboardEncoder

    OnboardEncoder(model or None, runtime="torch")  # a model that does not load fails here, with its reason
    rng = np.random.default_rng(0)
    frames = np.stack([render_scene(rng, (480, 640))[0] for _ in range(8)])  # camera frames (shapes: any model)
    work.mkdir(parents=True, exist_ok=True)
    np.save(work / "frames.npy", frames)
    rows = []
    for runtime, python in pythons.items():
        colds = [_child(python, model, runtime, threads, work / "frames.npy", 0)["cold_start_s"]
                 for _ in range(starts)]
        busy = _child(python, model, runtime, threads, work / "frames.npy", ENCODES_PER_WIDTH)
        rows.append({"runtime": busy["runtime"], "python": python, "env": busy["prefix"],
                     "loaded": " ".join(busy["loaded"]), "install_mb": du_mb(busy["prefix"]),
                     "ros_wheels_mb": busy["ros_wheels_mb"], "rss_peak_mib": busy["rss_peak_mib"],
                     "cold_start_s": statistics.median(colds), "cold_start_all_s": colds})
    by = {r["runtime"]: r for r in rows}
    if "onnx" in by and "torch" in by:
        o, t = by["onnx"], by["torch"]
        ratio = {"runtime": "onnx / torch"}
        for k in o:
            if k.startswith(("install_mb", "ros_wheels_mb", "rss_peak", "cold_start_s")) and isinstance(o[k], float):
                ratio[k] = o[k] / t[k]
        rows.append(ratio)
    return rows


def run(args) -> int:
    pythons = {"onnx": args.onnx_python or sys.executable, "torch": args.torch_python or sys.executable}
    with tempfile.TemporaryDirectory() as work:
        rows = measure(args.model or "", pythons, args.threads, args.starts, Path(work))
    cols = [("runtime", "runtime", ""), ("install_mb", "install MB", ".0f"),
            ("ros_wheels_mb", "of it ROS 2 pip wheels MB", ".0f"), ("rss_peak_mib", "peak RSS MiB", ".0f"),
            ("cold_start_s", "cold start s", ".2f")]
    fmts = {k: f for k, _, f in cols}
    shown = [{k: (f"{v:.2f}x" if r["runtime"] == "onnx / torch" else format(v, fmts[k])) if isinstance(v, float) and
              k in fmts else v for k, v in r.items()} for r in rows]  # ratios with two decimals
    table = markdown_table(shown, [(k, t, "") for k, t, _ in cols])
    payload = {"command": command_line(args), "machine": machine_info(args.threads), "threads": args.threads,
               "frame": "640x480 RGB (resized to the input)",
               "note": "install MB: the whole environment each runtime ran in (ROS 2 pip wheels: the ros-*, "
                       "colcon-* and catkin-pkg distributions in it); peak RSS: a process that encoded "
                       f"{ENCODES_PER_WIDTH} frames at every width; cold start: process start to first packet, "
                       "median of the starts"}
    write_results(args.out, "onboard", payload, rows)
    (Path(args.out) / "table.md").write_text(table + "\n")
    print(table)
    return 0
