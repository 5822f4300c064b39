"""Link statistics, bandwidth traces, token bucket and the width policy (no ROS)."""

import pytest

from split_perception.errors import ConfigError
from split_perception.link.policy import PolicyConfig, WidthPolicy
from split_perception.link.stats import LinkStats
from split_perception.link.trace import BandwidthTrace, TokenBucket

WIDTHS = [0.25, 0.5, 0.75, 1.0]
BYTES = [1000, 2000, 3000, 4000]  # bits/frame at 10 fps: 80k, 160k, 240k, 320k


def run(policy, trace, seconds, dt=0.1, loss=0.0):
    out, t = [], 0.0
    while t < seconds:
        out.append((t, policy.decide(t, trace(t), loss)))
        t += dt
    return out


def test_policy_backs_off_fast_and_recovers_slowly_without_flapping():
    p = WidthPolicy(WIDTHS, BYTES, PolicyConfig(target_fps=10, headroom=1.0, up_margin=1.2, up_dwell_s=3))
    trace = lambda t: 1e6 if t < 10 else (0.17e6 if t < 20 else 1e6)  # noqa: E731
    hist = run(p, trace, 40)
    at = dict((round(t, 1), w) for t, w in hist)
    assert at[9.9] == 1.0
    assert at[11.2] == 0.5  # down within ~1 s of the drop, to the widest that fits (160k <= 170k)
    assert at[39.9] == 1.0  # back to the widest after recovery
    switches = sum(1 for a, b in zip(hist, hist[1:]) if a[1] != b[1])
    assert switches <= 1 + 2  # one down, then up one step at a time (0.5 -> 0.75 -> 1.0)
    ups = [b[0] for a, b in zip(hist, hist[1:]) if b[1] > a[1]]
    assert all(u >= 23 for u in ups) and ups[1] - ups[0] >= 3  # dwell before each step up


def test_policy_does_not_flap_around_a_threshold():
    p = WidthPolicy(WIDTHS, BYTES, PolicyConfig(target_fps=10, headroom=1.0, up_margin=1.25, up_dwell_s=2))
    # capacity oscillates just around the 0.75 threshold (240k)
    hist = run(p, lambda t: 0.235e6 if int(t * 2) % 2 else 0.245e6, 30)
    switches = sum(1 for a, b in zip(hist, hist[1:]) if a[1] != b[1])
    assert switches <= 2


def test_policy_steps_down_on_loss_without_capacity_and_probes_up():
    p = WidthPolicy(WIDTHS, BYTES, PolicyConfig(up_dwell_s=2, down_dwell_s=1))
    assert p.decide(0.0, None, loss_rate=0.5) == 0.75
    assert p.decide(0.5, None, loss_rate=0.5) == 0.75  # dwell
    assert p.decide(1.1, None, loss_rate=0.5) == 0.5
    assert p.decide(2.0, None) == 0.5
    assert p.decide(4.1, None) == 0.75  # clean for up_dwell_s -> one step up


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
