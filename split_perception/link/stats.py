"""Sliding-window link statistics measured at the receiver: throughput, fps, loss from frame-id gaps."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass
class LinkSnapshot:
    throughput_bps: float
    fps: float
    loss_rate: float
    latency_ms: float
    bytes_per_frame: float
    width: float
    frames_received: int
    frames_lost: int


class LinkStats:
    """Arrivals over the last `window_s` seconds; lost frames are gaps in frame ids.

    A frame id lower than the last one (encoder restarted), or one more than `MAX_GAP` ahead (a
    forged or corrupt id), starts a new stream, not a loss.
    """

    MAX_GAP = 10_000  # ~5 min at 30 fps: a longer real outage also just starts over

    def __init__(self, window_s: float = 2.0):
        self.window_s = window_s
        self._arrivals: deque[tuple[float, int, float | None, int, float]] = deque()  # t, bytes, latency, lost, width
        self._last_id: int | None = None
        self.frames_received = 0
        self.frames_lost = 0

    def add(self, now: float, frame_id: int, num_bytes: int, latency_ms: float | None, width: float) -> None:
        """One arrival; `latency_ms` None when it cannot be measured (it is then left out of the mean)."""
        lost = 0
        if self._last_id is not None and self._last_id < frame_id <= self._last_id + self.MAX_GAP + 1:
            lost = frame_id - self._last_id - 1
        self._last_id = frame_id
        self.frames_received += 1
        self.frames_lost += lost
        self._arrivals.append((now, num_bytes, latency_ms, lost, width))
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._arrivals and self._arrivals[0][0] < now - self.window_s:
            self._arrivals.popleft()

    def snapshot(self, now: float) -> LinkSnapshot:
        self._trim(now)
        a = self._arrivals
        n = len(a)
        lost = sum(x[3] for x in a)
        latencies = [x[2] for x in a if x[2] is not None]
        return LinkSnapshot(
            throughput_bps=8.0 * sum(x[1] for x in a) / self.window_s,
            fps=n / self.window_s,
            loss_rate=lost / (n + lost) if n + lost else 0.0,
            latency_ms=sum(latencies) / len(latencies) if latencies else 0.0,
            bytes_per_frame=sum(x[1] for x in a) / n if n else 0.0,
            width=a[-1][4] if n else 0.0,
            frames_received=self.frames_received,
            frames_lost=self.frames_lost,
        )
