"""Link statistics, bandwidth traces, token bucket and the width policy (no ROS)."""

import pytest

from split_perception.errors import ConfigError
from split_perception.link.policy import LinkObservation, PolicyConfig, WidthPolicy
from split_perception.link.stats import LinkStats
from split_perception.link.trace import BandwidthTrace, TokenBucket

WIDTHS = [0.25, 0.5, 0.75, 1.0]
BYTES = [1000, 2000, 3000, 4000]  # bits/frame at 10 fps: 80k, 160k, 240k, 320k


def run(policy, obs_at, seconds, dt=0.1):
    """Decide every `dt` on `obs_at(t)`; returns [(t, width, rate)]."""
    out, t = [], 0.0
    while t < seconds:
        d = policy.decide(t, obs_at(t))
        out.append((round(t, 1), d.width, d.rate_hz))
        t += dt
    return out


def switches(hist) -> int:
    return sum(1 for a, b in zip(hist, hist[1:]) if a[1:] != b[1:])


def test_policy_follows_a_reported_capacity_down_fast_and_up_slowly():
    p = WidthPolicy(WIDTHS, BYTES, PolicyConfig(target_fps=10, headroom=1.0, up_margin=1.2, up_dwell_s=3))
    cap = lambda t: 1e6 if t < 10 else (0.17e6 if t < 20 else 1e6)  # noqa: E731
    hist = run(p, lambda t: LinkObservation(capacity_bps=cap(t)), 40)
    at = {t: w for t, w, _ in hist}
    assert at[9.9] == 1.0
    assert at[10.1] == 0.5  # down at once, straight to the widest that fits (160k <= 170k)
    assert at[39.9] == 1.0  # back to the widest after recovery
    assert switches(hist) <= 1 + 2  # one down, then up one step at a time (0.5 -> 0.75 -> 1.0)
    ups = [b[0] for a, b in zip(hist, hist[1:]) if b[1] > a[1]]
    assert all(u >= 22.9 for u in ups) and ups[1] - ups[0] >= 2.9  # dwell before each step up


def test_policy_does_not_flap_around_a_threshold():
    p = WidthPolicy(WIDTHS, BYTES, PolicyConfig(target_fps=10, headroom=1.0, up_margin=1.25, up_dwell_s=2))
    # capacity oscillates just around the 0.75 threshold (240k)
    hist = run(p, lambda t: LinkObservation(capacity_bps=0.235e6 if int(t * 2) % 2 else 0.245e6), 30)
    assert switches(hist) <= 2


def test_each_congestion_signal_backs_off_one_width_without_a_capacity():
    signals = [LinkObservation(loss_rate=0.5), LinkObservation(sent_fps=10, delivered_fps=5),
               LinkObservation(stale=True), LinkObservation(latency_ms=1500)]
    for obs in signals:
        p = WidthPolicy(WIDTHS, BYTES, PolicyConfig(up_dwell_s=2, down_dwell_s=1))
        assert p.decide(0.0, obs).width == 0.75, obs
        assert p.decide(0.5, obs).width == 0.75  # down_dwell_s between steps
        assert p.decide(1.1, obs).width == 0.5 and p.last_reason


def test_delivered_ratio_ignores_counting_skew_at_low_frame_rates():
    p = WidthPolicy(WIDTHS, BYTES, PolicyConfig(delivered_down=0.7))
    assert p.decide(0.0, LinkObservation(sent_fps=1.5, delivered_fps=1.0)).width == 1.0  # 3 vs 2 frames in 2 s
    assert p.decide(1.0, LinkObservation(sent_fps=10, delivered_fps=6)).width == 0.75


def test_delivered_ratio_waits_for_the_windows_to_agree_after_a_rate_change():
    """Seen over DDS: right after the rate went back up, the onboard sent count already shows the new
    rate while the offboard report still averages the old one, which looked like 1/3 of frames lost."""
    p = WidthPolicy(WIDTHS, BYTES, PolicyConfig(target_fps=8, up_dwell_s=3, ratio_settle_s=3), start_width=0.25)
    p.decide(0.0, LinkObservation(loss_rate=0.5))
    assert p.rate_hz == 4
    for t in (1, 2, 3, 4):
        p.decide(t, LinkObservation(sent_fps=4, delivered_fps=4))
    assert p.rate_hz == 8  # clean for 3 s: rate restored at t=4
    skew = LinkObservation(sent_fps=8, delivered_fps=5.4)  # 0.67: the old rate still in the offboard window
    assert p.decide(5, skew).rate_hz == 8 and p.decide(6, skew).rate_hz == 8
    assert p.decide(7.5, skew).rate_hz == 4  # windows agree by now: a real shortfall throttles again


