"""`/diagnostics` levels from counters (no ROS), the nodes' statuses over real DDS, and clean SIGINT shutdown."""

from __future__ import annotations

import os
import subprocess
import sys

from split_perception.codec.packet import Packet
from split_perception.harness.processes import (
    READY_TIMEOUT_S,
    run_probe,
    start_node,
    stop,
    wait_for_log,
    wait_ready,
)
from split_perception.health import ERROR, OK, WARN, Counters, HealthMonitor
from split_perception.models.checkpoint import read_checkpoint


def monitor(**kw) -> HealthMonitor:
    return HealthMonitor(0.0, input_name="packets", bad_name="bad packets", busy_key="decode_ms", **kw)


def test_frames_flowing_is_ok_with_rates_and_mean_time():
    h = monitor()
    r = h.update(1.0, Counters(received=10, done=10, busy_ms=50.0))
    assert r.level == OK and r.values["rate_in_fps"] == "10.00" and r.values["rate_out_fps"] == "10.00"
    assert r.values["decode_ms"] == "5.0" and r.message == "10.0 fps"
    r = h.update(3.0, Counters(received=20, done=20, busy_ms=150.0))  # a 2 s period: rates per second
    assert r.level == OK and r.values["rate_out_fps"] == "5.00" and r.values["decode_ms"] == "10.0"


def test_drops_and_bad_input_warn_for_their_period_only():
    h = monitor()
    r = h.update(1.0, Counters(received=10, done=7, dropped=2, bad=1))
    assert r.level == WARN and "dropped 2 frames" in r.message and "1 bad packets" in r.message
    r = h.update(2.0, Counters(received=20, done=17, dropped=2, bad=1))
    assert r.level == OK and r.values["dropped"] == "2"  # the totals stay, the warning goes


def test_every_packet_refused_is_an_error_naming_another_model():
    h = monitor()
    h.update(1.0, Counters(received=10, done=10))
    r = h.update(2.0, Counters(received=15, done=10, mismatched=5))
    assert r.level == ERROR and "all packets" in r.message and "5 from another model" in r.message
    r = h.update(3.0, Counters(received=20, done=12, mismatched=8))  # some decoded again: a warning
    assert r.level == WARN and "3 from another model" in r.message


def test_dead_worker_is_an_error():
    r = monitor().update(1.0, Counters(received=5, done=5, worker_alive=False))
    assert r.level == ERROR and "worker thread stopped" in r.message


def test_no_input_warns_after_a_while_from_start_and_after_the_last_message():
    h = monitor(no_input_warn_s=5.0)
    assert h.update(1.0, Counters()).level == OK
    r = h.update(6.0, Counters())
    assert r.level == WARN and "no packets for 6 s" in r.message
    assert h.update(7.0, Counters(received=1, done=1)).level == OK
    assert h.update(11.0, Counters(received=1, done=1)).level == OK
    assert "no packets for 5 s" in h.update(12.0, Counters(received=1, done=1)).message


def test_health_imports_without_rclpy():
    code = "import sys, split_perception.health; assert 'rclpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": os.getcwd()})


# ---- over DDS -------------------------------------------------------------------------

CLEAN_EXIT_FORBIDDEN = ("context is invalid", "Traceback", "Failed to publish")


def logs(tmp_path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(tmp_path.glob("*.log")))


def summary(statuses) -> str:
    return "\n".join(f"{s['t']:5.1f} {s['level']} {s['message']} {s['values']}" for s in statuses)


def start(tmp_path, domain, specs):
    return [start_node(exe, domain, params=params, remap=remap, log_path=tmp_path / f"{exe}.log")
            for exe, params, remap in specs]


