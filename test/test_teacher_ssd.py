"""Open Images SSD teacher (ssd_anchors head family): the committed model is the one teacher.yaml describes,
our torch-free pipeline gives MediaPipe's detections on real photos (TFLite reference), the stretch resize
is MediaPipe's cv2 warp, and the model splits exactly at its stride-16 backbone tensor."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import yaml

from split_perception.errors import ConfigError, ModelGraphError
from split_perception.teachers import load_teacher_spec
from split_perception.teachers.detector import TeacherDetector, preprocess
from split_perception.teachers.letterbox import Letterbox, stretch
from split_perception.teachers.spec import parse_teacher_spec
from split_perception.teachers.split import split_model

from .test_teacher_nanodet import PHOTOS, run

TEACHER = Path(__file__).resolve().parents[1] / "split_perception" / "assets" / "teachers" / "oid_ssd_mobilenetv2"
REFERENCE = json.loads((PHOTOS / "oid_ssd_mobilenetv2_reference.json").read_text())


@pytest.fixture(scope="module")
def spec():
    return load_teacher_spec(TEACHER)


@pytest.fixture(scope="module")
def detector(spec):
    return TeacherDetector(spec, threads=2)


@pytest.fixture(scope="module")
def model(spec):
    return onnx.load(str(spec.model_path))


def test_model_is_the_one_teacher_yaml_describes(spec, model):
    files = spec.provenance
    assert hashlib.sha256(spec.model_path.read_bytes()).hexdigest() == files["model_onnx_sha256"]
    assert REFERENCE["tflite_sha256"] == files["tflite_sha256"]
    assert REFERENCE["tarball_sha256"] == files["tarball_sha256"]
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == [spec.input.name]
    assert sorted(o.name for o in model.graph.output) == sorted(spec.head.output_names)
    assert len(spec.class_names) == 23 and spec.class_names[3] == "Person" and spec.class_names[-1] == "Car"
    licence = (spec.folder / "LICENSE").read_text()
    assert '"license": "Apache-2.0"' in licence and "Apache License" in licence and "Version 2.0" in licence
    assert (spec.folder / "PROVENANCE.md").stat().st_size > 500


@pytest.mark.parametrize("photo", sorted(REFERENCE["detections"]))
def test_detections_match_mediapipe(spec, detector, photo):
    """Stretch + ONNX Runtime + numpy decoding against the TFLite model with MediaPipe's decoding (fixture),
    at the fixture's lower minimum score so that more detections are compared."""
    expected = REFERENCE["detections"][photo]
    low = dataclasses.replace(spec.head, score_threshold=REFERENCE["min_score_thresh"])
    image = cv2.imread(str(PHOTOS / photo), cv2.IMREAD_COLOR)
    tensor, transform = preprocess(image, spec, "BGR")
    [ours] = low.decode(detector.outputs(tensor), [transform])
    assert [d.class_id for d in ours] == [e["class_id"] for e in expected]
    box_diff = max((float(np.abs(np.subtract(d.box, e["box"])).max()) for d, e in zip(ours, expected)), default=0.0)
    score_diff = max((abs(d.score - e["score"]) for d, e in zip(ours, expected)), default=0.0)
    print(f"{photo}: {len(ours)} detections, max box diff {box_diff:.2e} px, score {score_diff:.2e}")
    assert box_diff < 1e-2 and score_diff < 1e-4


def test_vtest_frame_finds_people_at_mediapipes_threshold(spec, detector):
    """At teacher.yaml's minimum score (MediaPipe's 0.5): the two people walking in front, where the
    reference has them, and the van; the same from RGB and BGR input."""
    image = cv2.imread(str(PHOTOS / "vtest_frame397.jpg"), cv2.IMREAD_COLOR)
    ours = detector.detect(image[..., ::-1].copy(), channel_order="RGB")
    assert ours == detector.detect(image, channel_order="BGR")
    people = [d for d in ours if spec.class_names[d.class_id] == "Person"]
    expected = [e for e in REFERENCE["detections"]["vtest_frame397.jpg"]
                if e["score"] >= spec.head.score_threshold and e["class_id"] == spec.class_names.index("Person")]
    assert len(people) == len(expected) == 2
    for d, e in zip(people, expected):
        np.testing.assert_allclose(d.box, e["box"], atol=1e-2)
    assert {spec.class_names[d.class_id] for d in ours} == {"Person", "Car"}


