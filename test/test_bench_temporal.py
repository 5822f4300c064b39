"""`bench temporal`: bytes with and without temporal coding from real packets, and the design notes quote it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from split_perception.cli import main
from split_perception.model_files import BUNDLED_MODELS

from .test_onnx_teacher import street_footage

REPO = Path(__file__).resolve().parents[1]


def test_temporal_command_small_run(tmp_path, capsys):
    clips, _ = street_footage(tmp_path, 6, shift=0)  # a fixed camera (MJPG noise between frames)
    out = tmp_path / "out"
    assert main(["bench", "temporal", "--model", str(BUNDLED_MODELS["nanodet_g"]), "--footage", str(clips),
                 "--max-frames", "6", "--lag", "2", "--loss", "0.3", "--out", str(out)]) == 0
    res = json.loads((out / "temporal.json").read_text())
    assert res["mismatched"] == 0 and [r["width"] for r in res["rows"]] == [0.25, 0.5, 0.75, 1.0]
    for r in res["rows"]:
        assert r["frames"] == 6 and r["acks_now_keyframes"] == 1 and r["acks_late_keyframes"] == 3
        assert r["acks_now_bytes"] < r["acks_late_bytes"] < r["intra_bytes"]  # fresher references: fewer bytes
        assert r["lossy_decoded"] + r["lossy_lost"] + r["lossy_refused"] == 6 and r["lossy_refused"] == 0
        assert r["encode_time_ratio"] > 0
    assert "| street.avi | 0.25 |" in capsys.readouterr().out
    assert (out / "table.md").is_file() and (out / "temporal.csv").is_file()


@pytest.mark.parametrize("bad", [["--fps", "0"], ["--max-frames", "1"], ["--loss", "1"], ["--footage", "nowhere"]])
def test_temporal_command_refuses_bad_settings_with_one_line(tmp_path, capsys, bad):
    assert main(["bench", "temporal", "--footage", str(tmp_path), *bad, "--out", str(tmp_path / "o")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "--" in err[0], err


def test_the_design_notes_quote_the_committed_temporal_results():
    """The figures of docs/design.md's temporal coding section are those of results/bench/temporal."""
    res = json.loads((REPO / "results" / "bench" / "temporal" / "temporal.json").read_text())
    text = " ".join((REPO / "docs" / "design.md").read_text().split())
    section = text[text.index("`split-perception bench temporal`"):][:900]

    def span(clip, key):
        v = [r[key] for r in res["rows"] if r["clip"] == clip]
        return f"{min(v):.2f}-{max(v):.2f}"

    ratios = [r["encode_time_ratio"] for r in res["rows"]]
    for figure in (span("vtest.avi", "acks_now_ratio"), span("vtest.avi", "acks_late_ratio"),
                   span("bikes.mp4", "acks_now_ratio"), span("bikes.mp4", "acks_late_ratio"),
                   f"{min(ratios):.2f}-{max(ratios):.2f}"):
        assert figure in section, figure
    assert res["mismatched"] == 0 and all(r["acks_late_ratio"] < 1 for r in res["rows"])  # the default's reason
