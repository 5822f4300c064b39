"""Bandwidth traces (constant, steps, CSV) and a token bucket, for the link emulator."""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import ConfigError


class BandwidthTrace:
    """Bits per second as a function of time since start; piecewise constant.

    Spec forms: "5e6" (constant), "steps:20e6@0,2e6@10,20e6@20" (rate@start_second), or a CSV
    file path with rows `seconds,bps` (header optional).
    """

    def __init__(self, points: list[tuple[float, float]]):
        if not points or any(bps < 0 for _, bps in points):
            raise ConfigError("a bandwidth trace needs at least one point and no negative rate")
        self.points = sorted(points)

    @classmethod
    def parse(cls, spec: str) -> "BandwidthTrace":
        spec = str(spec).strip()
        try:
            if spec.startswith("steps:"):
                pts = []
                for part in spec[len("steps:"):].split(","):
                    rate, _, start = part.partition("@")
                    pts.append((float(start or 0), float(rate)))
                return cls(pts)
            if spec.endswith(".csv"):
                path = Path(spec)
                if not path.is_file():
                    raise ConfigError(f"bandwidth trace file not found: {path}")
                rows = [r for r in csv.reader(path.read_text().splitlines()) if r and not r[0].startswith("#")]
                if rows and not rows[0][0].replace(".", "", 1).isdigit():
                    rows = rows[1:]
                return cls([(float(t), float(b)) for t, b, *_ in rows])
            return cls([(0.0, float(spec))])
        except (ValueError, IndexError):
            raise ConfigError(f"bad bandwidth trace {spec!r}: use '5e6', 'steps:20e6@0,2e6@10' or a CSV path") from None

    def at(self, t: float) -> float:
        rate = self.points[0][1]
        for start, bps in self.points:
            if t >= start:
                rate = bps
        return rate

    @property
    def duration(self) -> float:
        return self.points[-1][0]


class TokenBucket:
    """Bytes may leave when enough tokens (bytes) have accumulated at the current rate."""

    def __init__(self, burst_bytes: int):
        self.burst = burst_bytes
        self.tokens = float(burst_bytes)
        self._t: float | None = None

    def refill(self, now: float, rate_bps: float) -> None:
        if self._t is not None:
            self.tokens = min(self.burst, self.tokens + (now - self._t) * rate_bps / 8.0)
        self._t = now

    def take(self, num_bytes: int) -> bool:
        """Spend tokens for a message; a message larger than the burst may go once the bucket is full."""
        need = min(num_bytes, self.burst)
        if self.tokens >= need:
            self.tokens -= num_bytes
            return True
        return False