def test_stretch_is_mediapipes_cv2_warp():
    """ImageToTensorCalculator's CPU path: boxPoints of the whole image -> getPerspectiveTransform ->
    warpPerspective (INTER_LINEAR, BORDER_REPLICATE), for down- and upscaling."""
    rng = np.random.default_rng(0)
    for h, w in [(384, 512), (342, 548), (100, 333), (577, 769), (300, 200), (300, 300), (37, 1000), (1080, 1920)]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        corners = cv2.boxPoints(((w / 2, h / 2), (w, h), 0.0)).astype(np.float32)
        target = np.array([[0, 300], [0, 0], [300, 0], [300, 300]], np.float32)
        matrix = cv2.getPerspectiveTransform(corners, target)
        ours, transform = stretch(image, 300, 300)
        np.testing.assert_array_equal(ours, cv2.warpPerspective(image, matrix, (300, 300), flags=cv2.INTER_LINEAR,
                                                                borderMode=cv2.BORDER_REPLICATE))
        np.testing.assert_allclose(transform.to_source(np.array([[0, 0, 300, 300]])), [[0, 0, w, h]], atol=1e-9)


def test_anchors_are_mediapipes(spec):
    """1917 anchors: 19x19 cells x 3 (reduced lowest layer), then 10x10, 5x5, 3x3, 2x2, 1x1 cells x 6."""
    anchors = spec.head.anchors
    assert anchors.shape == (1917, 4) and anchors.dtype == np.float32
    s0 = np.sqrt(2, dtype=np.float32) * np.float32(0.2)
    np.testing.assert_allclose(anchors[:3], [[0.5 / 19, 0.5 / 19, 0.1, 0.1], [0.5 / 19, 0.5 / 19, s0, 0.2 / s0 * 0.2],
                                             [0.5 / 19, 0.5 / 19, 0.2 / s0 * 0.2, s0]], rtol=1e-6)
    np.testing.assert_allclose(anchors[3, :2], [1.5 / 19, 0.5 / 19], rtol=1e-6)  # row-major: x moves first
    second = anchors[19 * 19 * 3:19 * 19 * 3 + 6]  # layer 1, scale 0.35, next 0.5
    np.testing.assert_allclose(second[:, :2], 0.05, rtol=1e-6)
    np.testing.assert_allclose(second[0, 2:], 0.35, rtol=1e-6)
    np.testing.assert_allclose(second[5, 2:], np.sqrt(0.35 * 0.5), rtol=1e-6)
    np.testing.assert_allclose(anchors[-6:, :2], 0.5)
    np.testing.assert_allclose(anchors[-1, 2:], np.sqrt(0.95), rtol=1e-6)  # last layer: next scale 1.0


def test_decoding_of_single_anchors(spec):
    """Zero encodings give the anchor itself; the scales divide the encodings; a score of exactly the
    minimum stays (MediaPipe drops only lower ones); NMS is per class."""
    head = spec.head
    boxes = np.zeros((1, 1917, 4), np.float32)
    logits = np.full((1, 1917, 24), -20.0, np.float32)
    last = 1917 - 6  # the 1x1 layer: centre (0.5, 0.5), ratio 1 at scale 0.95, ..., scale sqrt(0.95) last
    logits[0, last, 1 + 3] = 2.0  # Person, sigmoid 0.881
    logits[0, last + 5, 1 + 17] = 1.0  # Vehicle, 0.731, IoU 0.95 with the Person box, other class: kept
    logits[0, last + 1, 1 + 3] = 0.5  # Person again (ratio 2), IoU above 0.5 with the first: suppressed
    logits[0, last + 2, 0] = 30.0  # background only: never a detection
    cat = 19 * 19 * 3 + (4 * 10 + 4) * 6  # 10x10 layer, row 4, col 4: centre (135, 135) px, 105 px square
    logits[0, cat, 1 + 7] = 0.0  # Cat, sigmoid exactly 0.5
    boxes[0, cat] = [1.0, -2.0, 5 * np.log(2.0), 0.0]  # y + 0.1 * 105, x - 0.2 * 105, height doubled
    outputs = {"box_encodings": boxes, "class_predictions": logits}
    identity = Letterbox(1.0, 1.0, 0.0, 0.0, 300, 300)
    [detections] = head.decode(outputs, [identity])
    assert [(spec.class_names[d.class_id], round(d.score, 4)) for d in detections] == [
        ("Person", 0.8808), ("Vehicle", 0.7311), ("Cat", 0.5)]
    np.testing.assert_allclose(detections[0].box, [7.5, 7.5, 292.5, 292.5], atol=1e-3)
    side = np.sqrt(0.95) * 300
    np.testing.assert_allclose(detections[1].box, [150 - side / 2] * 2 + [150 + side / 2] * 2, atol=1e-3)
    np.testing.assert_allclose(detections[2].box, [61.5, 40.5, 166.5, 250.5], atol=1e-3)
    double = Letterbox(0.5, 0.25, 0.0, 0.0, 600, 1200)  # source stretched by 1/2 in x and 1/4 in y
    np.testing.assert_allclose(head.decode(outputs, [double])[0][0].box, [15, 30, 585, 1170], atol=1e-2)


