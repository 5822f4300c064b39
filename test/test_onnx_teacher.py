"""A student of the real NanoDet-g teacher: the torch twins against ONNX Runtime on real photos,
checkpoints that pin the teacher file, and real packets from both onboard runtimes."""

from __future__ import annotations

import cv2
import numpy as np
import onnx
import pytest
import torch

from split_perception.config import ModelConfig, to_dict
from split_perception.errors import CheckpointError, ConfigError
from split_perception.models.checkpoint import load_model, read_checkpoint
from split_perception.models.split_model import SplitModel
from split_perception.offboard.decoder import OffboardDecoder
from split_perception.onboard.encoder import OnboardEncoder
from split_perception.onboard.preprocess import model_input_tensor
from split_perception.teachers.detector import TeacherDetector

from .conftest import small_config
from .test_teacher_nanodet import PHOTOS


def photo(name: str = "vtest_frame397.jpg") -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(PHOTOS / name)), cv2.COLOR_BGR2RGB)


def street_footage(root, frames: int, shift: int = 6):
    """Under `root`: clips/street.avi (`frames` frames of a real street photo, panning by `shift` pixels,
    384x288 at 10 fps) and fit/messi.png (a photo to fit PCA on). Returns (clips, fit)."""
    clips, fit = root / "clips", root / "fit"
    clips.mkdir()
    fit.mkdir()
    writer = cv2.VideoWriter(str(clips / "street.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (384, 288))
    frame = cv2.resize(cv2.imread(str(PHOTOS / "vtest_frame397.jpg")), (384, 288))
    for i in range(frames):
        writer.write(np.roll(frame, shift * i, axis=1))
    writer.release()
    cv2.imwrite(str(fit / "messi.png"), cv2.imread(str(PHOTOS / "messi5.jpg")))
    return clips, fit


def test_config_takes_input_and_classes_from_the_teacher():
    cfg = small_config()
    assert cfg.input_size == (416, 416) and cfg.resize == "letterbox" and cfg.channel_order == "BGR"
    assert len(cfg.class_names) == 80 and cfg.class_names[0] == "person" and cfg.split_stride == 8
    assert cfg.image_mean == pytest.approx((123.675 / 255, 116.28 / 255, 103.53 / 255))  # RGB order, 0..1
    assert len(cfg.teacher_sha256) == 64
    with pytest.raises(ConfigError, match="another teacher file"):
        ModelConfig(**{**to_dict(cfg), "teacher_sha256": "0" * 64}).validate()
    with pytest.raises(ConfigError, match="neither a bundled teacher"):
        ModelConfig(teacher="no_such_teacher", encoder="front").validate()
    with pytest.raises(ConfigError, match="encoder: front"):
        ModelConfig(teacher="nanodet_g", encoder="conv").validate()


@pytest.mark.parametrize("name", ["vtest_frame397.jpg", "messi5.jpg"])
def test_twin_teacher_detects_what_onnx_runtime_detects(name):
    cfg = small_config()
    teacher = SplitModel(cfg).teacher
    rgb = photo(name)
    with torch.no_grad():
        out = teacher(model_input_tensor(rgb, cfg))
    teacher.score_thresh = 0.3
    ours = teacher.postprocess(out, [rgb.shape[:2]])[0]
    ref = [d for d in TeacherDetector().detect(rgb, "RGB") if d.score >= 0.3]
    assert len(ref) >= 3
    # scores within float noise of ORT may sit on either side of the threshold: compare the clear ones
    clear = [d for d in ref if d.score >= 0.31]
    got = list(zip(ours["labels"].tolist(), ours["scores"].tolist(), ours["boxes"].tolist()))
    for d in clear:
        assert any(lab == d.class_id + 1 and abs(s - d.score) < 1e-3 and np.abs(np.subtract(b, d.box)).max() < 0.5
                   for lab, s, b in got), (d, got)


def test_tail_runs_on_onnx_runtime_at_inference_and_as_the_twin_for_gradients():
    """Inference decodes through the detector's own tail graph (ONNX Runtime); training, which needs
    gradients through the tail, gets the torch twin; both give the same outputs on real photos."""
    cfg = small_config()
    teacher = SplitModel(cfg).teacher
    with torch.no_grad():
        z = torch.cat([teacher.front(model_input_tensor(photo(name), cfg)) for name in ("vtest_frame397.jpg",
                                                                                        "messi5.jpg")])
        fast = teacher.back(z)  # a batch, as the fleet server decodes
    assert teacher._tail_session is not None
    zg = z.clone().requires_grad_()
    twin = teacher.back(zg)
    assert all(t.requires_grad for t in twin.values()) and set(twin) == set(fast)
    diff = max(float((twin[k].detach() - fast[k]).abs().max()) for k in fast)
    assert diff < 1e-4, diff
    sum(t.sum() for t in twin.values()).backward()
    assert zg.grad is not None and zg.grad.abs().sum() > 0


def test_checkpoint_holds_no_teacher_weights_and_round_trips(small_student_path):
    ckpt = read_checkpoint(small_student_path)
    assert not any(k.startswith(("teacher.", "encoder.front.")) for k in ckpt["state_dict"])
    assert ckpt["model_config"].teacher == "nanodet_g"
    model, fp = load_model(small_student_path)
    assert fp == ckpt["fingerprint"] and model.teacher.split_channels == model.cfg.teacher_spec().split.shape[1]
    edited = dict(ckpt, model_config={**ckpt["stored_model_config"], "teacher_sha256": "f" * 64})
    torch.save({k: v for k, v in edited.items() if k != "stored_model_config"}, small_student_path.parent / "edited.pt")
    with pytest.raises(CheckpointError):
        load_model(small_student_path.parent / "edited.pt")


def test_packets_of_both_runtimes_are_the_same_bytes_and_decode(small_student_path, tmp_path):
    from split_perception.onboard.export import export_onboard

    export_onboard(small_student_path, tmp_path / "export")
    onnx, torch_enc = OnboardEncoder(tmp_path / "export", runtime="onnx"), OnboardEncoder(small_student_path, runtime="torch")
    dec = OffboardDecoder(small_student_path)
    rgb = photo()
    for w in onnx.widths:
        onnx.set_width(w)
        torch_enc.set_width(w)
        packet = onnx.encode(rgb, frame_id=3, stamp_ns=5)
        assert packet == torch_enc.encode(rgb, frame_id=3, stamp_ns=5), w
        frame = dec.decode(packet)
        assert frame.width == w and frame.image_size == rgb.shape[:2] and frame.mask is None
    dets, mask = dec.teacher(rgb)
    assert mask is None and any(d.label == "person" for d in dets)


def test_rate_accuracy_on_real_clips_reports_agreement_for_every_method(small_student_path, tmp_path, capsys):
    import json

    from split_perception.cli import main

    clips, fit = street_footage(tmp_path, 4)
    out = tmp_path / "out"
    assert main(["bench", "rate-accuracy", "--model", str(small_student_path), "--footage", str(clips), "--fit-data",
                 str(fit), "--fit-images", "2", "--frame-stride", "2", "--quick", "--out", str(out)]) == 0
    res = json.loads((out / "rate_accuracy.json").read_text())
    methods = {r["method"] for r in res["rows"]}
    assert methods == {"teacher", "ours", "jpeg", "webp", "pca"} and res["frames"] == 2
    teacher = next(r for r in res["rows"] if r["method"] == "teacher")
    assert teacher["map"] == pytest.approx(1.0) and res["reference_detections"] > 0
    assert [h["width"] for h in res["headline"]] == [0.25, 0.5, 0.75, 1.0] and res["headline50"]
    assert "Bytes at equal agreement" in capsys.readouterr().out


def test_analyze_split_studies_every_single_tensor_cut_of_the_onnx_teacher(small_student_path, tmp_path, capsys):
    """`analyze-split` on a model of NanoDet-g: its single-tensor cuts at stride >= 4 (stride 4 and 8,
    ending at the configured `backbone_stride_8`), each PCA-coded on real frames, agreement with the
    teacher per setting, and a suggestion with its reason."""
    import json

    from split_perception.bench.analyze_split_teacher import candidates
    from split_perception.cli import main

    graph = onnx.load(str(small_config().teacher_spec().model_path))
    cuts = candidates(graph, (416, 416))
    assert cuts[-1] == ("backbone_stride_8", (1, 128, 52, 52))
    assert {416 // shape[2] for _, shape in cuts} == {4, 8} and all(shape[2] in (104, 52) for _, shape in cuts)
    clips, fit = street_footage(tmp_path, 2)
    out = tmp_path / "out"
    assert main(["analyze-split", "--model", str(small_student_path), "--data", str(clips), "--fit-data", str(fit),
                 "--fit-images", "2", "--frame-stride", "1", "--quick", "--agreement", "0.05", "--out", str(out)]) == 0
    res = json.loads((out / "analyze_split.json").read_text())
    assert [s["tensor"] for s in res["splits"]] == [name for name, _ in cuts] and res["frames"] == 2
    assert len(res["rows"]) == len(cuts) and all(0 <= r["map50"] <= 1 and r["bytes_mean"] > 0 for r in res["rows"])
    assert res["configured_split"] == "Conv_6:0" and res["reasoning"] in capsys.readouterr().out
    assert (res["suggested_split"] is None) == all(s["best_bytes"] is None for s in res["splits"])
