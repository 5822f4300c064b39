"""`bench report` puts the benchmark tables into docs/results.md between its markers."""

from __future__ import annotations

import json

from split_perception.bench.report import BEGIN, END
from split_perception.bench.sizing import servers_needed
from split_perception.cli import main


def test_report_replaces_only_the_marked_section(tmp_path, capsys):
    res = tmp_path / "bench" / "switch"
    res.mkdir(parents=True)
    (res / "table.md").write_text("| a |\n|---|\n| 1 |\n")
    (res / "switch.json").write_text(json.dumps({"command": "split-perception bench switch",
                                                 "machine": {"date": "2026-11-24", "cpus": 2, "threads": 2}}))
    (res / "switch.png").write_bytes(b"png")
    page = tmp_path / "docs" / "results.md"
    page.parent.mkdir(exist_ok=True)
    page.write_text(f"intro\n{BEGIN}\nold table\n{END}\noutro\n")
    assert main(["bench", "report", "--results", str(tmp_path / "bench"), "--doc", str(page)]) == 0
    doc = page.read_text()
    assert doc.startswith("intro\n") and doc.endswith("outro\n") and "old table" not in doc
    assert "`split-perception bench switch` (2026-11-24, 2 cores" in doc and "| 1 |" in doc
    assert "(../bench/switch/switch.png)" in doc  # relative to the page
    assert main(["bench", "report", "--results", str(tmp_path / "bench"), "--doc", str(page)]) == 0
    assert page.read_text() == doc  # idempotent


def test_report_without_markers_or_results_is_a_clear_error(tmp_path, capsys):
    page = tmp_path / "docs" / "results.md"
    page.parent.mkdir(exist_ok=True)
    page.write_text("no markers\n")
    assert main(["bench", "report", "--results", str(tmp_path), "--doc", str(page)]) == 2
    assert "no benchmark results" in capsys.readouterr().err
    (tmp_path / "x" / "link").mkdir(parents=True)
    (tmp_path / "x" / "link" / "table.md").write_text("t\n")
    assert main(["bench", "report", "--results", str(tmp_path / "x"), "--doc", str(page)]) == 2
    assert "markers" in capsys.readouterr().err


def test_servers_needed_settles_on_the_batch_each_server_fills():
    ms = {1: 20.0, 4: 12.5, 8: 10.0}  # ms per frame by batch size
    assert servers_needed(16, 5, ms) == {"robots": 16, "fps": 5, "frames_s": 80, "batch": 8, "server_fps": 100.0,
                                         "for_load": 2, "servers": 3}
    few = servers_needed(4, 50, ms)  # 200 frames/s: more servers, fewer robots each, smaller batches
    assert (few["batch"], few["for_load"], few["servers"]) == (1, 6, 7), few


def test_report_works_out_the_servers_a_fleet_needs_from_bench_batch(tmp_path):
    res = tmp_path / "bench" / "batch"
    res.mkdir(parents=True)
    (res / "table.md").write_text("| batch |\n|---|\n| 1 |\n")
    (res / "batch.json").write_text(json.dumps({
        "command": "split-perception bench batch", "machine": {"date": "2026-12-04", "cpus": 2, "threads": 2},
        "rows": [{"batch": b, "ms_per_frame_median": ms} for b, ms in ((1, 20.0), (4, 12.5), (8, 10.0))]}))
    page = tmp_path / "results.md"
    page.write_text(f"{BEGIN}\n{END}\n")
    assert main(["bench", "report", "--results", str(tmp_path / "bench"), "--doc", str(page)]) == 0
    doc = page.read_text()
    assert doc.index("### Offboard decoding in batches") < doc.index("### How many servers (from `bench batch`)")
    assert "From `split-perception bench batch` (2026-12-04" in doc and "| 16 | 5 | 80 | 8 | 100 | 2 | 3 |" in doc
