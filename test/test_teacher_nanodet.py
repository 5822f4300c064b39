"""NanoDet-g teacher: the committed model is the one teacher.yaml describes, our torch-free pipeline gives
upstream nanodet's detections on real photos, and the model splits exactly at its stride-8 backbone tensor."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml

from split_perception.errors import ConfigError, ImageError, ModelGraphError
from split_perception.teachers import load_teacher_spec
from split_perception.teachers.detections import class_wise_nms
from split_perception.teachers.detector import DEFAULT_TEACHER, TeacherDetector, preprocess
from split_perception.teachers.letterbox import Letterbox, letterbox
from split_perception.teachers.spec import parse_teacher_spec
from split_perception.teachers.split import split_model

PHOTOS = Path(__file__).parent / "data" / "photos"
REFERENCE = json.loads((PHOTOS / "nanodet_g_reference.json").read_text())


@pytest.fixture(scope="module")
def spec():
    return load_teacher_spec(DEFAULT_TEACHER)


@pytest.fixture(scope="module")
def detector(spec):
    return TeacherDetector(spec, threads=2)


@pytest.fixture(scope="module")
def model(spec):
    return onnx.load(str(spec.model_path))


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def test_model_is_the_one_teacher_yaml_describes(spec, model):
    files = spec.provenance
    assert hashlib.sha256(spec.model_path.read_bytes()).hexdigest() == files["model_onnx_sha256"]
    assert REFERENCE["model_onnx_sha256"] == files["model_onnx_sha256"]
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == [spec.input.name]
    assert sorted(o.name for o in model.graph.output) == sorted(spec.head.output_names)
    assert len(spec.class_names) == 80 and spec.class_names[:3] == ("person", "bicycle", "car")
    for name in ("LICENSE-nanodet", "LICENSE-human-models", "PROVENANCE.md"):
        assert (spec.folder / name).stat().st_size > 500


@pytest.mark.parametrize("photo", sorted(REFERENCE["detections"]))
def test_detections_match_upstream_nanodet(detector, photo):
    """Letterbox + ONNX Runtime + numpy decoding against upstream v0.4.2's own pipeline (fixture)."""
    expected = REFERENCE["detections"][photo]
    image = cv2.imread(str(PHOTOS / photo), cv2.IMREAD_COLOR)
    ours = detector.detect(image, channel_order="BGR")
    assert len(ours) == len(expected) == 100
    # away from the 100-detection cut-off, where equal-looking scores could swap places
    solid = [e for e in expected if e["score"] > expected[-1]["score"] + 1e-4]
    box_diff, score_diff = 0.0, 0.0
    for e in solid:
        match = min((d for d in ours if d.class_id == e["class_id"]),
                    key=lambda d: np.abs(np.subtract(d.box, e["box"])).max() + abs(d.score - e["score"]))
        box_diff = max(box_diff, float(np.abs(np.subtract(match.box, e["box"])).max()))
        score_diff = max(score_diff, abs(match.score - e["score"]))
    print(f"{photo}: {len(solid)} detections compared, max box diff {box_diff:.2e} px, score {score_diff:.2e}")
    assert box_diff < 1e-3 and score_diff < 1e-5
    assert [d.class_id for d in ours[:5]] == [e["class_id"] for e in expected[:5]]


def test_vtest_frame_finds_people_and_cars(detector, spec):
    image = cv2.imread(str(PHOTOS / "vtest_frame397.jpg"), cv2.IMREAD_COLOR)
    rgb = detector.detect(image[..., ::-1].copy(), channel_order="RGB")
    confident = [spec.class_names[d.class_id] for d in rgb if d.score >= 0.5]
    assert confident.count("person") == 3 and "car" in confident
    assert rgb == detector.detect(image, channel_order="BGR")


def test_letterbox_is_upstreams_cv2_warp():
    rng = np.random.default_rng(0)
    for h, w in [(384, 512), (100, 333), (577, 769), (300, 200), (416, 416), (37, 1000)]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ratio = min(416 / w, 416 / h)  # nanodet v0.4.2 get_resize_matrix(keep_ratio=True)
        matrix = np.array([[ratio, 0, 208 - ratio * w / 2], [0, ratio, 208 - ratio * h / 2], [0, 0, 1]])
        ours, transform = letterbox(image, 416, 416)
        np.testing.assert_array_equal(ours, cv2.warpPerspective(image, matrix, dsize=(416, 416)))
        corners = np.array([[matrix[0, 2], matrix[1, 2], matrix[0, 2] + ratio * w, matrix[1, 2] + ratio * h]])
        np.testing.assert_allclose(transform.to_source(corners), [[0, 0, w, h]], atol=1e-9)


