"""Faults over real DDS, each node in its own process: restarts, a dead monitor, another model."""

from __future__ import annotations

import re
import time

import pytest

from split_perception.harness.domains import pick_domain
from split_perception.harness.processes import (
    finish_probe,
    start_node,
    start_probe,
    stop,
    wait_for_log,
    wait_ready,
)
from split_perception.harness.restarts import kill, kill_and_restart, sent_wall


@pytest.mark.parametrize("runs", [1, pytest.param(5, marks=pytest.mark.slow)])
def test_decoder_killed_and_restarted_resumes_and_encoder_keeps_going(tmp_path, tiny_model_path, runs):
    for i in range(runs):  # each run its own processes, domain and logs
        run_dir = tmp_path / f"run{i}"
        run_dir.mkdir()
        r = kill_and_restart(run_dir, pick_domain(), tiny_model_path, "decoder", down_s=4, seconds=24)
        # 0.1-2.5 s with Fast DDS defaults: the relaunched node learns of the others from their next announcement,
        # every 3 s (`bench restart`; config/fastdds_rediscovery.xml makes it 0.5 s)
        assert r.resume_s() is not None and r.resume_s() < 3.5, f"run {i}: resumed {r.resume_s()} s after restart"
        during = r.outage_features()
        assert len(during) >= 0.8 * 5 * (r.t_ready - r.t_kill), i  # the encoder kept publishing at the camera rate ...
        assert max(f["latency_ms"] for f in during) < 500, i  # ... without queueing frames up
        assert r.other_alive, i


def test_encoder_restart_is_a_new_stream_for_the_decoder(tmp_path, tiny_model_path):
    r = kill_and_restart(tmp_path, pick_domain(), tiny_model_path, "encoder", down_s=2, seconds=22)
    after = [a for a in r.arrivals_after_ready() if a > r.t_ready + 1.0]
    assert after and len(after) >= 0.6 * 5 * (max(after) - r.t_ready - 1.0), "decoder did not carry on"
    restart_ids = [f["frame_id"] for f in r.rec["features"] if sent_wall(f) > r.t_ready]
    assert restart_ids and min(restart_ids) <= 3  # frame ids started over: a new stream
    assert r.rec["link_status"][-1]["loss"] < 0.5  # the id reset is not counted as lost frames
    assert r.other_alive, (tmp_path / "decoder.log").read_text()[-2000:]


def test_encoder_keeps_its_width_when_the_link_monitor_dies(tmp_path, synthetic_model_path):
    d = pick_domain()
    m = {"model_path": str(synthetic_model_path)}
    narrow = 1.2 * 2500 * 8 * 8 / 0.8  # only width 0.25 fits at 8 fps
    procs = [start_node("encoder", d, params=m, remap={"features": "features_in"}, log_path=tmp_path / "encoder.log"),
             start_node("link_emulator", d, params={"bandwidth": f"{narrow:.0f}"}, log_path=tmp_path / "emu.log"),
             start_node("decoder", d, params=m, remap={"features": "features_out"}, log_path=tmp_path / "decoder.log")]
    monitor = start_node("link_monitor", d, params={**m, "target_fps": 8.0}, remap={"features": "features_in"},
                         log_path=tmp_path / "link_monitor.log")
    cfg = {"seconds": 26, "fps": 8, "features_topic": "features_in"}
    probe = None
    try:
        wait_ready(tmp_path, "encoder", "decoder")
        probe = start_probe(cfg, tmp_path, d)
        wait_for_log(tmp_path / "link_monitor.log", "width -> 0.25", 40)
        time.sleep(2)
        kill(monitor)
        t_dead = time.time()
        rec = finish_probe(probe, cfg, tmp_path)
        encoder_alive = procs[0].poll() is None
    finally:
        stop([p for p in (*procs, monitor, probe) if p is not None])
    after = [f for f in rec["features"] if sent_wall(f) > t_dead + 0.5]
    assert len(after) >= 10 and {f["width"] for f in after} == {0.25}  # (its frame rate may be throttled too)
    assert encoder_alive


def test_decoder_with_another_model_refuses_every_frame_with_one_clear_error(tmp_path, tiny_model_path):
    d = pick_domain()
    enc = start_node("encoder", d, log_path=tmp_path / "encoder.log")  # the default model
    dec = start_node("decoder", d, params={"model_path": str(tiny_model_path)}, log_path=tmp_path / "decoder.log")
    cfg = {"seconds": 16, "fps": 5}
    try:
        wait_ready(tmp_path, "encoder", "decoder")
        rec = finish_probe(start_probe(cfg, tmp_path, d), cfg, tmp_path)
        decoder_alive = dec.poll() is None
    finally:
        stop([enc, dec])
    log = (tmp_path / "decoder.log").read_text()
    status = rec["link_status"][-1]
    assert not rec["detections"] and status["received"] >= 20
    assert status["bad"] >= status["received"] - 2  # every frame refused and counted (the last may be in flight)
    refusals = [l for l in log.splitlines() if "packet refused" in l]
    assert refusals and "model" in refusals[0] and len(refusals) <= 5  # throttled: one line per 5 s
    assert decoder_alive


def test_truncated_bag_replays_the_frames_before_the_damage_then_exits_with_a_clear_error(tmp_path, tiny_model_path):
    from split_perception.data.bags import write_sample_bag

    bag = write_sample_bag(tmp_path / "bag", frames=12, fps=3, size=(120, 160), storage="mcap")
    mcap = next(bag.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: int(mcap.stat().st_size * 0.6)])  # cut mid-file, e.g. a full disk
    d, m = pick_domain(), {"model_path": str(tiny_model_path)}
    procs = [start_node(exe, d, params=p, log_path=tmp_path / f"{exe}.log") for exe, p in
             (("encoder", m), ("decoder", m), ("bag_player", {"bag": str(bag), "wait_for_subscribers": 2,
                                                              "start_delay_s": 2.0}))]
    cfg = {"seconds": 16, "publish": "none", "listen_images": True, "await_publishers": ["detections"]}
    try:
        wait_ready(tmp_path, "encoder", "decoder")
        rec = finish_probe(start_probe(cfg, tmp_path, d), cfg, tmp_path)
        procs[2].wait(timeout=30)
        decoder_alive = procs[1].poll() is None
    finally:
        stop(procs)
    log = (tmp_path / "bag_player.log").read_text()
    error = next((l for l in log.splitlines() if "[ERROR]" in l), "")
    assert procs[2].returncode == 2, log  # a damaged bag is an error exit, not a clean end
    assert str(mcap) in error and re.search(r"damaged at byte \d+", error) and "7 camera messages" in error, log
    assert "published 7 frames" in log and len(rec["images"]) == 7  # every frame before the cut went out
    assert len(rec["detections"]) >= 5 and decoder_alive  # ... and was processed downstream
