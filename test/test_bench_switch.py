"""`bench switch`: in-process switch vs reload on the tiny model, and one real run through ROS."""

from __future__ import annotations

import json

import numpy as np
import pytest

from split_perception.bench.switch import switch_delays, switch_schedule
from split_perception.cli import main


def test_schedule_changes_width_every_call():
    calls = switch_schedule([0.25, 0.5, 0.75, 1.0], 1.0, 6, warmup=10, every=5)
    widths = [1.0] + [c["width"] for c in calls]
    assert all(a != b for a, b in zip(widths, widths[1:]))
    assert [c["after_features"] for c in calls] == [10, 15, 20, 25, 30, 35]


def test_switch_delays_from_a_probe_record():
    f = lambda t, w, i, lat: {"t": t, "width": w, "frame_id": i, "encode_ms": 2.0, "latency_ms": lat}  # noqa: E731
    rec = {"features": [f(1.00, 1.0, 1, 10.0),
                        f(1.05, 1.0, 2, 40.0),  # captured at 1.01, before the call: old width is right
                        f(1.08, 1.0, 3, 20.0),  # captured at 1.06, after the call: a missed frame
                        f(1.12, 0.5, 4, 30.0),  # captured at 1.09: the first at the new width
                        f(2.00, 0.5, 5, 10.0)],
           "set_results": [{"t": 1.01, "t_call": 1.02, "width": 0.3, "ok": False, "reason": "no"},
                           {"t": 1.04, "t_call": 1.02, "width": 0.5, "ok": True, "reason": ""},
                           {"t": 2.5, "t_call": 2.4, "width": 0.25, "ok": True, "reason": ""}]}
    d = switch_delays(rec)
    assert len(d) == 2  # the refused call is not a switch
    assert d[0]["first_packet_ms"] == pytest.approx(100.0) and d[0]["reply_ms"] == pytest.approx(20.0)
    assert d[0]["wait_frame_ms"] == pytest.approx(70.0) and d[0]["first_latency_ms"] == 30.0
    assert d[0]["first_frame_id"] == 4 and d[0]["old_width_after_call"] == 1
    assert d[1]["first_packet_ms"] is None  # no packet at 0.25 ever came


@pytest.mark.parametrize("model", ["tiny", "default"])
def test_switch_in_process(tmp_path, tiny_model_path, model):
    out = tmp_path / "sw"
    chosen = ["--model", str(tiny_model_path), "--repeats", "2"] if model == "tiny" else ["--repeats", "1"]
    assert main(["bench", "switch", *chosen, "--no-ros", "--out", str(out)]) == 0
    for name in ("switch.json", "switch.csv", "switch.png", "table.md"):
        assert (out / name).is_file(), name
    res = json.loads((out / "switch.json").read_text())
    assert [r["width"] for r in res["rows"]] == [0.25, 0.5, 0.75, 1.0]
    for r in res["rows"]:
        assert r["new_width_in_packet"] == r["width"]  # the first packet after the switch is at the new width
        assert r["width"] not in r["from_widths"]  # ... and it really was a change
        assert r["switch_ms"] > 0 and r["reload_ms"] > 0 and r["minimal_reload_ms"] > 0
        assert r["minimal_same_bytes"]  # the reload lower bound codes the same bytes as the running encoder
    assert "--no-ros" in res["ros"]["skipped"] and "bench switch" in res["command"]


def test_switch_reports_missing_ros_install_and_keeps_in_process_results(tmp_path, tiny_model_path, monkeypatch):
    import split_perception.harness.processes as processes

    monkeypatch.setattr(processes, "INSTALL", tmp_path / "nowhere")
    out = tmp_path / "sw"
    assert main(["bench", "switch", "--model", str(tiny_model_path), "--repeats", "1", "--out", str(out)]) == 0
    res = json.loads((out / "switch.json").read_text())
    assert res["ros"]["skipped"].startswith("NOT MEASURED") and "build_ros.sh" in res["ros"]["skipped"]
    assert len(res["rows"]) == 4
    assert "NOT MEASURED" in (out / "table.md").read_text()


def test_switch_through_ros_node(tmp_path):
    """The default model named as the committed run names it: the node gets its checkpoint."""
    out = tmp_path / "sw"
    assert main(["bench", "switch", "--model", "nanodet_g", "--repeats", "1", "--fps", "10",
                 "--switches", "2", "--ros-seconds", "18", "--out", str(out)]) == 0
    ros = json.loads((out / "switch.json").read_text())["ros"]
    assert "skipped" not in ros, ros
    assert ros["set_results"] and all(s["ok"] for s in ros["set_results"]), ros
    measured = [s for s in ros["switches"] if s["first_packet_ms"] is not None]
    assert measured, ros
    assert all(s["first_packet_ms"] > 0 and s["first_latency_ms"] > 0 for s in measured)
    assert {s["width"] for s in measured} <= {0.25, 0.5}  # the schedule from 1.0: 0.25, then 0.5
    assert ros["frame_period_ms"] == 100.0


def test_minimal_reload_of_a_front_model_codes_the_same_bytes(tmp_path):
    from split_perception.bench.switch import minimal_reload_payload
    from split_perception.models.checkpoint import save_checkpoint
    from split_perception.models.split_model import SplitModel
    from split_perception.onboard.encoder import OnboardEncoder

    from .conftest import tiny_config

    path = tmp_path / "front.pt"
    save_checkpoint(SplitModel(tiny_config(split_index=5, encoder="front")), path)
    enc = OnboardEncoder(path, runtime="torch")
    frame = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    for w in enc.widths:
        enc.set_width(w)
        assert minimal_reload_payload(path, w, frame) == enc.model.compress(enc.preprocess(frame))["strings"][0][0]
