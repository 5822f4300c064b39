"""eval-bag on bags of other tools (mcap-ros2-support, rosbags sqlite3), with ground truth, damaged or missing;
decode-bag on a bag of real EncodedFeatures messages."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from split_perception.cli import main
from split_perception.config import DEFAULT_CLASSES
from split_perception.data.bags import write_sample_bag
from split_perception.data.synthetic import render_scene
from split_perception.evaluation.bag_eval import detections_coco
from split_perception.evaluation.feature_bag import MSGTYPE, typestore
from split_perception.evaluation.metrics import coco_map
from split_perception.models.checkpoint import save_checkpoint
from split_perception.models.split_model import SplitModel
from split_perception.offboard.decoder import Detection, OffboardDecoder
from split_perception.onboard.encoder import OnboardEncoder
from split_perception.stamps import split_ns

from .conftest import tiny_config

# sensor_msgs/msg/Image as ROS 2 embeds it in an mcap schema (the .msg files, dependencies appended)
IMAGE_MSGDEF = """std_msgs/Header header
uint32 height
uint32 width
string encoding
uint8 is_bigendian
uint32 step
uint8[] data
================================================================================
MSG: std_msgs/Header
builtin_interfaces/Time stamp
string frame_id
================================================================================
MSG: builtin_interfaces/Time
int32 sec
uint32 nanosec
"""
T0 = 1_750_000_000_000_000_000
SCORE = 0.05  # the untrained tiny model's scores are low; this keeps some detections to compare


def _scenes(n: int, size=(120, 160), seed: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [render_scene(rng, size, DEFAULT_CLASSES)[0] for _ in range(n)]


def _image_dict(i: int, data: bytes, h: int, w: int, encoding: str, step: int) -> dict:
    sec, nsec = split_ns(T0 + i * 100_000_000)
    return {"header": {"stamp": {"sec": sec, "nanosec": nsec}, "frame_id": "cam"}, "height": h, "width": w,
            "encoding": encoding, "is_bigendian": 0, "step": step, "data": data}


def _third_party_mcap(path, bgr: int, mono: int, depth: int, chunk_size: int = 1024 * 1024) -> None:
    """A bare .mcap written by mcap-ros2-support (not rosbags): bgr8, mono8 and 16UC1 frames on one topic."""
    from mcap_ros2.writer import Writer

    frames = _scenes(bgr + mono)
    with open(path, "wb") as f:
        writer = Writer(f, chunk_size=chunk_size)
        schema = writer.register_msgdef("sensor_msgs/msg/Image", IMAGE_MSGDEF)
        for i, rgb in enumerate(frames):
            h, w = rgb.shape[:2]
            if i < bgr:
                msg = _image_dict(i, rgb[..., ::-1].tobytes(), h, w, "bgr8", 3 * w)
            else:
                msg = _image_dict(i, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).tobytes(), h, w, "mono8", w)
            writer.write_message("/front/image_raw", schema, msg, log_time=T0 + i * 100_000_000)
        for j in range(depth):
            i = len(frames) + j
            msg = _image_dict(i, np.full((120, 160), 1000 + j, "<u2").tobytes(), 120, 160, "16UC1", 320)
            writer.write_message("/front/image_raw", schema, msg, log_time=T0 + i * 100_000_000)
        writer.finish()


def _eval(capsys, bag, out, model, *extra) -> tuple[int, dict, str, str]:
    code = main(["eval-bag", str(bag), "--out", str(out), "--model", str(model), "--threads", "2",
                 "--score-thresh", str(SCORE), *extra])
    captured = capsys.readouterr()
    res = json.loads((out / "eval_bag.json").read_text()) if code == 0 else {}
    return code, res, captured.out, captured.err


def _check_outputs(out, res: dict, annotated: int) -> None:
    for name in ("eval_bag.json", "eval_bag.csv", "table.md", "bytes_agreement.png"):
        assert (out / name).stat().st_size > 0, name
    with (out / "eval_bag.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(res["rows"])
    assert len(list((out / "annotated").glob("*.png"))) == annotated
    rows = {r["setting"]: r for r in res["rows"]}
    widths = [r for r in res["rows"] if r["method"] == "ours"]
    assert len(widths) == len(tiny_config().widths)
    for r in res["rows"]:
        assert r["bytes_mean"] > 0 and r["bytes_p95"] >= r["bytes_mean"] * 0.5
        assert 0.0 <= r["mask_agreement"] <= 1.0
        assert 0.0 <= r["det_agreement"] <= 1.0
    # the reference agrees with itself exactly; the split model's packets are far smaller than raw frames
    assert rows["uncompressed frame"]["mask_agreement"] == pytest.approx(1.0)
    assert res["reference_detections"] > 0
    assert rows["uncompressed frame"]["det_agreement"] == pytest.approx(1.0)
    assert all(w["det_agreement"] is not None for w in widths)
    assert all(w["bytes_mean"] < rows["uncompressed frame"]["bytes_mean"] for w in widths)
    assert rows["q75"]["bytes_mean"] < rows["q95"]["bytes_mean"]


def test_agreement_is_one_for_the_reference_and_drops_for_a_broken_one():
    ref = [[Detection(1, "circle", 0.9, (10.0, 10.0, 50.0, 60.0)), Detection(2, "square", 0.8, (70, 20, 110, 90))],
           [Detection(3, "triangle", 0.7, (5.0, 5.0, 40.0, 30.0))]]
    gt = detections_coco([1, 2], ref, [(120, 160), (120, 160)], DEFAULT_CLASSES)
    as_results = [{"image_id": i, "category_id": d.label_id, "score": d.score,
                   "bbox": [d.box[0], d.box[1], d.box[2] - d.box[0], d.box[3] - d.box[1]]}
                  for i, dets in zip([1, 2], ref) for d in dets]
    assert coco_map(gt, as_results, [1, 2])["map"] == pytest.approx(1.0)
    shifted = [{**r, "bbox": [r["bbox"][0] + 12, *r["bbox"][1:]]} for r in as_results]
    assert coco_map(gt, shifted, [1, 2])["map"] < 0.5


def test_third_party_mcap_counts_unsupported_encodings(tmp_path, capsys, tiny_model_path):
    bag = tmp_path / "robot.mcap"
    _third_party_mcap(bag, bgr=2, mono=1, depth=2)
    code, res, out, err = _eval(capsys, bag, tmp_path / "out", tiny_model_path, "--annotate", "2")
    assert code == 0, err
    assert res["frames"] == 3 and res["topic"] == "/front/image_raw"
    assert res["encodings"] == {"bgr8": 2, "mono8": 1, "16UC1": 2}
    assert res["skipped"] == {"16UC1": 2} and "16UC1" in res["skip_reasons"]["16UC1"]
    assert res["resolution"] == {"160x120": 3} and res["stopped"] is None
    assert res["ground_truth"] is None and "map" not in res["rows"][0]
    raw = res["rows"][0]["bytes_mean"]
    assert raw == pytest.approx((2 * 160 * 120 * 3 + 160 * 120) / 3)  # the bag's own message sizes
    _check_outputs(tmp_path / "out", res, annotated=2)
    assert "| ours | w=1 |" in out and "2 16UC1" in out


def test_sqlite3_bag_of_compressed_images(tmp_path, capsys, tiny_model_path):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_JAZZY)
    Compressed = ts.types["sensor_msgs/msg/CompressedImage"]
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    bag = tmp_path / "jpeg_bag"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.SQLITE3) as w:
        conn = w.add_connection("/cam/image/compressed", Compressed.__msgtype__, typestore=ts)
        for i, rgb in enumerate(_scenes(2, size=(90, 130), seed=9)):
            ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
            msg = Compressed(header=Header(stamp=Time(*split_ns(T0 + i)), frame_id="cam"), format="jpeg",
                             data=np.frombuffer(jpg.tobytes(), np.uint8))
            w.write(conn, T0 + i, ts.serialize_cdr(msg, Compressed.__msgtype__))
    assert (bag / "jpeg_bag.db3").is_file()
    code, res, _, err = _eval(capsys, bag, tmp_path / "out", tiny_model_path)
    assert code == 0, err
    assert res["frames"] == 2 and res["encodings"] == {"jpeg": 2} and res["skipped"] == {}
    assert res["resolution"] == {"130x90": 2}
    _check_outputs(tmp_path / "out", res, annotated=2)


def test_make_bag_with_ground_truth_reports_map(tmp_path, capsys, tiny_model_path):
    bag = write_sample_bag(tmp_path / "gt_bag", frames=4, size=(96, 128), storage="sqlite3")
    code, res, out, err = _eval(capsys, bag, tmp_path / "out", tiny_model_path, "--max-frames", "2")
    assert code == 0, err
    assert res["frames"] == 2 and res["frames_matched_to_ground_truth"] == 2
    assert res["reference"] == "ground truth + teacher"
    for r in res["rows"]:
        assert 0.0 <= r["map"] <= 1.0 and 0.0 <= r["map50"] <= 1.0 and 0.0 <= r["miou"] <= 1.0
        assert r["map"] <= r["map50"] + 1e-9
    assert "mAP@[.5:.95] (ground truth)" in out
    _check_outputs(tmp_path / "out", res, annotated=2)


def test_missing_bag_and_several_camera_topics_are_one_error_line(tmp_path, capsys, tiny_model_path):
    assert main(["eval-bag", str(tmp_path / "nope.mcap"), "--model", str(tiny_model_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("[ERROR] ") and "nope.mcap" in err[0]

    from mcap_ros2.writer import Writer

    bag = tmp_path / "two_cams.mcap"
    with open(bag, "wb") as f:
        writer = Writer(f)
        schema = writer.register_msgdef("sensor_msgs/msg/Image", IMAGE_MSGDEF)
        for topic in ("/left/image", "/right/image"):
            writer.write_message(topic, schema, _image_dict(0, bytes(8 * 8 * 3), 8, 8, "rgb8", 24), log_time=T0)
        writer.finish()
    assert main(["eval-bag", str(bag), "--model", str(tiny_model_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("[ERROR] ") and "/left/image" in err[0] and "/right/image" in err[0]


def test_truncated_mcap_evaluates_the_frames_before_the_damage(tmp_path, capsys, tiny_model_path):
    whole = tmp_path / "whole.mcap"
    _third_party_mcap(whole, bgr=6, mono=0, depth=0, chunk_size=20_000)  # about one frame per chunk
    data = whole.read_bytes()
    bag = tmp_path / "cut.mcap"
    bag.write_bytes(data[: int(len(data) * 0.6)])
    code, res, out, err = _eval(capsys, bag, tmp_path / "out", tiny_model_path, "--annotate", "1")
    assert code == 0, err
    assert 1 <= res["frames"] < 6
    assert res["stopped"] and "damaged at byte" in res["stopped"]
    assert "The bag is damaged" in out
    _check_outputs(tmp_path / "out", res, annotated=1)


def write_features_bag(bag: Path, fingerprint: str, packets: list[bytes], image_size, *raw: bytes) -> Path:
    """A rosbag2 of EncodedFeatures on /features (as `ros2 bag record` of the encoder's topic writes it), one
    message per packet with stamp T0 + i, then `raw` messages as they are (not CDR of the type, say)."""
    from rosbags.rosbag2 import Writer

    ts = typestore()
    Msg = ts.types[MSGTYPE]
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    with Writer(bag, version=9) as w:
        conn = w.add_connection("/features", MSGTYPE, typestore=ts)
        for i, p in enumerate(packets):
            msg = Msg(header=Header(stamp=Time(*split_ns(T0 + i)), frame_id="camera"), model_fingerprint=fingerprint,
                      width=1.0, frame_id=i, image_height=image_size[0], image_width=image_size[1], encode_ms=1.0,
                      packet=np.frombuffer(p, np.uint8))
            w.write(conn, T0 + i, ts.serialize_cdr(msg, MSGTYPE))
        for j, data in enumerate(raw):
            w.write(conn, T0 + len(packets) + j, data)
    return bag


def test_decode_bag_matches_the_offboard_decoder_and_counts_bad_packets(tmp_path, capsys, tiny_model_path):
    torch.manual_seed(1)
    other_model = tmp_path / "other.pt"
    save_checkpoint(SplitModel(tiny_config()), other_model)
    enc, other = OnboardEncoder(tiny_model_path), OnboardEncoder(other_model)
    frames = _scenes(4, size=(96, 128), seed=2)
    packets = []
    for i, rgb in enumerate(frames):
        enc.set_width(enc.widths[i % len(enc.widths)])
        packets.append(enc.encode(rgb, frame_id=i, stamp_ns=T0 + i))
    corrupt = bytearray(packets[1])
    corrupt[len(corrupt) // 2] ^= 0xFF
    sent = [packets[0], bytes(corrupt), packets[2], other.encode(frames[0], 9, T0 + 9), packets[3]]

    bag = write_features_bag(tmp_path / "features_bag", enc.fingerprint, sent, (96, 128),
                             b"\x00\x01\x00\x00\xff")  # a message cut short: not CDR of the type

    out = tmp_path / "results.json"
    assert main(["decode-bag", str(bag), "-o", str(out), "--model", str(tiny_model_path),
                 "--score-thresh", str(SCORE)]) == 0
    printed = capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["messages"] == 6 and res["decoded"] == 3
    assert res["refused"] == {"PacketError": 1, "ModelMismatchError": 1, "unreadable message": 1}
    assert "1 PacketError" in printed and "1 ModelMismatchError" in printed

    dec = OffboardDecoder(tiny_model_path, score_thresh=SCORE)
    expect_frames, expect_dets = [], []
    for i, p in ((0, packets[0]), (2, packets[2]), (4, packets[3])):
        f = dec.decode(p, with_mask=False)
        expect_frames.append({"stamp_ns": T0 + i, "header_frame_id": "camera", "frame_id": f.frame_id,
                              "width": f.width, "bytes": len(p), "detections": len(f.detections)})
        expect_dets += [{"stamp_ns": T0 + i, "header_frame_id": "camera", "frame_id": f.frame_id,
                         "category_id": d.label_id, "label": d.label,
                         "bbox": [d.box[0], d.box[1], d.box[2] - d.box[0], d.box[3] - d.box[1]], "score": d.score}
                        for d in f.detections]
    assert res["frames"] == expect_frames
    assert expect_dets and res["detections"] == expect_dets
    assert sorted({f["width"] for f in res["frames"]}) == sorted({enc.widths[i % len(enc.widths)] for i in (0, 2, 3)})


def test_bag_commands_import_no_ros():
    code = ("import sys; import split_perception.evaluation.bag_eval, split_perception.evaluation.feature_bag; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'sensor_msgs', 'cv_bridge')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "[]"
