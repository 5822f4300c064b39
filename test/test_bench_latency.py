"""`bench latency`: the end-to-end model's arithmetic by hand, and a small real run on the tiny model."""

from __future__ import annotations

import json
import shutil

import pytest

from split_perception.bench import e2e
from split_perception.bench.e2e import Option
from split_perception.cli import main
from split_perception.onboard.export import export_onboard

from .test_onnx_teacher import street_footage


def test_transfer_and_end_to_end_by_hand():
    assert e2e.transfer_ms(1000, 1.0) == pytest.approx(8.0)  # 8000 bit at 1e6 bit/s
    assert e2e.transfer_ms(40_000, 0.5) == pytest.approx(640.0)
    o = Option("a", onboard_ms=10.0, bytes=1000, offboard_ms=20.0)
    assert e2e.end_to_end_ms(o, 1.0) == pytest.approx(38.0)
    assert e2e.end_to_end_ms(o, 0.5) == pytest.approx(46.0)
    with pytest.raises(ValueError):
        e2e.transfer_ms(1, 0.0)


def test_win_ranges_are_the_exact_lower_envelope():
    a = Option("A", 0.0, 10_000, 10.0)  # cheap compute, many bytes
    b = Option("B", 20.0, 1_000, 30.0)  # fixed 50 ms, few bytes
    c = Option("C", 100.0, 0, 0.0)  # all onboard
    # A = B where 40 ms = 9000 B * 8 / bw  -> bw = 1.8 Mbit/s; B = C at 0.16 Mbit/s (outside)
    assert e2e.crossover_mbps(a, b) == pytest.approx(1.8)
    assert e2e.crossover_mbps(b, c) == pytest.approx(0.16)
    assert e2e.crossover_mbps(a, Option("D", 0.0, 20_000, 20.0)) is None  # D is worse everywhere
    ranges = e2e.win_ranges([a, b, c], 0.5, 50.0)
    assert [r["option"] for r in ranges] == ["B", "A"]
    assert ranges[0]["from_mbps"] == 0.5 and ranges[-1]["to_mbps"] == 50.0
    assert ranges[0]["to_mbps"] == pytest.approx(1.8) and ranges[1]["from_mbps"] == pytest.approx(1.8)
    assert e2e.winner([a, b, c], 1.0).name == "B" and e2e.winner([a, b, c], 10.0).name == "A"
    rows = e2e.curves([a, b, c], e2e.bandwidth_grid(0.5, 50.0, 9))
    assert len(rows) == 27 and sum(r["wins"] for r in rows) == 9  # one winner per bandwidth


def test_raw_jpeg_q95_does_not_win_on_a_slow_link():
    # a 320x240 frame: JPEG q95 ~40 KB, our narrowest width ~2 KB (sizes of the bundled model's
    # data); even with JPEG's compute at zero it loses at 0.5 Mbit/s: 640 ms of transfer alone
    jpeg95 = Option("JPEG q95 offload", 0.0, 40_000, 0.0)
    split = Option("split w=0.25", 5.0, 2_000, 40.0)  # 5 + 32 + 40 = 77 ms
    full = Option("full onboard", 300.0, 0, 0.0)
    assert e2e.winner([jpeg95, split, full], 0.5).name == "split w=0.25"
    assert e2e.winner([jpeg95, full], 0.5).name == "full onboard"
    assert e2e.win_ranges([jpeg95, split, full], 0.5, 50.0)[0]["option"] != "JPEG q95 offload"


def test_latency_command_small_run(tmp_path, tiny_model_path, tiny_data):
    out = tmp_path / "lat"
    rc = main(["bench", "latency", "--model", str(tiny_model_path), "--data", str(tiny_data), "--frames", "3",
               "--repeats", "2", "--threads", "2", "--out", str(out)])
    assert rc == 0
    for name in ("latency.json", "latency.csv", "end_to_end.json", "end_to_end.csv", "latency.png", "table.md"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    res = json.loads((out / "latency.json").read_text())
    assert res["machine"]["threads"] == 2 and "bench latency" in res["command"]
    rows = {r["option"]: r for r in res["rows"]}
    split = sorted((r for r in res["rows"] if r["kind"] == "split"), key=lambda r: r["width"])
    assert [r["width"] for r in split] == [0.25, 0.5, 0.75, 1.0]
    macs = [r["onboard_mmacs"] for r in split]
    assert all(a < b for a, b in zip(macs, macs[1:])), macs  # slimming cuts the real work
    params = [r["onboard_params"] for r in split]
    assert all(a < b for a, b in zip(params, params[1:])), params
    assert macs[-1] < rows["full onboard"]["onboard_mmacs"]
    assert all(r["bytes_mean"] > 0 and r["onboard_ms"] > 0 and r["offboard_ms"] > 0 for r in split)
    assert rows["JPEG q95 offload"]["bytes_mean"] > rows["JPEG q75 offload"]["bytes_mean"]
    assert res["win_ranges"][0]["from_mbps"] == 0.5 and res["win_ranges"][-1]["to_mbps"] == 50.0
    assert "| full onboard |" in (out / "table.md").read_text()
    assert all(r["runtime"] == "torch" and r["runtime_ratio"] == 1.0 for r in split)  # no export: torch only


def test_latency_times_the_onnx_runtime_beside_torch(tmp_path, tiny_model_path, tiny_data):
    model = tmp_path / "model.pt"
    shutil.copy(tiny_model_path, model)
    export_onboard(model)
    out = tmp_path / "lat"
    assert main(["bench", "latency", "--model", str(model), "--data", str(tiny_data), "--frames", "2",
                 "--repeats", "2", "--threads", "1", "--out", str(out)]) == 0
    split = [r for r in json.loads((out / "latency.json").read_text())["rows"] if r["kind"] == "split"]
    assert len(split) == 4
    for r in split:
        assert r["runtime"] == "onnx" and r["torch_onboard_ms"] > 0 and r["onboard_ms"] > 0
        assert r["runtime_ratio"] == pytest.approx(r["onboard_ms"] / r["torch_onboard_ms"])
    text = (out / "table.md").read_text()
    assert "x torch runtime" in text and "{load" not in text



def test_latency_of_the_default_model_on_a_folder_of_clips(tmp_path):
    """A model of an ONNX teacher is timed on camera frames: here a clip's 384x288 frames."""
    clips, _ = street_footage(tmp_path, 3)
    out = tmp_path / "lat"
    assert main(["bench", "latency", "--data", str(clips), "--frames", "2", "--repeats", "1", "--threads", "1",
                 "--out", str(out)]) == 0
    res = json.loads((out / "latency.json").read_text())
    assert res["frames"] == 2 and res["frame_size"] == [288, 384] and "--model nanodet_g" in res["command"]
    split = [r for r in res["rows"] if r["kind"] == "split"]
    assert len(split) == 4 and all(r["runtime"] == "onnx" and r["onboard_ms"] > 0 for r in split)
    # the teacher counted whole (its tail runs on ONNX Runtime, invisible to torch's counter): the
    # onboard front is a fraction of it, and the offboard side counts the tail
    assert all(r["macs_ratio"] < 0.5 and r["offboard_mmacs"] > r["onboard_mmacs"] for r in split)
