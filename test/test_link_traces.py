"""The width policy replayed on what the link monitor saw over the real tbf link (`bench link`
traces kept in test/data/link_traces): it must react to real congestion and ignore a clean link."""

from __future__ import annotations

import json
from pathlib import Path

from split_perception.link.policy import LinkObservation, PolicyConfig, WidthPolicy
from split_perception.model_files import BUNDLED_MODELS
from split_perception.models.checkpoint import read_checkpoint

TRACES = Path(__file__).parent / "data" / "link_traces"


def replay(name: str, start_width: float = 1.0):
    trace = json.loads((TRACES / f"{name}.json").read_text())
    ckpt = read_checkpoint(BUNDLED_MODELS["synthetic"])  # the model the traces were recorded with
    widths = list(ckpt["model_config"].widths)
    sizes = [float(ckpt["extra"]["bytes_per_width"][str(w)]) for w in widths]
    policy = WidthPolicy(widths, sizes, PolicyConfig(target_fps=10.0), start_width=start_width)
    out = []
    for o in trace["observations"]:
        if o["delivered_fps"] > 0:  # as the link monitor tracks the real packet sizes from each report
            policy.observe_bytes(round(o["width"], 3), o["throughput_bps"] / 8.0 / o["delivered_fps"])
        obs = LinkObservation(loss_rate=o["loss_rate"], latency_ms=o["latency_ms"] or None,
                              delivered_fps=o["delivered_fps"], sent_fps=o["sent_fps"],
                              throughput_bps=o["throughput_bps"])
        d = policy.decide(o["t"], obs)
        out.append((o["t"], d.width, d.rate_hz))
    return trace["phases"], out


def phase(phases, mbps):
    return next(p for p in phases if abs(p["bps"] - mbps * 1e6) < 1)


def test_no_false_alarm_on_a_wide_link():
    phases, hist = replay("width1.0")
    fast = phase(phases, 20)
    window = [(w, r) for t, w, r in hist if fast["start"] + 2 <= t < fast["end"]]
    assert len(window) >= 5 and all(w == 1.0 and r == 10.0 for w, r in window)


def test_backs_off_on_growing_latency_before_frames_are_lost():
    """Width 1.0 at 10 fps needs ~0.5 Mbit/s: at 0.5 Mbit/s the fixed-width run slowly filled the
    link's queue (latency up first, frame loss ~7 s later). The policy must act on the queue."""
    trace = json.loads((TRACES / "width1.0.json").read_text())
    phases, hist = replay("width1.0")
    slow = phase(phases, 0.5)
    first_loss = next(o["t"] for o in trace["observations"] if o["t"] >= slow["start"] and o["loss_rate"] > 0)
    first_down = next(t for t, w, _ in hist if t >= slow["start"] and w < 1.0)
    assert first_down < first_loss - 3.0
    assert max(w for t, w, _ in hist if first_down <= t < slow["end"]) < 1.0  # stays down while congested


def test_no_false_alarm_when_the_stream_fits_every_phase():
    """Width 0.5 at 10 fps (~0.34 Mbit/s) fits even the 0.5 Mbit/s phase: rate changes of the link
    alone, with no queue and no loss, must never make the policy back off or throttle."""
    _, hist = replay("width0.5", start_width=0.5)
    assert min(w for _, w, _ in hist) >= 0.5 and min(r for _, _, r in hist) == 10.0


