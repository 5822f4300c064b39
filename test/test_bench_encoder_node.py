"""`bench encoder-node`: the window arithmetic on a made-up record, and a short real run over DDS."""

from __future__ import annotations

import json

import pytest

from split_perception.bench.encoder_node_load import summarize
from split_perception.cli import main
from split_perception.harness.domains import pick_domain


def test_summarize_rates_in_the_window():
    sent = [{"t": 0.1 * i} for i in range(100)]  # 10 fps for 10 s
    feats = [{"t": 0.2 * i, "encode_ms": 2.0 + i % 3} for i in range(50)]  # every second frame encoded
    diag = [{"t": float(t), "name": "split_perception: /robot/encoder", "values": {"rate_in_fps": "6.0"}}
            for t in range(10)] + [{"t": 5.0, "name": "split_perception: /decoder", "values": {"rate_in_fps": "1"}}]
    row = summarize({"sent": sent, "features": feats, "diagnostics": diag}, 2.0, 8.0)
    assert abs(row["offered_fps"] - 10.0) < 1e-9 and abs(row["encoded_fps"] - 5.0) < 1e-9
    assert row["received_fps"] == 6.0 and row["encode_ms_p50"] == 3.0


@pytest.mark.parametrize("model", [[], ["--model", "nanodet_g"]], ids=["default", "by-name"])
def test_encoder_node_short_run_over_dds(tmp_path, model):
    """The default model, and the same named as the committed run names it (the node gets its checkpoint)."""
    out = tmp_path / "out"
    rc = main(["bench", "encoder-node", "--seconds", "9", "--fps", "10", "--size", "320x240", "--runtimes", "onnx",
               "--out", str(out), "--domain-id", str(pick_domain()), *model])
    res = json.loads((out / "encoder_node.json").read_text())
    assert rc == 0, res
    assert [(r["runtime"], r["camera_dds"]) for r in res["rows"]] == [
        ("onnx", "Fast DDS defaults"), ("onnx", "large-frames profile")]
    for r in res["rows"]:
        assert r["encoded_fps"] > 0 and r["received_fps"] and r["encoder_cores"] > 0
        assert r["rss_max_mib"] < 600  # no torch in the ONNX encoder node
    assert (out / "encoder_node.csv").is_file() and (out / "table.md").is_file()


def test_encoder_node_bad_runtime_is_a_clear_error(tmp_path, capsys):
    assert main(["bench", "encoder-node", "--runtimes", "tensorrt", "--out", str(tmp_path)]) == 2
    assert "--runtimes" in capsys.readouterr().err