def test_latency_counts_only_above_its_floor():
    p = WidthPolicy(WIDTHS, BYTES, PolicyConfig(latency_rise_ms=150))
    for t in range(20):  # a steady 300 ms link (e.g. satellite) is not congestion
        assert p.decide(t, LinkObservation(latency_ms=300 + (t % 3) * 20)).width == 1.0
    assert p.decide(21, LinkObservation(latency_ms=500)).width == 0.75  # queues building: 200 ms above
    assert p.decide(23, LinkObservation(latency_ms=380)).width == 0.75  # still high but draining: no second step
    assert p.decide(25, LinkObservation(latency_ms=480)).width == 0.5  # rising again: congested


def test_backs_off_to_the_measured_throughput_then_throttles_the_rate():
    p = WidthPolicy(WIDTHS, BYTES, PolicyConfig(target_fps=10, headroom=1.0, min_rate_hz=1, down_dwell_s=1,
                                                frame_overhead_bytes=0))
    d = p.decide(0.0, LinkObservation(loss_rate=0.6, throughput_bps=170e3))
    assert (d.width, d.rate_hz) == (0.5, 10)  # straight to the widest width the delivered rate carries
    d = p.decide(1.0, LinkObservation(loss_rate=0.6, throughput_bps=50e3))
    assert (d.width, d.rate_hz) == (0.25, 6.25)  # nothing narrower fits 10 fps: the narrowest at what 50k carries
    d = p.decide(2.0, LinkObservation(loss_rate=0.6, throughput_bps=50e3))
    assert d.width == 0.25 and d.rate_hz == 6.25 / 2  # still congested: at least one step (half the rate)
    for t in (3, 4, 5, 6, 7):
        d = p.decide(t, LinkObservation(loss_rate=0.6, throughput_bps=8e3))
    assert d.rate_hz == 1  # never below min_rate_hz


def test_back_off_counts_the_headers_on_the_wire_and_leaves_room_to_drain_the_queue():
    """170 kbit/s delivered by 5 frames/s of width 1.0 is 170k + 5 x 400 B of headers = 186 kbit/s on the
    wire; width 0.5 needs (2000 + 400) B x 10 fps = 192k: too much."""
    p = WidthPolicy(WIDTHS, BYTES, PolicyConfig(target_fps=10, headroom=1.0, frame_overhead_bytes=400))
    d = p.decide(0.0, LinkObservation(loss_rate=0.6, throughput_bps=170e3, delivered_fps=5))
    assert (d.width, d.rate_hz) == (0.25, 10)
    q = WidthPolicy(WIDTHS, BYTES, PolicyConfig(target_fps=10, headroom=1.0, frame_overhead_bytes=0, drain_s=2))
    q.decide(0.0, LinkObservation(latency_ms=20))  # the latency floor
    d = q.decide(1.0, LinkObservation(latency_ms=620, throughput_bps=170e3, delivered_fps=5))
    assert (d.width, d.rate_hz) == (0.25, 10)  # 0.6 s of queue drained in 2 s: 170k - 51k leaves 119k < 160k


def test_a_queue_draining_after_a_back_off_is_not_congestion():
    """After the step down the reports still show the queue of the wider frames sent before it (latency
    rising, fewer frames delivered than sent): while the link carries more than the new setting sends,
    that is the queue draining, not a reason for another step; lost frames still are."""
    p = WidthPolicy(WIDTHS, BYTES, PolicyConfig(target_fps=10, frame_overhead_bytes=0, down_dwell_s=1))
    p.decide(0.0, LinkObservation(latency_ms=20))
    assert p.decide(1.0, LinkObservation(latency_ms=400, throughput_bps=150e3, delivered_fps=5)).width == 0.25
    for t in (2.0, 3.0, 4.0):  # 150k carried, 0.25 at 10 fps sends 80k
        d = p.decide(t, LinkObservation(latency_ms=400 + 300 * t, throughput_bps=150e3, delivered_fps=5,
                                        sent_fps=10))
        assert (d.width, d.rate_hz) == (0.25, 10)
    d = p.decide(5.0, LinkObservation(latency_ms=1900, throughput_bps=80e3, delivered_fps=10, sent_fps=10))
    assert d.rate_hz < 10  # the link carries no more than the stream: the queue is not draining
    assert p.decide(7.0, LinkObservation(loss_rate=0.5, throughput_bps=150e3)).rate_hz < d.rate_hz


