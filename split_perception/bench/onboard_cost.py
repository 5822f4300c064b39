"""`bench onboard`: the onboard encoder on ONNX Runtime vs torch, each in fresh processes.

Per runtime: install size (the interpreter's environment on disk, and how much of it the ROS 2 pip
wheels and their build tools take: a robot with a ROS 2 distro installs neither), cold start (process start to
the first packet, median of `--starts`), peak RSS of the encoding process, and encode ms per width
(preprocess + network + entropy coding, best and median of `--repeats`). Each runtime may run in
its own environment (`--onnx-python` a torch-free onboard venv); ratios are ONNX / torch, measured
in the same run.
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

CHILD = """
import json, sys, time
model, runtime, threads, frames_path, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
import numpy as np
from split_perception.onboard.encoder import OnboardEncoder

frames = np.load(frames_path)
enc = OnboardEncoder(model or None, runtime=runtime, threads=threads)
enc.encode(frames[0])
first = time.time()
ms = {}
for w in (enc.widths if repeats else ()):
    enc.set_width(w)
    for i in range(10):  # warm-up: allocator arenas, caches
        enc.encode(frames[i % len(frames)])
    t = []
    for i in range(repeats):
        t0 = time.perf_counter()
        enc.encode(frames[i % len(frames)])
        t.append(1000 * (time.perf_counter() - t0))
    ms[str(w)] = t
import importlib.metadata as md, os
def dist_mb(d):
    return sum(os.path.getsize(f.locate()) for f in d.files or [] if os.path.isfile(f.locate())) / 1e6
ros_mb = sum(dist_mb(d) for d in md.distributions()
             if (d.metadata["Name"] or "").lower().startswith(("ros-", "colcon-", "catkin-pkg")))
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "torchvision", "compressai", "onnxruntime"})
print(json.dumps({"first_packet": first, "runtime": enc.runtime, "ms": ms, "prefix": sys.prefix, "loaded": loaded,
                  "ros_wheels_mb": ros_mb,
                  "rss_peak_mib": int(hwm.split()[1]) / 1024}))  # VmHWM: ru_maxrss would count the pre-exec fork
"""


def _child(python: str, model: str, runtime: str, threads: int, frames: Path, repeats: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    start = time.time()
    res = subprocess.run([python, "-c", CHILD, model, runtime, str(threads), str(frames), str(repeats)],
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


def measure(model: str, pythons: dict[str, str], threads: int, starts: int, repeats: int, work: Path) -> list[dict]:
    from ..data.synthetic import render_scene
    from ..onboard.encoder import OnboardEncoder

    cfg = OnboardEncoder(model or None, runtime="torch").cfg
    rng = np.random.default_rng(0)
    frames = np.stack([render_scene(rng, (480, 640), tuple(cfg.class_names))[0] for _ in range(8)])  # a camera frame
    work.mkdir(parents=True, exist_ok=True)
    np.save(work / "frames.npy", frames)
    rows = []
    for runtime, python in pythons.items():
        colds = [_child(python, model, runtime, threads, work / "frames.npy", 0)["cold_start_s"]
                 for _ in range(starts)]
        timed = _child(python, model, runtime, threads, work / "frames.npy", repeats)
        row = {"runtime": timed["runtime"], "python": python, "env": timed["prefix"], "loaded": " ".join(timed["loaded"]),
               "install_mb": du_mb(timed["prefix"]), "ros_wheels_mb": timed["ros_wheels_mb"],
               "rss_peak_mib": timed["rss_peak_mib"],
               "cold_start_s": statistics.median(colds), "cold_start_all_s": colds}
        for w, t in timed["ms"].items():
            row[f"encode_ms_{w}"], row[f"encode_ms_median_{w}"] = min(t), statistics.median(t)
        rows.append(row)
    by = {r["runtime"]: r for r in rows}
    if "onnx" in by and "torch" in by:
        o, t = by["onnx"], by["torch"]
        ratio = {"runtime": "onnx / torch"}
        for k in o:
            if k.startswith(("install_mb", "ros_wheels_mb", "rss_peak", "cold_start_s", "encode_ms")) and \
                    isinstance(o[k], float):
                ratio[k] = o[k] / t[k]
        rows.append(ratio)
    return rows


def run(args) -> int:
    pythons = {"onnx": args.onnx_python or sys.executable, "torch": args.torch_python or sys.executable}
    with tempfile.TemporaryDirectory() as work:
        rows = measure(args.model or "", pythons, args.threads, args.starts, args.repeats, Path(work))
    widths = [k.removeprefix("encode_ms_") for k in rows[0] if k.startswith("encode_ms_") and "median" not in k]
    cols = [("runtime", "runtime", ""), ("install_mb", "install MB", ".0f"),
            ("ros_wheels_mb", "of it ROS 2 pip wheels MB", ".0f"), ("rss_peak_mib", "peak RSS MiB", ".0f"),
            ("cold_start_s", "cold start s", ".2f")]
    cols += [(f"encode_ms_{w}", f"encode ms w={w}", ".2f") for w in widths]
    fmts = {k: f for k, _, f in cols}
    shown = [{k: (f"{v:.2f}x" if r["runtime"] == "onnx / torch" else format(v, fmts[k])) if isinstance(v, float) and
              k in fmts else v for k, v in r.items()} for r in rows]  # ratios with two decimals
    table = markdown_table(shown, [(k, t, "") for k, t, _ in cols])
    payload = {"command": command_line(args), "machine": machine_info(args.threads), "threads": args.threads,
               "frame": "640x480 RGB (resized to the input)",
               "note": "install MB: the whole environment each runtime ran in (ROS 2 pip wheels: the ros-*, "
                       "colcon-* and catkin-pkg distributions in it); encode ms: best of the repeats "
                       "(medians in the json); cold start: process start to first packet, median of the starts"}
    write_results(args.out, "onboard", payload, rows)
    (Path(args.out) / "table.md").write_text(table + "\n")
    print(table)
    return 0
