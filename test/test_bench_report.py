"""`bench report` puts the benchmark tables into docs/results.md and the results lines into the
README, each between its markers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from split_perception.bench import headlines
from split_perception.bench.headlines import model_of
from split_perception.bench.report import BEGIN, END
from split_perception.bench.sizing import servers_needed
from split_perception.cli import main

REPO = Path(__file__).resolve().parents[1]


def _switch_results(root: Path) -> Path:
    """A results folder holding one real `bench switch` run (the committed one), under `root`."""
    shutil.copytree(REPO / "results" / "bench" / "switch", root / "bench" / "switch")
    return root / "bench"


def _pages(root: Path) -> tuple[Path, Path]:
    page, readme = root / "docs" / "results.md", root / "README.md"
    page.parent.mkdir(exist_ok=True)
    page.write_text(f"intro\n{BEGIN}\nold table\n{END}\noutro\n")
    readme.write_text(f"# readme\n{headlines.BEGIN}\nold lines\n{headlines.END}\nmore\n")
    return page, readme


def test_report_replaces_only_the_marked_section(tmp_path, capsys):
    results = _switch_results(tmp_path)
    page, readme = _pages(tmp_path)
    argv = ["bench", "report", "--results", str(results), "--doc", str(page), "--readme", str(readme)]
    assert main(argv) == 0
    doc = page.read_text()
    assert doc.startswith("intro\n") and doc.endswith("outro\n") and "old table" not in doc
    run = json.loads((results / "switch" / "switch.json").read_text())
    assert f"`{run['command']}` ({run['machine']['date']}, 2 cores" in doc
    assert (results / "switch" / "table.md").read_text().strip() in doc
    assert "(../bench/switch/switch.png)" in doc  # relative to the page
    text = readme.read_text()
    assert text.startswith("# readme\n") and text.endswith("more\n") and "old lines" not in text
    line = next(x for x in text.splitlines() if x.startswith("* **Switching width**"))
    assert "(docs/results.md#width-switch-vs-model-reload-bench-switch)" in line  # relative to the README
    assert f"`split-perception bench switch --model {model_of(run)}`" in line  # the model the run recorded
    assert model_of({"command": "split-perception bench switch --repeats 3"}) == "synthetic"  # runs before records named it
    assert model_of(run) == "nanodet_g"  # the committed run: the default model, named in its record
    steady = [r["steady_ms"] for r in run["rows"]]
    assert f"{min(steady):.1f}-{max(steady):.1f} ms" in line
    assert main(argv) == 0
    assert page.read_text() == doc and readme.read_text() == text  # idempotent


def test_report_without_markers_or_results_is_a_clear_error(tmp_path, capsys):
    page, readme = _pages(tmp_path)
    argv = ["bench", "report", "--doc", str(page), "--readme", str(readme)]
    assert main([*argv, "--results", str(tmp_path / "none")]) == 2
    assert "no benchmark results" in capsys.readouterr().err
    results = _switch_results(tmp_path)
    for broken in (readme, page):
        kept = broken.read_text()
        broken.write_text("no markers\n")
        before = {p: p.read_text() for p in (page, readme)}
        assert main([*argv, "--results", str(results)]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and "markers" in err[0] and str(broken) in err[0], err
        assert {p: p.read_text() for p in (page, readme)} == before  # neither page written
        broken.write_text(kept)


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
        "rows": [{"batch": b, "ms_per_frame_median": ms, "ms_per_frame": ms, "frame_ratio": ms / 20.0}
                 for b, ms in ((1, 20.0), (4, 12.5), (8, 10.0))]}))
    page, readme = _pages(tmp_path)
    assert main(["bench", "report", "--results", str(tmp_path / "bench"), "--doc", str(page),
                 "--readme", str(readme)]) == 0
    doc = page.read_text()
    assert doc.index("### Offboard decoding in batches") < doc.index("### How many servers (from `bench batch`)")
    assert "From `split-perception bench batch` (2026-12-04" in doc and "| 16 | 5 | 80 | 8 | 100 | 2 | 3 |" in doc
