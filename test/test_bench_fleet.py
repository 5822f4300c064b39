"""`bench fleet`: the window arithmetic on a made-up record, and a short real run of both modes over DDS."""

from __future__ import annotations

import json

from split_perception.bench.fleet import compare, summarize
from split_perception.cli import main
from split_perception.harness.domains import pick_domain


def test_summarize_and_compare():
    rec = {"r1": {"sent": [{"t": 0.25 * i} for i in range(40)],  # 4 fps for 10 s
                  "detections": [{"t": 0.25 * i + 0.1, "latency_ms": 100.0} for i in range(40)]},
           "r2": {"sent": [{"t": 0.25 * i} for i in range(40)],
                  "detections": [{"t": 0.5 * i + 0.1, "latency_ms": 300.0} for i in range(20)]}}  # every second one
    row = summarize(rec, 2.0, 8.0)
    assert abs(row["offered_fps"] - 8.0) < 1e-9 and abs(row["delivered_fps"] - 6.0) < 1e-9
    assert (row["robot_fps_min"], row["robot_fps_max"]) == (2.0, 4.0)
    assert row["latency_p50_ms"] == 100.0 and row["latency_p95_ms"] == 300.0
    rows = [{"robots": 2, "mode": "one-server", "delivered_fps": 6.0, "rss_mib": 900.0},
            {"robots": 2, "mode": "per-robot", "delivered_fps": 5.0, "rss_mib": 1800.0}]
    compare(rows)
    assert rows[0]["fps_vs_per_robot"] == 1.2 and rows[0]["rss_vs_per_robot"] == 0.5
    assert rows[1]["fps_vs_per_robot"] == 1.0


def test_fleet_short_run_over_dds(tmp_path):
    """The default model, its cameras on frames of the held-out clips."""
    out = tmp_path / "out"
    rc = main(["bench", "fleet", "--robots", "2", "--seconds", "14", "--fps", "2", "--out", str(out),
               "--domain-id", str(pick_domain())])
    res = json.loads((out / "fleet.json").read_text())
    assert rc == 0, res
    rows = {r["mode"]: r for r in res["rows"]}
    assert set(rows) == {"one-server", "per-robot"}
    for r in rows.values():
        assert r["robots"] == 2 and r["delivered_fps"] > 0 and r["robot_fps_min"] > 0, r  # both robots served
    assert rows["one-server"]["offboard_processes"] == 1 and rows["per-robot"]["offboard_processes"] == 2
    assert rows["one-server"]["rss_vs_per_robot"] < 0.75, rows  # one model in memory instead of two
    assert (out / "fleet.csv").is_file() and (out / "table.md").is_file() and (out / "fleet.png").is_file()


def test_fleet_bad_robot_counts_are_a_clear_error(tmp_path, capsys):
    assert main(["bench", "fleet", "--robots", "two", "--out", str(tmp_path)]) == 2
    assert "--robots" in capsys.readouterr().err
