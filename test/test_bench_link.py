"""`bench link`: argument parsing, the per-phase arithmetic, and a short run over a real link."""

from __future__ import annotations

import json

import pytest

from split_perception.bench.link_adaptation import parse_mode, parse_schedule, summarize
from split_perception.data.coco import load_coco
from split_perception.errors import ConfigError
from split_perception.harness.domains import pick_domain
from split_perception.harness.netns import available

WIDTHS = [0.25, 0.5, 0.75, 1.0]


def test_schedule_and_modes_are_validated():
    assert parse_schedule("20,2,0.5", 10) == [(20e6, 10), (2e6, 10), (0.5e6, 10)]
    for bad in ("", "2,-1", "fast"):
        with pytest.raises(ConfigError):
            parse_schedule(bad, 10)
    assert parse_mode("jpeg75", WIDTHS) == ("jpeg", 75) and parse_mode("width0.5", WIDTHS) == ("width", 0.5)
    for bad in ("jpeg0", "width0.3", "h264"):
        with pytest.raises(ConfigError, match="unknown mode"):
            parse_mode(bad, WIDTHS)


def test_summarize_counts_deliveries_by_send_time(tiny_data):
    coco = load_coco(tiny_data / "annotations.json")
    ids = sorted(coco.getImgIds())[:2]
    s = 1_000_000_000
    sent = [{"stamp": (10 + k) * s, "frame": k % 2} for k in range(4)]  # frames sent at 10, 11 s | 12, 13 s
    run = {"mode": "jpeg75", "transport": "dds", "kind": "jpeg", "phases": [{"bps": 1e6, "t0_ns": 10 * s, "t1_ns": 12 * s, "wire_bytes": 1000},
                                                          {"bps": 2e5, "t0_ns": 12 * s, "t1_ns": 14 * s, "wire_bytes": 500}],
           "sender": {"sent": sent, "features": []},
           "receiver": {"images": [{"stamp": 10 * s, "latency_ms": 5.0}, {"stamp": 11 * s, "latency_ms": 7.0},
                                   {"stamp": 13 * s, "latency_ms": 900.0}]}}
    truth = {i: [{"image_id": i, "category_id": a["category_id"], "score": 0.9,
                  "bbox": a["bbox"]} for a in coco.loadAnns(coco.getAnnIds(imgIds=i))] for i in ids}
    rows = summarize(run, coco, ids, truth, target_fps=1.0)
    assert [r["delivered_fps"] for r in rows] == [1.0, 0.5]
    assert rows[0]["delivered_ratio"] == 1.0 and rows[1]["delivered_ratio"] == 0.5
    assert rows[0]["latency_p50_ms"] == 6.0 and rows[1]["latency_p50_ms"] == 900.0
    assert rows[0]["wire_kbps"] == 4.0 and rows[0]["map"] > 0.99  # perfect boxes on the delivered frames
    assert rows[0]["meets_90pct"] and not rows[1]["meets_90pct"]


@pytest.mark.skipif(not available()[0], reason=f"no namespaces here: {available()[1]}")
def test_link_bench_short_run(tmp_path, tiny_model_path, tiny_data):
    from split_perception.cli import main

    out = tmp_path / "out"
    rc = main(["bench", "link", "--model", str(tiny_model_path), "--data", str(tiny_data), "--frames", "6",
               "--schedule", "5,0.1", "--phase-seconds", "5", "--fps", "5", "--modes", "jpeg95,width0.25",
               "--out", str(out), "--domain-id", str(pick_domain())])
    assert rc == 0
    rows = json.loads((out / "link.json").read_text())["rows"]
    assert [(r["mode"], r["phase"]) for r in rows] == [("jpeg95", 0), ("jpeg95", 1), ("width0.25", 0), ("width0.25", 1)]
    assert all(r["delivered_fps"] > 0 for r in rows if r["phase"] == 0)
    jpeg, ours = rows[1], rows[3]  # 0.1 Mbit/s: JPEG q95 does not fit at 5 fps, the narrowest width does
    assert ours["delivered_fps"] > jpeg["delivered_fps"] and ours["latency_p95_ms"] < jpeg["latency_p95_ms"]
    assert (out / "link.png").stat().st_size > 0


@pytest.mark.skipif(not available()[0], reason=f"no namespaces here: {available()[1]}")
def test_link_bench_over_zenoh_short_run(tmp_path, tiny_model_path, tiny_data):
    """DDS stays on each side (own domains, discovery limited to the host): only Zenoh crosses."""
    from split_perception.cli import main

    out = tmp_path / "out"
    rc = main(["bench", "link", "--model", str(tiny_model_path), "--data", str(tiny_data), "--frames", "6",
               "--schedule", "5,0.1", "--phase-seconds", "5", "--fps", "5", "--modes", "jpeg95,adaptive",
               "--transport", "zenoh", "--out", str(out), "--domain-id", str(pick_domain())])
    assert rc == 0
    rows = json.loads((out / "link.json").read_text())["rows"]
    assert [(r["transport"], r["mode"], r["phase"]) for r in rows] == [
        ("zenoh", "jpeg95", 0), ("zenoh", "jpeg95", 1), ("zenoh", "adaptive", 0), ("zenoh", "adaptive", 1)]
    assert all(r["delivered_fps"] > 0 for r in rows if r["phase"] == 0)
    trace = json.loads((out / "traces" / "zenoh_adaptive.json").read_text())
    assert trace["observations"], trace  # the decoder's link_status came back to the robot over Zenoh
