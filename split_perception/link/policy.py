"""Width and frame-rate selection from link quality: back off fast, probe up slowly, never flap.

What congestion looks like on DDS over a radio link (docs/robustness.md): once the offered load
exceeds the capacity, fragmented messages are lost whole and queues fill, so the signals are gaps in
frame ids (loss), a falling delivered ratio (frames received offboard / frames sent onboard),
one-way latency rising above its floor (queueing; not while it is falling again), and, when the
link is down both ways, reports that stop arriving. Rules, in order:

1. Congested (any signal above): step down at once, in one step, to the widest width that the
   link's measured capacity carries (what it delivered, plus `frame_overhead_bytes` per delivered
   frame for the headers on the wire), less what drains the queue the latency shows within
   `drain_s`. When no narrower width fits that, the narrowest width at the frame rate the capacity
   carries (the frame rate is the last resort: it is not cut to drain the queue faster, unless the
   stream is at the narrowest width already). At least one step (a width, or at the narrowest width
   half the frame rate, not below `min_rate_hz`), not more often than every `down_dwell_s`. While the link delivers
   more than the new setting sends (with `headroom`), or delivers frames faster than they are
   sent, high latency and missing frames are the queue from before draining: neither congestion
   nor a clean link (the up dwell waits for it).
   Each congested step down from a width doubles the clean time needed before trying it again
   (up to `max_backoff_s`), so a width that does not fit is not retried every few seconds.
2. A known capacity (external bandwidth report or the emulator's): the widest width whose
   bytes/frame x target fps fits `headroom` x capacity; going up needs `up_margin` more room and
   `up_dwell_s` of it.
3. Clean for long enough: raise the frame rate first (back to the target), then one width up.

Every decision starts from the encoder's actual setting (`observe_encoder`), never from what the
policy last asked for: a request the encoder refused leaves the policy where the encoder is, a
step down never raises the width and a step up never lowers it. A setting the policy did not ask
for (an operator's `ros2 param set /encoder width 0.25`) pauses it for `manual_hold_s`; it then
resumes from that setting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import find_width
from ..errors import ConfigError

MIN_SHORTFALL_FPS = 1.0  # the delivered ratio counts only when this many frames/s are missing


@dataclass
class PolicyConfig:
    target_fps: float = 10.0
    headroom: float = 0.8  # use at most this share of the capacity
    up_margin: float = 1.25  # a wider width must fit with this extra factor to be chosen
    up_dwell_s: float = 3.0  # conditions for going up must hold this long
    down_dwell_s: float = 1.0  # minimum time between two steps down
    loss_down: float = 0.1  # loss rate that counts as congestion
    delivered_down: float = 0.7  # delivered / sent frame ratio below this counts as congestion
    latency_rise_ms: float = 150.0  # latency this far above its floor counts as congestion (queueing)
    latency_down_ms: float = 1000.0  # latency above this counts as congestion whatever the floor
    min_rate_hz: float = 1.0  # never throttle the camera below this
    frame_overhead_bytes: float = 400.0  # what a frame costs on the wire beyond its packet (DDS, UDP, IP headers)
    drain_s: float = 2.0  # a back-off leaves room to empty the queue the latency shows within this long
    ratio_settle_s: float = 3.0  # after a frame-rate change the sent and delivered windows disagree: wait
    max_backoff_s: float = 60.0  # longest wait before retrying a width that congested the link
    manual_hold_s: float = 60.0  # a setting made by someone else pauses the policy this long (0 = never)


@dataclass
class LinkObservation:
    """What the link monitor knows at one decision; None = not measured."""

    capacity_bps: float | None = None  # an external report (radio, emulator)
    loss_rate: float = 0.0  # frame-id gaps seen offboard
    latency_ms: float | None = None  # mean one-way latency offboard
    delivered_fps: float | None = None  # frames received offboard per second
    sent_fps: float | None = None  # frames the encoder published per second
    throughput_bps: float | None = None  # bits per second received offboard
    stale: bool = False  # no report for a while: the link is down (both ways)


@dataclass
class Decision:
    width: float
    rate_hz: float  # frame rate to allow the encoder; the target when not throttled


MAX_OWN = 8  # own requests remembered until their parameter events come back (an encoder may send none)


def _same(name: str, a: float, b: float) -> bool:
    """Two reported values of the encoder parameter `name` are the same: widths as `find_width` matches
    them, rates as floats."""
    return find_width([a], b) is not None if name == "width" else math.isclose(a, b)


class WidthPolicy:
    """Stateful chooser; `decide` returns the width and frame rate to use now (possibly unchanged)."""

    def __init__(self, widths, bytes_per_width, cfg: PolicyConfig | None = None, start_width: float | None = None):
        self.widths = list(widths)
        self.bytes = dict(zip(self.widths, bytes_per_width))
        self.cfg = cfg or PolicyConfig()
        self.width = self.widths[-1] if start_width is None else start_width
        self.rate_hz = self.cfg.target_fps
        self.last_reason = ""
        self.draining = False  # the last report showed a queue from before that the link is emptying
        self._last_down = -1e9
        self._rate_changed = -1e9
        self._clean_since: float | None = None
        self._latency_floor: float | None = None
        self._last_latency: float | None = None
        self._backoff = {w: 0.0 for w in self.widths}  # extra clean time before retrying a width
        self.auto = True  # False: observe only, never change the setting
        self.hold_until = -math.inf  # paused until then by a setting someone else made
        self.actual: Decision | None = None  # the encoder's setting as it last reported it
        self._own: dict[str, list[float]] = {"width": [], "max_rate_hz": []}  # requested, event not seen yet

    def max_rate_hz(self, rate_hz: float) -> float:
        """The encoder's `max_rate_hz` for a frame rate: 0 (every camera frame) at the target."""
        return 0.0 if rate_hz >= self.cfg.target_fps else rate_hz

    def held(self, now: float) -> bool:
        """Paused: `auto` is off, or someone else set the encoder less than `manual_hold_s` ago."""
        return not self.auto or now < self.hold_until

    def observe_encoder(self, now: float, width: float | None = None, max_rate_hz: float | None = None,
                        initial: bool = False) -> str:
        """The encoder's actual width and/or max_rate_hz (its parameter events; `initial`: read at start
        or declared by a (re)started encoder). Returns what someone else changed ("" = nothing)."""
        if self.actual is None:
            self.actual = Decision(self.width, self.rate_hz)
        manual = []
        if width is not None:
            i = find_width(self.widths, width)
            if i is None:
                raise ConfigError(f"encoder width {width} is not one of {self.widths}: "
                                  "is model_path the encoder's checkpoint?")
            if self._observe(now, "width", self.widths[i], self.actual.width, initial):
                manual.append(f"width {self.widths[i]:g}")
        if max_rate_hz is not None:
            if self._observe(now, "max_rate_hz", max_rate_hz, self.max_rate_hz(self.actual.rate_hz), initial):
                manual.append(f"max_rate_hz {max_rate_hz:g}")
        if manual and self.cfg.manual_hold_s > 0:
            self.hold_until = now + self.cfg.manual_hold_s
        if manual or initial:
            self._clean_since = None  # a new starting point: the up dwell starts again
        return ", ".join(manual)

    def _observe(self, now: float, name: str, value: float, was: float, initial: bool) -> bool:
        """Record one reported value; True if it changed and nobody here asked for it."""
        own = self._own[name]
        match = next((k for k, v in enumerate(own) if _same(name, v, value)), None)
        if match is not None:
            del own[:match + 1]  # this request and any older ones are done
            self._set_actual(now, name, value, pending=bool(own))
            return False
        foreign = not initial and not _same(name, value, was)
        own.clear()  # whatever the policy asked for before, this value came later
        self._set_actual(now, name, value, pending=False)
        return foreign

    def _set_actual(self, now: float, name: str, value: float, pending: bool) -> None:
        """Store the encoder's value; unless a later own request is still out, decisions start from it."""
        if name == "width":
            self.actual.width = value
            if not pending:
                self.width = value
        else:
            rate = self.cfg.target_fps if value <= 0 else min(value, self.cfg.target_fps)
            if rate != self.actual.rate_hz:
                self._rate_changed = now
            self.actual.rate_hz = rate
            if not pending:
                self.rate_hz = rate

    def requested(self, d: Decision) -> None:
        """The node sent `d` to the encoder: its parameter events are this policy's own."""
        for name, v in (("width", d.width), ("max_rate_hz", self.max_rate_hz(d.rate_hz))):
            self._own[name] = (self._own[name] + [v])[-MAX_OWN:]

    def request_done(self, now: float, d: Decision, width_ok: bool, rate_ok: bool) -> None:
        """The encoder answered a request for `d` (False: refused, failed or no answer): a refused
        value is dropped and the policy goes back to the encoder's actual value."""
        if self.actual is None:
            self.actual = Decision(self.width, self.rate_hz)
        for name, ok, v in (("width", width_ok, d.width), ("max_rate_hz", rate_ok, self.max_rate_hz(d.rate_hz))):
            if ok:
                self._set_actual(now, name, v, pending=False)
                continue
            own = self._own[name]
            k = next((k for k in range(len(own) - 1, -1, -1) if _same(name, own[k], v)), None)
            if k is not None:
                del own[k]
            if name == "width":
                self.width = self.actual.width
            else:
                self.rate_hz = self.actual.rate_hz

    def observe_bytes(self, width: float, bytes_per_frame: float, alpha: float = 0.2) -> None:
        """Track the real packet sizes per width (EMA), so budgets follow the scene content."""
        if width in self.bytes and bytes_per_frame > 0:
            self.bytes[width] = (1 - alpha) * self.bytes[width] + alpha * bytes_per_frame

    def fits(self, width: float, capacity_bps: float, margin: float = 1.0, fps: float | None = None) -> bool:
        fps = self.cfg.target_fps if fps is None else fps
        return self.bytes[width] * 8.0 * fps * margin <= self.cfg.headroom * capacity_bps

    def wire_bits(self, width: float) -> float:
        """Bits one frame at `width` takes on the link: its packet plus the per-message headers."""
        return 8.0 * (self.bytes[width] + self.cfg.frame_overhead_bytes)

    def measured_capacity(self, obs: LinkObservation) -> float | None:
        """The link's capacity in bits/s on the wire: a report, else what it delivered while congested
        (the packets' bits, plus the headers of each delivered frame). None = not measured."""
        if obs.capacity_bps:
            return obs.capacity_bps
        if not obs.throughput_bps:
            return None
        frames = obs.delivered_fps
        if frames is None:  # the decoder's window is not full yet: frames from the bytes at this width
            frames = obs.throughput_bps / (8.0 * self.bytes[self.width])
        return obs.throughput_bps + 8.0 * self.cfg.frame_overhead_bytes * frames

    def queue_s(self, obs: LinkObservation) -> float:
        """Seconds of queue on the link: the latency above its floor (0 when unknown)."""
        if not obs.latency_ms or self._latency_floor is None:
            return 0.0
        return max(0.0, obs.latency_ms - self._latency_floor) / 1000.0

    def congestion(self, now: float, obs: LinkObservation) -> str:
        """Why the link looks congested now ("" = it does not)."""
        c = self.cfg
        if obs.stale:
            return "no link reports"
        if obs.loss_rate > c.loss_down:
            return f"loss {obs.loss_rate:.2f}"
        # a stream the link demonstrably carries with room to spare (it delivered more, queued frames
        # included): a shortfall of frames or a high latency is the queue from before draining
        capacity = self.measured_capacity(obs)
        draining = bool(capacity) and self.wire_bits(self.width) * self.rate_hz <= c.headroom * capacity
        # frames arriving faster than they are sent: a backlog shrinking, whatever the bytes say (right
        # after a step down the link's reports mix the old width's queued frames with the new)
        draining |= bool(obs.sent_fps and obs.delivered_fps is not None and obs.delivered_fps > obs.sent_fps)
        self.draining = False
        settled = now - self._rate_changed >= c.ratio_settle_s  # sent counts the new rate sooner than delivered
        if settled and not draining and obs.sent_fps and obs.sent_fps >= 1.0 and obs.delivered_fps is not None:
            ratio = obs.delivered_fps / obs.sent_fps
            # at a throttled rate a 2 s window holds 2-3 frames: one frame of counting skew is not loss
            if ratio < c.delivered_down and obs.sent_fps - obs.delivered_fps >= MIN_SHORTFALL_FPS:
                return f"delivered {ratio:.2f} of sent frames"
        if obs.latency_ms:
            floor, last = self._track_floor(obs.latency_ms), self._last_latency
            self._last_latency = obs.latency_ms
            falling = last is not None and obs.latency_ms < 0.8 * last  # queues emptying: backing off worked
            if obs.latency_ms > c.latency_down_ms or obs.latency_ms > floor + c.latency_rise_ms:
                if not (draining or falling):
                    return f"latency {obs.latency_ms:.0f} ms (floor {floor:.0f})"
                self.draining = draining  # neither congested nor clean: wait for the queue to empty
        return ""

    def _track_floor(self, latency_ms: float) -> float:
        """Lowest recent latency: follows drops at once and rises only slowly (clock drift, routes)."""
        f = self._latency_floor
        self._latency_floor = latency_ms if f is None or latency_ms < f else f + 0.01 * (latency_ms - f)
        return self._latency_floor

    def decide(self, now: float, obs: LinkObservation) -> Decision:
        c = self.cfg
        why = self.congestion(now, obs)  # also while paused: the latency floor keeps up
        if self.held(now):
            self._clean_since = None  # resuming starts the up dwell afresh, from the actual setting
            return Decision(self.width, self.rate_hz)
        if why:
            self._clean_since = None
            if now - self._last_down >= c.down_dwell_s:
                self._back_off(now, obs, why)
            return Decision(self.width, self.rate_hz)
        if self.draining:
            self._clean_since = None  # the up dwell starts once the queue has drained
            return Decision(self.width, self.rate_hz)
        if obs.capacity_bps is not None:
            fitting = [w for w in self.widths if self.fits(w, obs.capacity_bps)]
            target = fitting[-1] if fitting else self.widths[0]
            if target < self.width and now - self._last_down >= c.down_dwell_s:
                self._step(now, target, self.rate_hz, f"capacity {obs.capacity_bps:.0f} bit/s", down=True)
                self._last_down = now
                return Decision(self.width, self.rate_hz)
        if self._clean_since is None:
            self._clean_since = now
        clean_for = now - self._clean_since
        if clean_for >= c.max_backoff_s:
            self._backoff[self.width] = 0.0  # this width has proven itself: forget its failures
        if self.rate_hz < c.target_fps:
            if clean_for >= c.up_dwell_s:  # frame rate first, doubling back to the target
                self._step(now, self.width, min(c.target_fps, 2 * self.rate_hz), "clean link", down=False)
                self._clean_since = now
            return Decision(self.width, self.rate_hz)
        i = self.widths.index(self.width)
        if i + 1 < len(self.widths):
            up = self.widths[i + 1]
            if obs.capacity_bps is not None and not self.fits(up, obs.capacity_bps, c.up_margin):
                self._clean_since = now  # the wider width must have had room for the whole dwell
            elif clean_for >= c.up_dwell_s + self._backoff[up]:
                self._step(now, up, self.rate_hz, "clean link", down=False)  # one step at a time: probe up slowly
                self._clean_since = now
        return Decision(self.width, self.rate_hz)

    def _back_off(self, now: float, obs: LinkObservation, why: str) -> None:
        """One step to the widest width, and the highest frame rate at the narrowest, that the measured
        capacity carries with room to drain the queue; at least one step (a width, or half the rate)."""
        c = self.cfg
        i = self.widths.index(self.width)
        capacity, queue_s = self.measured_capacity(obs), self.queue_s(obs)
        budget = None
        if capacity:
            # what the new stream may use: the headroom, less the queue drained over drain_s (at most
            # half of it: a deep queue drains over longer rather than starving the stream)
            budget = c.headroom * capacity - min(0.5 * c.headroom * capacity, queue_s * capacity / c.drain_s)
        fitting = [w for w in self.widths[:i] if budget and self.wire_bits(w) * self.rate_hz <= budget]
        if fitting or (i > 0 and not budget):
            self._backoff[self.width] = min(c.max_backoff_s, max(c.up_dwell_s, 2 * self._backoff[self.width]))
            self._step(now, fitting[-1] if fitting else self.widths[i - 1], self.rate_hz, why, down=True)
        else:  # nothing narrower fits: the narrowest width at fewer frames
            if i > 0:
                self._backoff[self.width] = min(c.max_backoff_s, max(c.up_dwell_s, 2 * self._backoff[self.width]))
            rate = self.rate_hz / 2 if i == 0 else self.rate_hz
            if budget:
                # coming down from a wider width, the narrowest width's frame rate is cut only as far as
                # the capacity requires (the queue drains with what the narrower stream leaves); at the
                # narrowest already, also as far as draining the queue within drain_s requires
                room = budget if i == 0 else c.headroom * capacity
                rate = min(rate, room / self.wire_bits(self.widths[0]))
            self._step(now, self.widths[0], min(self.rate_hz, max(c.min_rate_hz, rate)), why, down=True)
        self._last_down = now

    def _step(self, now: float, width: float, rate_hz: float, why: str, down: bool) -> None:
        sign = -1 if down else 1  # a step down never raises the width or rate, a step up never lowers them
        assert sign * (width - self.width) >= 0 and sign * (rate_hz - self.rate_hz) >= 0, (self.width, width, down)
        if rate_hz != self.rate_hz:
            self._rate_changed = now
        self.width, self.rate_hz, self.last_reason = width, rate_hz, why