def test_encoder_and_decoder_report_on_diagnostics(tmp_path, domain, tiny_model_path):
    fp = read_checkpoint(tiny_model_path)["fingerprint"]
    m = {"model_path": str(tiny_model_path)}
    corrupt = Packet(bytes(16), 0, 0.25, 1, 0, (10, 10), (2, 12, 16), b"abc").to_bytes()[:-1] + b"\x00"
    other_model = Packet(bytes(16), 0, 0.25, 1, 0, (10, 10), (2, 12, 16), b"abc").to_bytes()
    # after the images stop, so no image replaces a bad packet in the decoder's drop-oldest slot
    garbage = ([{"at": 13.0 + 0.3 * i, "hex": corrupt.hex()} for i in range(3)]
               + [{"at": 16.0 + 0.25 * i, "hex": other_model.hex()} for i in range(21)])
    procs = start(tmp_path, domain, [("encoder", {**m, "width": 0.5}, None), ("decoder", m, None)])
    try:
        wait_ready(tmp_path, "encoder", "decoder")
        rec = run_probe({"seconds": 26, "fps": 4, "pause": [[12, 26]], "garbage": garbage,
                         "record_diagnostics": True}, tmp_path, domain)
    finally:
        stop(procs)
    diag = rec["diagnostics"]
    enc = [s for s in diag if s["name"] == "split_perception: /encoder"]
    dec = [s for s in diag if s["name"] == "split_perception: /decoder"]
    assert enc and dec, (diag[:4], logs(tmp_path))
    for s in enc + dec:
        assert s["hardware_id"] == fp[:12] and s["values"]["model_fingerprint"] == fp

    def ok_while_streaming(statuses, frames_key):
        return [s for s in statuses if s["t"] < 12 and s["level"] == OK and int(s["values"][frames_key]) > 0
                and s["values"]["width"] == "0.5" and float(s["values"]["rate_out_fps"]) > 0]

    assert ok_while_streaming(enc, "frames_encoded"), summary(enc) + logs(tmp_path)
    ok_dec = ok_while_streaming(dec, "frames_decoded")
    assert ok_dec and all(float(s["values"]["throughput_bps"]) > 0 for s in ok_dec), summary(dec) + logs(tmp_path)
    bad = [s for s in dec if 12.5 < s["t"] < 16 and s["level"] >= WARN and "bad packets" in s["message"]]
    assert bad, summary(dec) + logs(tmp_path)
    refused = [s for s in dec if 16 < s["t"] < 23 and s["level"] == ERROR and "from another model" in s["message"]]
    assert refused, summary(dec) + logs(tmp_path)
    mismatches = int(dec[-1]["values"]["model_mismatches"])  # bad_packets counts every refusal, as LinkStatus
    assert 0 < mismatches <= 21 and int(dec[-1]["values"]["bad_packets"]) == 3 + mismatches, dec[-1]
    silent = [s for s in enc if s["t"] > 17 and s["level"] == WARN and "no images for" in s["message"]]
    assert silent, summary(enc) + logs(tmp_path)
    assert all(p.returncode == 0 for p in procs), logs(tmp_path)


def test_diagnostics_period_zero_publishes_nothing(tmp_path, domain, tiny_model_path):
    m = {"model_path": str(tiny_model_path), "diagnostics_period_s": 0.0}
    procs = start(tmp_path, domain, [("encoder", m, None), ("decoder", m, None)])
    try:
        wait_ready(tmp_path, "encoder", "decoder")
        rec = run_probe({"seconds": 6, "fps": 4, "record_diagnostics": True}, tmp_path, domain)
    finally:
        stop(procs)
    assert rec["detections"], logs(tmp_path)  # the nodes ran, they just stayed off /diagnostics
    assert rec["diagnostics"] == []


def test_sigint_logs_final_statistics_and_exits_cleanly(tmp_path, domain, tiny_model_path):
    from split_perception.data.bags import write_sample_bag

    bag = write_sample_bag(tmp_path / "bag", frames=6, fps=4, size=(96, 128), storage="sqlite3")
    m = {"model_path": str(tiny_model_path)}
    procs = start(tmp_path, domain, [
        ("bag_player", {"bag": str(bag), "loop": True, "wait_for_subscribers": 1}, None),
        ("encoder", m, {"features": "features_in"}),
        ("link_emulator", {}, None),
        ("decoder", m, {"features": "features_out"}),
        ("link_monitor", {"model_path": str(tiny_model_path)}, {"features": "features_in"}),
    ])
    try:
        wait_ready(tmp_path, "encoder", "decoder")
        wait_for_log(tmp_path / "link_emulator.log", "link emulator:", READY_TIMEOUT_S)
        wait_for_log(tmp_path / "link_monitor.log", "link monitor:", READY_TIMEOUT_S)
        rec = run_probe({"seconds": 8, "publish": "none", "features_topic": "features_out"}, tmp_path, domain)
    finally:
        stop(procs)
    assert rec["detections"], logs(tmp_path)  # frames went all the way before the signal
    assert [p.returncode for p in procs] == [0] * len(procs), logs(tmp_path)
    final = {"encoder": "encoded ", "link_emulator": "relayed ", "decoder": "decoded "}
    for exe in ("bag_player", "encoder", "link_emulator", "decoder", "link_monitor"):
        log = (tmp_path / f"{exe}.log").read_text()
        assert not any(bad in log for bad in CLEAN_EXIT_FORBIDDEN), f"{exe}:\n{log[-3000:]}"
        if exe in final:
            last = [line for line in log.splitlines() if f"]: {final[exe]}" in line]
            assert last and not last[-1].split(final[exe])[1].startswith("0 "), f"{exe}:\n{log[-3000:]}"


def test_negative_diagnostics_period_is_refused_with_a_clear_line(tmp_path, domain, tiny_model_path):
    proc = start_node("decoder", domain, params={"model_path": str(tiny_model_path), "diagnostics_period_s": -1.0},
                      log_path=tmp_path / "decoder.log")
    try:
        proc.wait(timeout=120)
    finally:
        stop([proc])
    log = (tmp_path / "decoder.log").read_text()
    assert proc.returncode == 2 and "[ERROR] diagnostics_period_s must be >= 0" in log, log[-2000:]
