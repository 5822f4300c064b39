"""`bench loss`: our temporal stream and H.264 through the same random losses, scored per frame."""

from __future__ import annotations

import json

import pytest

from split_perception.bench.packet_loss import frame_f1
from split_perception.cli import main
from split_perception.offboard.decoder import Detection

from .test_onnx_teacher import street_footage


def det(label: int, box, score: float = 0.9) -> Detection:
    return Detection(label, str(label), score, tuple(float(v) for v in box))


def test_frame_f1_matches_by_class_and_iou_once_each():
    ref = [det(1, (0, 0, 10, 10)), det(2, (20, 20, 30, 30))]
    assert frame_f1([], []) == 1.0 and frame_f1([], ref) == 0.0 and frame_f1(ref, []) == 0.0
    assert frame_f1(ref, ref) == 1.0
    assert frame_f1([det(1, (1, 1, 11, 11)), det(2, (40, 40, 50, 50))], ref) == pytest.approx(0.5)  # one hit
    assert frame_f1([det(3, (0, 0, 10, 10))], ref) == 0.0  # right box, wrong class
    assert frame_f1([det(1, (0, 0, 10, 10)), det(1, (0, 0, 10, 10), 0.5)], ref[:1]) == pytest.approx(2 / 3)


def test_loss_command_small_run(tmp_path, capsys):
    clips, _ = street_footage(tmp_path, 10, shift=0)  # a fixed camera
    out = tmp_path / "out"
    assert main(["bench", "loss", "--footage", str(clips), "--max-frames", "10", "--loss", "0.3", "--lag", "1",
                 "--threads", "1", "--out", str(out)]) == 0
    res = json.loads((out / "loss.json").read_text())
    rows = res["rows"]
    assert [(r["width"], r["loss"]) for r in rows] == [(w, p) for w in (0.25, 0.5, 0.75, 1.0) for p in (0.0, 0.3)]
    assert "--model nanodet_g" in res["command"]  # the record names the default model it ran
    for r in rows:
        assert r["ours_refused"] == 0 and r["ours_delivered"] == r["frames"] - r["lost"]  # acknowledged refs only
        assert r["h264_delivered"] <= r["frames"] - r["lost"]
        assert 0.25 < r["h264_bytes"] / r["ours_bytes"] < 4  # x264's bit_rate set to ours
        for key in ("ours_agree_all", "h264_agree_all"):
            assert 0 <= r[key] <= 1
    lossless = [r for r in rows if r["loss"] == 0.0]
    assert all(r["lost"] == 0 and r["h264_delivered"] == r["frames"] for r in lossless)
    lossy = [r for r in rows if r["loss"] == 0.3]
    assert len({r["lost"] for r in lossy}) == 1 and lossy[0]["lost"] > 0  # one draw for every width and method
    assert "| street.avi | 0.25 | 30% |" in capsys.readouterr().out
    assert (out / "table.md").is_file() and (out / "loss.csv").is_file()


@pytest.mark.parametrize("bad", [["--loss", "0"], ["--loss", "a"], ["--fps", "0"], ["--max-frames", "1"],
                                 ["--agree-f1", "0"], ["--footage", "nowhere"]])
def test_loss_command_refuses_bad_settings_with_one_line(tmp_path, capsys, bad):
    assert main(["bench", "loss", "--footage", str(tmp_path), *bad, "--out", str(tmp_path / "o")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "--" in err[0], err
