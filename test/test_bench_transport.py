"""`bench transport`: the per-phase arithmetic on a made-up record, and a short real run over DDS."""

from __future__ import annotations

import json

from split_perception.bench.memory import slope_per_min
from split_perception.bench.transport import WARMUP_S, summarize
from split_perception.cli import main
from split_perception.harness.domains import pick_domain


def test_summarize_counts_drops_and_latency_per_phase():
    phase = 10.0
    sent = [{"t": WARMUP_S + 0.1 * i} for i in range(50)]  # 5 s of a 10 fps camera in phase 0
    feats = [{"t": WARMUP_S + 0.2 * i, "width": 0.5, "frame_id": 100 + i, "bytes": 1000, "stamp": i * 10**9,
              "encode_ms": 3.0} for i in range(25)]  # the encoder kept every second frame
    dets = [{"stamp": i * 10**9, "latency_ms": float(i)} for i in range(0, 25, 5)]  # decoder kept every fifth
    rec = {"sent": sent, "features": feats, "detections": dets}
    row = summarize(rec, [0.5], phase, frame_bytes=300)[0]
    span = phase - WARMUP_S
    assert row["encoder_drops"] == 25 and row["decoder_drops"] == 20
    assert abs(row["offered_fps"] - 50 / span) < 1e-9 and abs(row["delivered_fps"] - 5 / span) < 1e-9
    assert row["features_bytes_per_s"] == 25 * 1000 / span and row["raw_bytes_per_s"] == 50 * 300 / span
    assert row["latency_p50_ms"] == 10.0


def test_memory_slope_ignores_startup():
    samples = [{"t": t, "encoder": 100.0 + (500 if t < WARMUP_S else 0.5 * t)} for t in range(20)]
    assert abs(slope_per_min(samples, "encoder", WARMUP_S) - 30.0) < 1e-6


def test_transport_short_run_over_dds(tmp_path, tiny_model_path):
    out = tmp_path / "out"
    rc = main(["bench", "transport", "--model", str(tiny_model_path), "--seconds", "7", "--fps", "8",
               "--size", "160x120", "--out", str(out), "--domain-id", str(pick_domain())])
    res = json.loads((out / "transport.json").read_text())
    assert rc == 0, (out / "encoder.log").read_text()[-2000:]
    assert [r["width"] for r in res["rows"]] == [0.25, 0.5, 0.75, 1.0]
    for r in res["rows"]:
        assert r["delivered_fps"] > 0 and r["features_bytes_per_s"] < r["raw_bytes_per_s"]
        assert r["latency_p50_ms"] > 0
    assert (out / "transport.png").stat().st_size > 0 and (out / "transport.csv").is_file()


def test_transport_bad_size_is_a_clear_error(tmp_path, capsys):
    assert main(["bench", "transport", "--size", "640by480", "--out", str(tmp_path)]) == 2
    assert "--size must be WIDTHxHEIGHT" in capsys.readouterr().err
