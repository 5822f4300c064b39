"""`bench rate-accuracy --video`: the video codecs (PyAV) as a robot would stream them, and the
benchmark on a short clip with a small student of the real NanoDet-g teacher."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from split_perception.bench.rate_accuracy_video import CODECS, code_clip, frames_at
from split_perception.cli import main

from .test_onnx_teacher import street_footage


def moving_frames(n: int, h: int = 67, w: int = 97) -> list[np.ndarray]:
    """A textured picture sliding right: what inter-frame coding is for."""
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 256, (h, w + 4 * n, 3), dtype=np.uint8), (5, 5), 0)
    return [np.ascontiguousarray(base[:, 4 * i:4 * i + w]) for i in range(n)]


@pytest.mark.parametrize("name", sorted(CODECS))
def test_a_stream_has_a_keyframe_every_gop_and_decodes_to_every_frame(name):
    frames = moving_frames(7)  # odd height and width: padded for 4:2:0, cropped back
    decoded, sizes, keys = code_clip(CODECS[name], frames, crf=20, gop=3, fps=10)
    assert keys == [True, False, False, True, False, False, True]
    assert len(sizes) == 7 and all(s > 0 for s in sizes) and sizes[3] > max(sizes[1:3])  # a keyframe costs more
    assert all(d.shape == f.shape for d, f in zip(decoded, frames))
    assert min(cv2.PSNR(f, d) for f, d in zip(frames, decoded)) > 25  # each decoded frame is its own frame
    _, intra_sizes, intra_keys = code_clip(CODECS[name], frames, crf=20, gop=1, fps=10)
    _, inter_sizes, inter_keys = code_clip(CODECS[name], frames, crf=20, gop=15, fps=10)
    assert all(intra_keys) and sum(inter_keys) == 1 and sum(intra_sizes) > 2 * sum(inter_sizes)


def test_a_clip_is_played_at_the_stated_frame_rate(tmp_path):
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(10):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    seen = [round(float(f.mean()) / 20) for f in frames_at(clip, fps=10, max_frames=0)]
    assert seen == [0, 2, 5, 7]  # a frame each 1/10 s of a 25 fps clip
    assert len(frames_at(clip, fps=10, max_frames=3)) == 3 and len(frames_at(clip, fps=50, max_frames=0)) == 10


def test_video_mode_compares_every_codec_on_the_same_frames(small_student_path, tmp_path, capsys):
    clips, fit = street_footage(tmp_path, 5, shift=4)
    out = tmp_path / "out"
    assert main(["bench", "rate-accuracy", "--video", "--model", str(small_student_path), "--footage", str(clips),
                 "--fit-data", str(fit), "--fit-images", "2", "--max-images", "4", "--quick", "--out", str(out)]) == 0
    res = json.loads((out / "rate_accuracy.json").read_text())
    rows = {r["method"]: r for r in res["rows"]}
    assert set(rows) == {"teacher", "ours", "jpeg", "webp", "pca", "x264", "x265", "av1", "x264-intra"}
    assert res["frames"] == 4 and res["fps"] == 10 and res["gop"] == 15 and rows["teacher"]["map"] == pytest.approx(1.0)
    assert rows["x264"]["keyframes"] == 1 and rows["x264-intra"]["keyframes"] == 4  # 4 frames < GOP 15
    assert rows["x264-intra"]["bytes_mean"] > rows["x264"]["bytes_mean"]  # same crf: inter frames are cheaper
    assert all(0 <= r["map"] <= 1 and r["bytes_mean"] > 0 for r in res["rows"])
    for h in res["headline"]:
        assert {"x264_bytes_min", "x265_bytes_min", "av1_bytes_min", "best_video_bytes_min", "jpeg_bytes_min",
                "webp_bytes_min", "pca_bytes_min"} <= set(h)
    assert [h["width"] for h in res["headline"]] == [0.25, 0.5, 0.75, 1.0] and res["headline50"]
    assert "| x264 | crf 33, GOP 15 |" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [["--fps", "0"], ["--gop", "0"], ["--baselines", "x"]])
def test_video_mode_refuses_bad_settings_with_one_line(small_student_path, tmp_path, capsys, bad):
    assert main(["bench", "rate-accuracy", "--video", "--model", str(small_student_path), "--footage", str(tmp_path),
                 *bad, "--out", str(tmp_path / "o")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "--" in err[0], err
