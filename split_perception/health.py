"""Health of a frame-processing node from its counters: OK / WARN / ERROR with a reason, per period."""

from __future__ import annotations

from dataclasses import dataclass, field

OK, WARN, ERROR = 0, 1, 2  # the levels of diagnostic_msgs/DiagnosticStatus
NO_INPUT_WARN_S = 5.0  # no input for this long (since start or since the last message): WARN


@dataclass(frozen=True)
class Counters:
    """Cumulative counts of one node at one moment (the node only ever increments them)."""

    received: int = 0  # input messages (images or packets)
    done: int = 0  # frames encoded / decoded and published
    dropped: int = 0  # replaced in the drop-oldest slot before the worker took them
    bad: int = 0  # refused as malformed (bad image, corrupt packet)
    mismatched: int = 0  # refused as made by another model
    busy_ms: float = 0.0  # total encode / decode time of the `done` frames
    worker_alive: bool = True


@dataclass
class Report:
    level: int
    message: str
    values: dict[str, str] = field(default_factory=dict)


class HealthMonitor:
    """Compares each sample with the previous one; `input_name`/`bad_name` word the reasons, `busy_key`
    names the per-frame time value (encode_ms, decode_ms)."""

    def __init__(self, now: float, input_name: str = "input", bad_name: str = "bad input",
                 busy_key: str = "busy_ms", no_input_warn_s: float = NO_INPUT_WARN_S):
        self.input_name, self.bad_name, self.busy_key = input_name, bad_name, busy_key
        self.no_input_warn_s = no_input_warn_s
        self._prev, self._t_prev = Counters(), now
        self._t_last_input = now

    def update(self, now: float, cur: Counters) -> Report:
        """The level over the period since the last update, with rates and per-frame time."""
        prev, dt = self._prev, max(now - self._t_prev, 1e-9)
        self._prev, self._t_prev = cur, now
        d_in, d_done = cur.received - prev.received, cur.done - prev.done
        d_drop, d_bad, d_mis = cur.dropped - prev.dropped, cur.bad - prev.bad, cur.mismatched - prev.mismatched
        if d_in > 0:
            self._t_last_input = now
        level, reasons = OK, []

        def flag(lvl: int, reason: str) -> None:
            nonlocal level
            level = max(level, lvl)
            reasons.append(reason)

        if not cur.worker_alive:
            flag(ERROR, "worker thread stopped")
        if d_done == 0 and d_bad + d_mis > 0:
            flag(ERROR, f"all {self.input_name} of the last {dt:.1f} s refused"
                        f" ({_refusals(d_bad, d_mis, self.bad_name)})")
        elif d_bad + d_mis > 0:
            flag(WARN, f"refused {_refusals(d_bad, d_mis, self.bad_name)} in the last {dt:.1f} s")
        if d_drop > 0:
            flag(WARN, f"dropped {d_drop} frames in the last {dt:.1f} s (busy)")
        silent = now - self._t_last_input
        if silent >= self.no_input_warn_s:
            flag(WARN, f"no {self.input_name} for {silent:.0f} s")
        values = {"rate_in_fps": f"{d_in / dt:.2f}", "rate_out_fps": f"{d_done / dt:.2f}",
                  self.busy_key: f"{(cur.busy_ms - prev.busy_ms) / d_done:.1f}" if d_done else "",
                  "dropped": str(cur.dropped)}
        return Report(level, "; ".join(reasons) or f"{d_done / dt:.1f} fps", values)


def _refusals(bad: int, mismatched: int, bad_name: str) -> str:
    parts = ([f"{bad} {bad_name}"] if bad else []) + ([f"{mismatched} from another model"] if mismatched else [])
    return ", ".join(parts)
