"""`bench report` puts the benchmark tables into docs/results.md between its markers."""

from __future__ import annotations

import json

from split_perception.bench.report import BEGIN, END
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