def test_recovery_restores_the_rate_before_the_width():
    p = WidthPolicy(WIDTHS, BYTES, PolicyConfig(target_fps=10, up_dwell_s=2, down_dwell_s=0), start_width=0.25)
    p.decide(0.0, LinkObservation(loss_rate=0.9))
    assert p.rate_hz == 5
    hist = run(p, lambda t: LinkObservation(), 20)
    first_width_up = next(t for t, w, _ in hist if w > 0.25)
    full_rate = next(t for t, _, r in hist if r == 10)
    assert full_rate < first_width_up


def test_a_width_that_keeps_congesting_is_retried_ever_more_rarely():
    """No capacity known; width 1.0 congests the link whenever used, 0.75 fits: no flapping."""
    cfg = PolicyConfig(up_dwell_s=2, down_dwell_s=1, max_backoff_s=60)
    p = WidthPolicy(WIDTHS, BYTES, cfg, start_width=0.75)
    hist = run(p, lambda t: LinkObservation(loss_rate=0.5 if p.width == 1.0 else 0.0), 120, dt=0.5)
    ups = [b[0] for a, b in zip(hist, hist[1:]) if b[1] == 1.0 and a[1] == 0.75]
    gaps = [b - a for a, b in zip(ups, ups[1:])]
    assert len(ups) <= 6 and all(g2 > g1 for g1, g2 in zip(gaps, gaps[1:]))  # waits grow
    assert sum(w == 0.75 for _, w, _ in hist) > 0.8 * len(hist)



def test_a_step_down_starts_from_the_encoders_actual_width_never_raising_it():
    """The policy thinks 1.0; the encoder was set to 0.25 (or 0.5) elsewhere: congestion must not raise it."""
    for actual, expected in ((0.25, (0.25, 5.0)), (0.5, (0.25, 10.0))):
        p = WidthPolicy(WIDTHS, BYTES, PolicyConfig(target_fps=10, manual_hold_s=0))
        p.observe_encoder(0.0, width=actual)
        hist = [p.decide(t, LinkObservation(loss_rate=0.5)) for t in (1.0, 2.5, 4.0)]
        assert (hist[0].width, hist[0].rate_hz) == expected
        assert max(d.width for d in hist) <= actual and max(d.rate_hz for d in hist) <= 10.0


def test_a_step_up_starts_from_the_encoders_actual_width_never_lowering_it():
    p = WidthPolicy(WIDTHS, BYTES, PolicyConfig(up_dwell_s=2, manual_hold_s=0), start_width=0.25)
    p.observe_encoder(0.0, width=0.75)
    hist = run(p, lambda t: LinkObservation(capacity_bps=1e6), 10)
    assert min(w for _, w, _ in hist) == 0.75 and hist[-1][1] == 1.0


def test_own_requests_are_not_manual_even_when_their_events_come_late():
    p = WidthPolicy(WIDTHS, BYTES, PolicyConfig(down_dwell_s=1))
    assert p.observe_encoder(0.0, width=1.0, max_rate_hz=0.0, initial=True) == ""
    a = p.decide(1.0, LinkObservation(loss_rate=0.5))
    p.requested(a)
    p.request_done(1.1, a, True, True)  # the reply came before the parameter events
    b = p.decide(2.5, LinkObservation(loss_rate=0.5))
    p.requested(b)
    assert (a.width, b.width) == (0.75, 0.5)
    assert p.observe_encoder(2.6, width=0.75) == "" and p.width == 0.5  # a's event, late: b still stands
    assert p.observe_encoder(2.6, max_rate_hz=0.0) == "" and p.observe_encoder(2.7, width=0.5) == ""
    assert not p.held(3.0) and p.actual.width == 0.5


def test_a_refused_or_unanswered_request_leaves_the_policy_at_the_encoders_width():
    p = WidthPolicy(WIDTHS, BYTES, PolicyConfig(down_dwell_s=1))
    p.observe_encoder(0.0, width=1.0, max_rate_hz=0.0, initial=True)
    d = p.decide(1.0, LinkObservation(loss_rate=0.5))
    p.requested(d)
    p.request_done(1.1, d, False, True)
    assert (d.width, p.width) == (0.75, 1.0)
    assert p.decide(2.5, LinkObservation(loss_rate=0.5)).width == 0.75  # tried again from 1.0, not from 0.75
    assert p.observe_encoder(2.6, width=1.0) == ""  # what the encoder still has is not someone else's change


