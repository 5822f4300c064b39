"""Per-second samples of running processes (RSS) and the least-squares trend of a sampled value."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MiB (None once it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


class MemorySampler(threading.Thread):
    """Samples the RSS of named processes every second until stopped."""

    def __init__(self, procs: dict[str, int], t0: float):
        super().__init__(daemon=True)
        self.procs, self.t0 = procs, t0
        self.samples: list[dict] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(1.0):
            self.samples.append({"t": time.monotonic() - self.t0,
                                 **{name: rss_mb(pid) for name, pid in self.procs.items()}})

    def stop(self) -> list[dict]:
        self._done.set()
        if self.is_alive():
            self.join()
        return self.samples


def slope_per_min(samples: list[dict], key: str, after_s: float = 0.0) -> float:
    """Least-squares growth of `key` per minute over samples with t >= `after_s` (leaving out start-up)."""
    pts = [(s["t"], s[key]) for s in samples if s.get(key) is not None and s["t"] >= after_s]
    if len(pts) < 3:
        return 0.0
    t, v = np.array(pts).T
    return float(np.polyfit(t, v, 1)[0] * 60.0)


def plot_rss(ax, samples: list[dict], keys) -> None:
    """The RSS panel of a benchmark plot: one line per process, seconds on x."""
    for key in keys:
        ax.plot([s["t"] for s in samples], [s[key] for s in samples], label=key)
    ax.set_ylabel("RSS MiB")
    ax.set_xlabel("seconds")
    ax.legend()
