"""`bench onboard` measures both runtimes in fresh processes; the ONNX one never loads torch."""

from __future__ import annotations

import shutil
import sys

from split_perception.bench.onboard_cost import measure
from split_perception.onboard.export import export_onboard


def test_bench_onboard_rows_for_both_runtimes(tmp_path, tiny_model_path):
    model = tmp_path / "model.pt"
    shutil.copy(tiny_model_path, model)
    export_onboard(model)
    rows = measure(str(model), {"onnx": sys.executable, "torch": sys.executable}, threads=1, starts=1,
                   work=tmp_path / "work")
    by = {r["runtime"]: r for r in rows}
    assert set(by) == {"onnx", "torch", "onnx / torch"}
    assert "torch" not in by["onnx"]["loaded"].split() and "onnxruntime" in by["onnx"]["loaded"].split()
    assert "torch" in by["torch"]["loaded"].split()
    for r in (by["onnx"], by["torch"]):
        assert r["rss_peak_mib"] > 0 and r["cold_start_s"] > 0 and r["install_mb"] > 0
        assert 0 < r["ros_wheels_mb"] < r["install_mb"]  # this venv has the ROS 2 pip wheels
        assert not any(k.startswith("encode_ms") for k in r)  # encode time is bench latency's
    assert by["onnx / torch"]["rss_peak_mib"] == by["onnx"]["rss_peak_mib"] / by["torch"]["rss_peak_mib"]


def test_bench_onboard_on_the_default_model(tmp_path):
    """The default model (a COCO detector, with its bundled onboard export) on both runtimes."""
    rows = measure("", {"onnx": sys.executable, "torch": sys.executable}, threads=1, starts=1, work=tmp_path / "work")
    by = {r["runtime"]: r for r in rows}
    assert by["onnx"]["runtime"] == "onnx" and "torch" not in by["onnx"]["loaded"].split()
    assert 0 < by["onnx / torch"]["rss_peak_mib"] < 1 and by["onnx / torch"]["cold_start_s"] < 1
