"""End-to-end latency model of one frame: onboard time + bytes / bandwidth + offboard time.

The Entropic Student's latency argument (Matsubara et al., "Supervised Compression for Resource-
Constrained Edge Computing Systems", WACV 2022): on a slow link the bytes dominate, on a fast one
the compute does, and which option wins depends on the bandwidth. Pure arithmetic on measured
numbers, no timing in here, so it can be checked by hand.

With u = 1 / bandwidth every option's latency is a line in u, so the winner over a bandwidth
range is the lower envelope of lines: exact crossover points, not a grid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Option:
    """One way to get a frame's result: `onboard_ms` of compute, `bytes` over the link, `offboard_ms`."""

    name: str
    onboard_ms: float
    bytes: float
    offboard_ms: float

    def as_dict(self) -> dict:
        return asdict(self)


def transfer_ms(num_bytes: float, mbps: float) -> float:
    """Serialization time of `num_bytes` at `mbps` Mbit/s, in ms (1 Mbit = 1e6 bit)."""
    if mbps <= 0:
        raise ValueError(f"bandwidth must be > 0 Mbit/s, got {mbps}")
    return num_bytes * 8.0 / (mbps * 1e6) * 1e3


def end_to_end_ms(option: Option, mbps: float) -> float:
    """onboard + transfer + offboard, in ms (no propagation delay, queueing or packet overhead)."""
    return option.onboard_ms + transfer_ms(option.bytes, mbps) + option.offboard_ms


def bandwidth_grid(lo: float = 0.5, hi: float = 50.0, points: int = 61) -> list[float]:
    """Log-spaced bandwidths in Mbit/s, both ends included."""
    return [float(v) for v in np.geomspace(lo, hi, points)]


def winner(options: list[Option], mbps: float) -> Option:
    """The option with the lowest end-to-end latency at `mbps` (first listed wins a tie)."""
    return min(options, key=lambda o: end_to_end_ms(o, mbps))


def crossover_mbps(a: Option, b: Option) -> float | None:
    """Bandwidth at which `a` and `b` take equally long, or None if they never (or always) do."""
    dc = (b.onboard_ms + b.offboard_ms) - (a.onboard_ms + a.offboard_ms)  # fixed-cost difference, ms
    dk = a.bytes - b.bytes
    if dc == 0 or dk == 0 or (dc > 0) != (dk > 0):
        return None
    return dk * 8.0 / (dc * 1e3)  # solve dk * 8 / (bw * 1e3) = dc for bw in Mbit/s


def win_ranges(options: list[Option], lo: float, hi: float) -> list[dict]:
    """Contiguous bandwidth ranges [from_mbps, to_mbps] in which each option is fastest, low to high."""
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < lo < hi, got {lo}, {hi}")
    cuts = {lo, hi}
    for i, a in enumerate(options):
        for b in options[i + 1:]:
            x = crossover_mbps(a, b)
            if x is not None and lo < x < hi:
                cuts.add(x)
    cuts = sorted(cuts)
    ranges: list[dict] = []
    for a, b in zip(cuts, cuts[1:]):
        best = winner(options, float(np.sqrt(a * b))).name  # constant between two crossovers
        if ranges and ranges[-1]["option"] == best:
            ranges[-1]["to_mbps"] = b
        else:
            ranges.append({"option": best, "from_mbps": a, "to_mbps": b})
    return ranges


def curves(options: list[Option], bandwidths: list[float]) -> list[dict]:
    """One row per (bandwidth, option): transfer and end-to-end ms, and whether it wins there."""
    rows = []
    for bw in bandwidths:
        best = winner(options, bw).name
        for o in options:
            rows.append({"mbps": bw, "option": o.name, "transfer_ms": transfer_ms(o.bytes, bw),
                         "end_to_end_ms": end_to_end_ms(o, bw), "wins": o.name == best})
    return rows
