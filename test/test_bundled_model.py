"""The bundled models: load offline, every width works; the synthetic one's bytes grow with width and it finds
its shapes; the default (the NanoDet-g student) finds a person where its teacher does."""

import numpy as np

from split_perception.data.synthetic import render_scene
from split_perception.models.checkpoint import load_model
from split_perception.offboard.decoder import OffboardDecoder
from split_perception.onboard.encoder import OnboardEncoder


def test_synthetic_model_bytes_strictly_increase_with_width(synthetic_model_path):
    enc, dec = OnboardEncoder("synthetic"), OffboardDecoder("synthetic")
    assert enc.fingerprint == load_model(synthetic_model_path)[1]
    rng = np.random.default_rng(11)
    frames = [render_scene(rng, (480, 640))[0] for _ in range(6)]
    means = []
    for w in enc.widths:
        enc.set_width(w)
        sizes = []
        for i, f in enumerate(frames):
            data = enc.encode(f, frame_id=i)
            assert dec.decode(data).width == w
            sizes.append(len(data))
        means.append(np.mean(sizes))
    assert all(a < b for a, b in zip(means, means[1:])), means
    assert means[-1] < 20_000  # a 640x480 frame is 921,600 bytes raw


def test_synthetic_model_finds_objects(synthetic_model_path):
    """A frame with objects gets detections of the right classes at the widest width (a sanity floor)."""
    enc, dec = OnboardEncoder(synthetic_model_path), OffboardDecoder(synthetic_model_path)
    rng = np.random.default_rng(21)
    hits = 0
    for i in range(5):
        image, objects = render_scene(rng, (240, 320))
        found = {d.label_id for d in dec.decode(enc.encode(image, frame_id=i)).detections}
        hits += len(found & {o.label for o in objects})
    assert hits >= 5


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union


def test_default_student_finds_the_astronaut_where_the_teacher_does_at_every_width(bundled_model_path):
    """scikit-image's astronaut (never trained on): every width of the default model, the NanoDet-g
    student, puts a `person` box where the teacher puts one."""
    from skimage.data import astronaut

    rgb = astronaut()
    enc, dec = OnboardEncoder(), OffboardDecoder()
    assert enc.fingerprint == load_model(bundled_model_path)[1] and enc.cfg.teacher == "nanodet_g"
    people = [d.box for d in dec.teacher(rgb)[0] if d.label == "person"]
    assert people
    for w in enc.widths:
        enc.set_width(w)
        found = [d.box for d in dec.decode(enc.encode(rgb, frame_id=1)).detections if d.label == "person"]
        assert any(_iou(p, f) >= 0.5 for p in people for f in found), (w, people, found)