def test_preprocess_rejects_bad_images(spec):
    with pytest.raises(ImageError):
        preprocess(np.zeros((10, 10), np.uint8), spec, "BGR")
    with pytest.raises(ImageError):
        preprocess(np.zeros((10, 10, 3), np.float32), spec, "BGR")
    with pytest.raises(ImageError):
        preprocess(np.zeros((10, 10, 3), np.uint8), spec, "YUV")


def test_decoding_of_a_single_cell(spec):
    """One stride-8 cell (row 3, col 5; centre (44, 28)) sure of bin 2 on every side -> box 16 px around it."""
    head = spec.head
    outputs = {}
    for level in head.levels:
        n = level.rows * level.cols
        outputs[level.cls_output] = np.zeros((1, n, 80), np.float32)
        outputs[level.dis_output] = np.zeros((1, n, 44), np.float32)
    cls8, dis8 = outputs["cls_pred_stride_8"], outputs["dis_pred_stride_8"]
    cell = 3 * 52 + 5
    cls8[0, cell, 7] = 0.9
    cls8[0, cell, 2] = 0.8  # same box, other class: class-wise NMS keeps both
    dis8[0, cell].reshape(4, 11)[:, 2] = 50.0
    identity = Letterbox(1.0, 1.0, 0.0, 0.0, 416, 416)
    [detections] = head.decode(outputs, [identity])
    assert [(d.class_id, round(d.score, 6)) for d in detections] == [(7, 0.9), (2, 0.8)]
    np.testing.assert_allclose(detections[0].box, (28, 12, 60, 44), atol=1e-4)
    half = Letterbox(0.5, 0.5, 8.0, 0.0, 832, 832)  # source twice the input, shifted 8 px right in it
    np.testing.assert_allclose(head.decode(outputs, [half])[0][0].box, (40, 24, 104, 88), atol=1e-3)


def test_class_wise_nms():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    labels = np.array([0, 0, 1, 0])
    assert class_wise_nms(boxes, scores, labels, 0.6, 100).tolist() == [0, 2, 3]
    assert class_wise_nms(boxes, scores, labels, 0.95, 2).tolist() == [0, 1]
    assert class_wise_nms(boxes[:0], scores[:0], labels[:0], 0.6, 100).tolist() == []


def test_tail_of_front_is_the_whole_model(spec, model):
    parts = split_model(model, spec.split.tensor)
    assert parts.shape == spec.split.shape == (1, 64, 52, 52)
    image = cv2.imread(str(PHOTOS / "vtest_frame397.jpg"), cv2.IMREAD_COLOR)
    tensor, _ = preprocess(image, spec, "BGR")
    whole = run(model, {spec.input.name: tensor})
    [split_tensor] = run(parts.front, {spec.input.name: tensor}).values()
    assert split_tensor.shape == spec.split.shape
    tail = run(parts.tail, {spec.split.tensor: split_tensor})
    assert sorted(tail) == sorted(whole)
    diff = max(float(np.abs(tail[name] - whole[name]).max()) for name in whole)
    print(f"tail(front(x)) vs whole model: max abs diff {diff}")
    assert diff <= 1e-6
    assert len(parts.front.graph.node) + len(parts.tail.graph.node) >= len(model.graph.node)


def test_bad_split_tensor_name_is_a_typed_error(spec, model):
    with pytest.raises(ModelGraphError, match="backbone_stride_8") as err:
        split_model(model, "backbone_stride8")
    assert "no tensor 'backbone_stride8'" in str(err.value)
    with pytest.raises(ModelGraphError, match="does not separate"):
        split_model(model, "backbone_stride_16")  # the PAN neck also reads the stride-8 map


def _spec_data() -> dict:
    return yaml.safe_load((DEFAULT_TEACHER / "teacher.yaml").read_text())


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["head"].pop("family"), "missing field 'head.family'"),
    (lambda d: d["head"].update(family="yolo"), "unknown head family 'yolo'"),
    (lambda d: d["input"].update(resize="squash"), "input.resize"),
    (lambda d: d["input"].update(mean=[1, 2]), "three numbers"),
    (lambda d: d["head"].update(num_classes=81), "has 80 names"),
    (lambda d: d["head"].pop("reg_max"), "missing 'reg_max'"),
    (lambda d: d["head"]["outputs"].pop(16), "missing 16"),
    (lambda d: d.update(model="missing.onnx"), "does not exist"),
    (lambda d: d["split"].update(shape=[1, -128]), "split.shape"),
])
def test_teacher_yaml_errors_are_typed(edit, message):
    data = _spec_data()
    parse_teacher_spec(data, DEFAULT_TEACHER)
    edit(data)
    with pytest.raises(ConfigError, match=message):
        parse_teacher_spec(data, DEFAULT_TEACHER)


def test_missing_teacher_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_teacher_spec(tmp_path)
