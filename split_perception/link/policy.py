"""Width selection from link quality: fit the target frame rate into the bandwidth, with hysteresis.

Rules, in order:
1. Congestion (frame-id gaps above `loss_down` or latency above `latency_down_ms`): step down at
   once (back off fast), but not more often than every `down_dwell_s`.
2. A known capacity (external bandwidth report or the emulator's): the widest width whose
   bytes/frame x target fps fits `headroom` x capacity. Going down happens at once (after
   `down_dwell_s`); going up needs that width to fit `up_margin` x tighter for `up_dwell_s`
   (hysteresis), so the width does not flap around a threshold.
3. No capacity known and a clean link for `up_dwell_s`: probe one width up.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PolicyConfig:
    target_fps: float = 10.0
    headroom: float = 0.8  # use at most this share of the capacity
    up_margin: float = 1.25  # a wider width must fit with this extra factor to be chosen
    up_dwell_s: float = 3.0  # conditions for going up must hold this long
    down_dwell_s: float = 1.0  # minimum time between two switches down
    loss_down: float = 0.1  # loss rate that counts as congestion
    latency_down_ms: float = 500.0  # mean latency that counts as congestion


class WidthPolicy:
    """Stateful chooser; `decide` returns the width to use now (possibly unchanged)."""

    def __init__(self, widths, bytes_per_width, cfg: PolicyConfig | None = None, start_width: float | None = None):
        self.widths = list(widths)
        self.bytes = dict(zip(self.widths, bytes_per_width))
        self.cfg = cfg or PolicyConfig()
        self.width = self.widths[-1] if start_width is None else start_width
        self._last_switch = -1e9
        self._up_since: float | None = None

    def observe_bytes(self, width: float, bytes_per_frame: float, alpha: float = 0.2) -> None:
        """Track the real packet sizes per width (EMA), so budgets follow the scene content."""
        if width in self.bytes and bytes_per_frame > 0:
            self.bytes[width] = (1 - alpha) * self.bytes[width] + alpha * bytes_per_frame

    def fits(self, width: float, capacity_bps: float, margin: float = 1.0) -> bool:
        return self.bytes[width] * 8.0 * self.cfg.target_fps * margin <= self.cfg.headroom * capacity_bps

    def _switch(self, now: float, width: float) -> float:
        if width != self.width:
            self.width = width
            self._last_switch = now
        self._up_since = None
        return self.width

    def decide(self, now: float, capacity_bps: float | None, loss_rate: float = 0.0,
               latency_ms: float = 0.0) -> float:
        c = self.cfg
        i = self.widths.index(self.width)
        can_go_down = now - self._last_switch >= c.down_dwell_s
        congested = loss_rate > c.loss_down or latency_ms > c.latency_down_ms
        if capacity_bps is not None:
            fitting = [w for w in self.widths if self.fits(w, capacity_bps)]
            target = fitting[-1] if fitting else self.widths[0]
            if congested and target >= self.width:
                target = self.widths[max(0, i - 1)]
        elif congested:
            target = self.widths[max(0, i - 1)]
        else:
            target = self.widths[min(len(self.widths) - 1, i + 1)]
        if target < self.width:
            return self._switch(now, target) if can_go_down else self.width
        if target > self.width and not congested:
            step_up = self.widths[i + 1]
            ok = capacity_bps is None or self.fits(step_up, capacity_bps, c.up_margin)
            if not ok:
                self._up_since = None
                return self.width
            if self._up_since is None:
                self._up_since = now
            if now - self._up_since >= c.up_dwell_s:
                return self._switch(now, step_up)  # one step at a time: probe up slowly
            return self.width
        self._up_since = None
        return self.width
