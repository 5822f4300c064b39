"""A width set on the encoder by hand, with the link monitor running (real DDS, one process per node):
the monitor pauses for `manual_hold_s` instead of undoing it, then resumes; `auto:=false` only observes."""

from __future__ import annotations

from split_perception.harness.processes import (
    READY_TIMEOUT_S,
    run_probe,
    start_node,
    stop,
    wait_for_log,
    wait_ready,
)

FPS = 5
HIGH = 200e3  # bit/s: every width of the tiny model fits at FPS, with the policy's headroom and up margin
MID = 40e3  # 1.0 does not fit (its bytes/frame x 8 x FPS > headroom x MID), 0.5 does


def run(tmp_path, domain, model, trace: str, monitor: dict, seconds: float, set_at: float) -> tuple[list, str, dict]:
    """Encoder -> emulated link -> decoder, the monitor onboard; the probe sets width 0.25 at `set_at`.
    Returns ([(t, width)] of the frames after the link, the monitor's log, the probe's set result)."""
    m = {"model_path": str(model)}
    specs = [("encoder", m, {"features": "features_in"}),
             ("link_emulator", {"bandwidth": trace, "max_queue_s": 0.3}, None),
             ("decoder", {**m, "publish_mask": False}, {"features": "features_out"}),
             ("link_monitor", {**m, "target_fps": float(FPS), "up_dwell_s": 2.0, **monitor},
              {"features": "features_in"})]
    procs = [start_node(exe, domain, params=p, remap=r, log_path=tmp_path / f"{exe}.log") for exe, p, r in specs]
    try:  # the probe's clock starts once the monitor has read the encoder's width and the decoder is up
        wait_for_log(tmp_path / "link_monitor.log", "/encoder has width 1", READY_TIMEOUT_S)
        wait_ready(tmp_path, "encoder", "decoder")
        rec = run_probe({"seconds": seconds, "fps": FPS, "features_topic": "features_out",
                         "set_width": [{"at": set_at, "after_features": 10, "width": 0.25}]}, tmp_path, domain)
    finally:
        stop(procs)
    everything = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(tmp_path.glob("*.log")))
    assert rec["set_results"] and rec["set_results"][0]["ok"], everything
    assert all(p.returncode == 0 for p in procs), everything
    return [(f["t"], f["width"]) for f in rec["features"]], (tmp_path / "link_monitor.log").read_text(), \
        rec["set_results"][0]


def test_a_width_set_by_hand_is_kept_while_the_link_narrows(tmp_path, domain, tiny_model_path):
    """Width 1.0 on a wide link; 0.25 set by hand; then the link narrows to where the monitor alone
    would pick 0.5 or 0.75: within the hold it must not raise the encoder from 0.25."""
    widths, log, res = run(tmp_path, domain, tiny_model_path, f"steps:{HIGH:.0f}@0,{MID:.0f}@16", {},
                           seconds=32, set_at=8)
    t_set = res["t_call"]
    assert any(w == 1.0 for t, w in widths if t < t_set), (widths, log)
    after = [w for t, w in widths if t > res["t"] + 1.0]
    assert len(after) >= 0.5 * FPS * (32 - res["t"] - 1), (widths, log)  # frames kept flowing
    assert set(after) == {0.25}, (widths, log)
    assert log.count("manual width 0.25 on /encoder: automatic switching paused for 60 s") == 1, log
    assert "width -> " not in log, log  # the monitor set nothing


def test_after_the_hold_the_monitor_resumes_from_the_manual_width(tmp_path, domain, tiny_model_path):
    hold = 4.0
    widths, log, res = run(tmp_path, domain, tiny_model_path, f"steps:{HIGH:.0f}@0", {"manual_hold_s": hold},
                           seconds=32, set_at=8)
    held = [w for t, w in widths if res["t"] + 1.0 < t < res["t_call"] + hold]
    assert held and set(held) == {0.25}, (widths, log)
    later = [(t, w) for t, w in widths if t > res["t"] + 1.0]
    assert any(w == 1.0 for _, w in later), (widths, log)  # clean wide link: back up, step by step
    ups = [b for a, b in zip(later, later[1:]) if b[1] > a[1]]
    assert ups and ups[0][1] == 0.5 and ups[0][0] > res["t_call"] + hold, (widths, log)
    assert f"manual width 0.25 on /encoder: automatic switching paused for {hold:g} s" in log, log
    assert "automatic switching resumed from width 0.25" in log and "width -> 0.5" in log, log


def test_auto_off_only_observes(tmp_path, domain, tiny_model_path):
    """On a link too narrow for 1.0 the monitor would step down at once; with auto:=false the width
    stays 1.0 until set by hand, then stays at that."""
    widths, log, res = run(tmp_path, domain, tiny_model_path, f"steps:{MID:.0f}@0", {"auto": False}, seconds=24, set_at=10)
    before = [w for t, w in widths if t < res["t_call"]]
    after = [w for t, w in widths if t > res["t"] + 1.0]
    assert len(before) >= 10 and set(before) == {1.0}, (widths, log)
    assert len(after) >= 10 and set(after) == {0.25}, (widths, log)
    assert log.count("auto false: observing /encoder only, never setting it") == 1, log
    assert "manual width 0.25 on /encoder: observed (auto is off)" in log, log
    assert "width -> " not in log, log