def test_tail_of_front_is_the_whole_model(spec, model):
    parts = split_model(model, spec.split.tensor)
    assert parts.shape == spec.split.shape == (1, 64, 19, 19)
    image = cv2.imread(str(PHOTOS / "messi5.jpg"), cv2.IMREAD_COLOR)
    tensor, _ = preprocess(image, spec, "BGR")
    whole = run(model, {spec.input.name: tensor})
    [split_tensor] = run(parts.front, {spec.input.name: tensor}).values()
    assert split_tensor.shape == spec.split.shape
    tail = run(parts.tail, {spec.split.tensor: split_tensor})
    assert sorted(tail) == sorted(whole) == sorted(spec.head.output_names)
    diff = max(float(np.abs(tail[name] - whole[name]).max()) for name in whole)
    print(f"tail(front(x)) vs whole model: max abs diff {diff}")
    assert diff <= 1e-6


def test_bad_split_tensors_are_typed_errors(model):
    with pytest.raises(ModelGraphError, match="no tensor 'backbone_stride16'"):
        split_model(model, "backbone_stride16")
    with pytest.raises(ModelGraphError, match="does not separate"):
        split_model(model, "FeatureExtractor/MobilenetV2/expanded_conv_14/add")  # the head reads block 13 too


def _spec_data() -> dict:
    return yaml.safe_load((TEACHER / "teacher.yaml").read_text())


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["head"].update(family="ssd"), "unknown head family 'ssd'"),
    (lambda d: d["head"]["outputs"].pop("scores"), "missing 'scores'"),
    (lambda d: d["head"]["anchors"].pop("strides"), "missing 'strides'"),
    (lambda d: d["head"]["box_scales"].update(w=0), "out of range"),
    (lambda d: d["head"]["anchors"].update(aspect_ratios="wide"), "malformed"),
    (lambda d: d["head"].update(num_classes=24), "has 23 names"),
    (lambda d: d["input"].update(resize="squash"), "input.resize"),
])
def test_teacher_yaml_errors_are_typed(edit, message):
    data = _spec_data()
    parse_teacher_spec(data, TEACHER)
    edit(data)
    with pytest.raises(ConfigError, match=message):
        parse_teacher_spec(data, TEACHER)


def test_an_output_the_model_lacks_is_a_typed_error():
    data = _spec_data()
    data["head"]["outputs"]["boxes"] = "raw_outputs/box_encodings"
    with pytest.raises(ModelGraphError, match="raw_outputs/box_encodings"):
        TeacherDetector(parse_teacher_spec(data, TEACHER))


def test_outputs_of_the_wrong_shape_are_a_typed_error(spec):
    outputs = {"box_encodings": np.zeros((1, 1917, 4), np.float32),
               "class_predictions": np.zeros((1, 1917, 23), np.float32)}  # no background column
    with pytest.raises(ConfigError, match="1917 anchors of 24 score columns"):
        spec.head.decode(outputs, [Letterbox(1.0, 1.0, 0.0, 0.0, 300, 300)])