def test_a_manual_setting_pauses_the_policy_then_it_resumes_from_there():
    p = WidthPolicy(WIDTHS, BYTES, PolicyConfig(up_dwell_s=2, manual_hold_s=60))
    p.observe_encoder(0.0, width=1.0, max_rate_hz=0.0, initial=True)
    assert p.observe_encoder(5.0, width=0.25) == "width 0.25" and p.held(5.0)
    assert p.observe_encoder(6.0, max_rate_hz=4.0) == "max_rate_hz 4" and p.rate_hz == 4.0
    clean = run(p, lambda t: LinkObservation(loss_rate=0.5 if t < 30 else 0.0), 66)
    assert {(w, r) for t, w, r in clean if t > 6} == {(0.25, 4.0)}  # neither congestion nor a clean link moves it
    later = [p.decide(t, LinkObservation()) for t in (66.0, 67.0, 68.5)]
    assert later[0].rate_hz == 4.0 and later[-1].rate_hz == 8.0  # resumed: the up dwell counts from the hold's end
    assert all(d.width == 0.25 for d in later)


def test_manual_hold_zero_never_pauses_and_auto_off_never_changes_anything():
    p = WidthPolicy(WIDTHS, BYTES, PolicyConfig(manual_hold_s=0, down_dwell_s=1))
    assert p.observe_encoder(0.0, width=0.5) == "width 0.5" and not p.held(0.0)
    assert p.decide(1.0, LinkObservation(loss_rate=0.5)).width == 0.25
    q = WidthPolicy(WIDTHS, BYTES, PolicyConfig(up_dwell_s=2))
    q.auto = False
    assert {(q.decide(t, LinkObservation(loss_rate=0.9 if t < 5 else 0.0)).width) for t in range(20)} == {1.0}
    q.observe_encoder(20.0, width=0.5, initial=True)
    q.auto = True
    assert q.decide(21.0, LinkObservation()).width == 0.5  # clean for long while off: the dwell starts now
    assert q.decide(23.5, LinkObservation()).width == 0.75


def test_an_encoder_width_the_policy_does_not_know_is_a_config_error():
    p = WidthPolicy(WIDTHS, BYTES)
    with pytest.raises(ConfigError, match="model_path"):
        p.observe_encoder(0.0, width=0.6)


def test_link_stats_counts_gaps_and_restarts():
    s = LinkStats(window_s=1.0)
    for i, fid in enumerate([1, 2, 3, 6, 7, 1, 2]):  # 4,5 lost; then an encoder restart
        s.add(0.1 * i, fid, 1000, 20.0, 0.5)
    snap = s.snapshot(0.65)
    assert snap.frames_lost == 2 and snap.frames_received == 7
    assert snap.loss_rate == pytest.approx(2 / 9)
    assert snap.throughput_bps == pytest.approx(8 * 7000 / 1.0)
    assert s.snapshot(5.0).fps == 0.0
    s.add(6.0, 3, 100, None, 0.5)  # unmeasurable latency is left out of the mean
    s.add(6.1, 4, 100, 30.0, 0.5)
    assert s.snapshot(6.2).latency_ms == 30.0
    s.add(6.3, 2**64 - 1, 100, 30.0, 0.5)  # a forged id far ahead: a new stream, not 2**64 lost frames
    s.add(6.4, 2**64 - 1 - LinkStats.MAX_GAP, 100, 30.0, 0.5)
    assert s.frames_lost == 2


def test_traces_and_errors(tmp_path):
    t = BandwidthTrace.parse("steps:20e6@0,2e6@10,0.5e6@20")
    assert (t.at(0), t.at(10.5), t.at(99)) == (20e6, 2e6, 0.5e6)
    assert BandwidthTrace.parse("5e6").at(3) == 5e6
    (tmp_path / "t.csv").write_text("seconds,bps\n0,1e6\n5,2e6\n")
    assert BandwidthTrace.parse(str(tmp_path / "t.csv")).at(6) == 2e6
    for bad in ("fast", "steps:1e6@x", str(tmp_path / "missing.csv"), "-5"):
        with pytest.raises(ConfigError):
            BandwidthTrace.parse(bad)


def test_token_bucket_paces_bytes():
    b = TokenBucket(burst_bytes=1000)
    b.refill(0.0, 8000)  # 1000 bytes/s
    assert b.take(1000) and not b.take(500)
    b.refill(0.5, 8000)
    assert b.take(500) and not b.take(100)