def test_backs_off_in_one_step_to_what_a_narrow_link_carries_then_probes_up_one_width_at_a_time():
    """The bundled model's width 1.0 (~174 kbit/s on the wire) into a 0.1 Mbit/s phase, as the fixed-width
    run saw it: the first step down goes straight to the width the measured throughput carries at the
    full frame rate (width 0.25, ~61 kbit/s), not one width per decision while the queue grows; once the
    link is wide again it probes up slowly: the frame rate first, then one width at a time, `up_dwell_s` apart."""
    phases, hist = replay("width1.0_to_0.1mbit")
    narrow, wide = phase(phases, 0.1), phase(phases, 5)
    downs = [(t, w, r) for (_, w0, r0), (t, w, r) in zip(hist, hist[1:]) if (w, r) != (w0, r0)
             and narrow["start"] <= t < narrow["end"]]
    assert downs and downs[0][1:] == (0.25, 10.0), downs
    assert downs[1][0] - downs[0][0] >= 3.0, downs  # no second step while the queue from before drains
    ups = [(t, (w0, r0), (w, r)) for (_, w0, r0), (t, w, r) in zip(hist, hist[1:])
           if (w, r) != (w0, r0) and t >= wide["start"]]
    widths = [0.25, 0.5, 0.75, 1.0]
    for _, (w0, r0), (w, r) in ups:  # the frame rate doubling back, or one width up at the full rate
        assert (w == w0 and r0 < r <= 2 * r0) or (widths.index(w) == widths.index(w0) + 1 and r == r0 == 10.0)
    assert ups and all(b[0] - a[0] >= 2.9 for a, b in zip(ups, ups[1:])), ups


def test_coming_down_to_the_narrowest_width_keeps_the_frame_rate_the_link_carries():
    """What the monitor saw in `bench link`'s 0.1 Mbit/s phase after a first step to width 0.5: the
    queue of width 1.0's frames still growing (latency 1.1 s), 71 kbit/s delivered. Width 0.25 at the
    full 10 fps fits the capacity; it must not also be throttled to drain that queue faster."""
    ckpt = read_checkpoint(BUNDLED_MODELS["synthetic"])
    widths = list(ckpt["model_config"].widths)
    sizes = [float(ckpt["extra"]["bytes_per_width"][str(w)]) for w in widths]
    policy = WidthPolicy(widths, sizes, PolicyConfig(target_fps=10.0), start_width=0.5)
    for t in range(5):  # the latency floor of a clean link
        policy.decide(float(t), LinkObservation(latency_ms=8.5, delivered_fps=10.0, sent_fps=10.0,
                                                throughput_bps=60_000.0))
    d = policy.decide(6.0, LinkObservation(latency_ms=1116.0, delivered_fps=5.5, sent_fps=10.0,
                                           throughput_bps=71_012.0))
    assert (d.width, d.rate_hz) == (0.25, 10.0), d
    # already at the narrowest width and still congested: now the rate is cut, to drain the queue too
    d = policy.decide(7.5, LinkObservation(latency_ms=1500.0, delivered_fps=4.0, sent_fps=10.0,
                                           throughput_bps=40_000.0))
    assert d.width == 0.25 and d.rate_hz <= 5.0, d


def test_a_backlog_that_arrives_faster_than_frames_are_sent_is_left_to_drain():
    """The next reports of that phase after the step to width 0.25 at 10 fps: latency still above a
    second but falling slowly, more frames delivered than sent (the queue of wide frames emptying),
    bytes per frame inflated by those queued frames. Not congestion: no throttling."""
    ckpt = read_checkpoint(BUNDLED_MODELS["synthetic"])
    widths = list(ckpt["model_config"].widths)
    sizes = [float(ckpt["extra"]["bytes_per_width"][str(w)]) for w in widths]
    policy = WidthPolicy(widths, sizes, PolicyConfig(target_fps=10.0), start_width=1.0)
    for t in range(5):
        policy.decide(float(t), LinkObservation(latency_ms=8.5, delivered_fps=10.0, sent_fps=10.0,
                                                throughput_bps=140_000.0))
    d = policy.decide(6.0, LinkObservation(latency_ms=1294.0, delivered_fps=6.0, sent_fps=10.0,
                                           throughput_bps=79_072.0))
    assert (d.width, d.rate_hz) == (0.25, 10.0), d
    for t, (lat, fps, bps) in enumerate([(1601, 9.5, 56_740), (1436, 12.5, 41_372), (1217, 11.5, 32_372),
                                         (1013, 12.5, 33_532), (706, 11.0, 29_048)], 7):
        policy.observe_bytes(0.25, bps / 8.0 / fps)  # as the monitor tracks the sizes from each report
        d = policy.decide(float(t), LinkObservation(latency_ms=lat, delivered_fps=fps, sent_fps=10.0,
                                                    throughput_bps=float(bps)))
        assert (d.width, d.rate_hz) == (0.25, 10.0), (t, d)
