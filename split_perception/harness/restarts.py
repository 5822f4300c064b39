"""Kill a node mid-stream and restart it, and read from the probe's record when decoding resumed.

Shared by the fault tests (test/test_faults.py) and `bench restart`, so both measure the same way.
Times are wall-clock seconds: node logs, message stamps and the probe's arrival times share that clock.
"""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from .processes import (
    READY_TIMEOUT_S,
    finish_probe,
    start_node,
    start_probe,
    stop,
    wait_for_log,
    wait_ready,
)

NODES = ("encoder", "decoder")
KILL_AT_S = 6.0  # into the camera stream: every node is ready and frames flow


def log_wall_time(log: Path, text: str) -> float:
    """Wall-clock seconds of the first log line containing `text` (rclpy logs `[INFO] [sec.nsec] ...`)."""
    line = next(l for l in log.read_text().splitlines() if text in l)
    return float(re.search(r"\[(\d+\.\d+)\]", line).group(1))


def sent_wall(f: dict) -> float:
    """Capture time (the header stamp) of a recorded message."""
    return f["stamp"] / 1e9


def arrival_wall(d: dict) -> float:
    """When a recorded detection arrived at the probe."""
    return sent_wall(d) + d["latency_ms"] / 1000.0


def kill(proc) -> None:
    """SIGKILL: a crash, not a clean shutdown."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@dataclass
class Restart:
    """One kill-and-restart: the probe's record and the wall times of kill, relaunch and ready."""

    rec: dict
    other_alive: bool
    t_kill: float
    t_launch: float
    t_ready: float

    def arrivals_after_ready(self) -> list[float]:
        return [a for a in map(arrival_wall, self.rec["detections"]) if a > self.t_ready]

    def resume_s(self) -> float | None:
        """Seconds from the restarted node's "ready" line to the first detection after it (None: never)."""
        after = self.arrivals_after_ready()
        return min(after) - self.t_ready if after else None

    def outage_features(self) -> list[dict]:
        """Features the encoder published while the decoder was down (kill to ready)."""
        return [f for f in self.rec["features"] if self.t_kill < sent_wall(f) < self.t_ready]


def kill_and_restart(work: Path, domain: int, model_path, victim: str, down_s: float, seconds: float,
                     fps: float = 5.0, kill_at_s: float = KILL_AT_S, threads: int = 2,
                     env: dict | None = None, ready_timeout_s: float = READY_TIMEOUT_S,
                     encoder_runtime: str = "auto") -> Restart:
    """Encoder (on `encoder_runtime`) + decoder (`threads` CPU threads each), then a camera probe at
    `fps`; `kill_at_s` into it SIGKILL `victim` and relaunch it `down_s` later. The stream goes on
    until the relaunched node has been ready for as long as `seconds` leaves after the relaunch,
    however slowly it starts (a loaded machine). `env` goes to every process."""
    if victim not in NODES:
        raise ValueError(f"victim must be one of {NODES}, got {victim!r}")
    work = Path(work)
    common = {"model_path": str(model_path), "threads": threads}
    params = {"encoder": {**common, "runtime": encoder_runtime}, "decoder": common}
    nodes = {n: start_node(n, domain, params=params[n], log_path=work / f"{n}.log", env=env) for n in NODES}
    procs = list(nodes.values())
    try:
        wait_ready(work, *NODES)
        stop_file = work / "probe.stop"
        cfg = {"seconds": seconds + ready_timeout_s, "fps": fps, "stop_file": str(stop_file)}
        probe = start_probe(cfg, work, domain, env=env)
        procs.append(probe)
        time.sleep(kill_at_s)
        kill(nodes[victim])
        t_kill = time.time()
        time.sleep(down_s)
        t_launch = time.time()
        procs.append(start_node(victim, domain, params=params[victim], log_path=work / f"{victim}2.log", env=env))
        wait_for_log(work / f"{victim}2.log", f"{victim} ready", ready_timeout_s)
        time.sleep(max(seconds - kill_at_s - down_s, 1.0))
        stop_file.touch()
        rec = finish_probe(probe, cfg, work)
        other_alive = nodes[NODES[1 - NODES.index(victim)]].poll() is None
    finally:
        stop(procs)
    t_ready = log_wall_time(work / f"{victim}2.log", f"{victim} ready")
    return Restart(rec, other_alive, t_kill, t_launch, t_ready)
