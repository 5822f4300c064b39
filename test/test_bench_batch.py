"""`bench batch`: a small real run and its argument checks."""

from __future__ import annotations

import json

from split_perception.cli import main


def test_batch_small_run(tmp_path):
    """The default model, on its default frames (the held-out clips)."""
    out = tmp_path / "batch"
    assert main(["bench", "batch", "--batches", "2,4", "--repeats", "2", "--threads", "1", "--out", str(out)]) == 0
    rows = json.loads((out / "batch.json").read_text())["rows"]
    assert [r["batch"] for r in rows] == [1, 2, 4] and rows[0]["frame_ratio"] == 1.0
    for r in rows:
        assert r["ms_per_batch"] > 0 and abs(r["ms_per_frame"] * r["batch"] - r["ms_per_batch"]) < 1e-6
    assert "x batch size 1" in (out / "table.md").read_text()


def test_batch_bad_arguments(tmp_path, capsys):
    assert main(["bench", "batch", "--batches", "two", "--out", str(tmp_path)]) == 2
    assert "--batches" in capsys.readouterr().err
