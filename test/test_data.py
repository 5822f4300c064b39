"""Synthetic scenes and COCO-format loading."""

import json

import numpy as np
import pytest
import torch

from split_perception.config import DEFAULT_CLASSES
from split_perception.data.coco import CocoSceneDataset, collate
from split_perception.data.synthetic import STYLES, make_dataset, render_scene
from split_perception.errors import ConfigError


def test_scenes_are_deterministic_from_seed():
    a, oa = render_scene(np.random.default_rng(5))
    b, ob = render_scene(np.random.default_rng(5))
    c, _ = render_scene(np.random.default_rng(6))
    assert np.array_equal(a, b) and len(oa) == len(ob)
    assert not np.array_equal(a, c)


def test_dataset_is_valid_coco_with_masks(tiny_data):
    coco = json.loads((tiny_data / "annotations.json").read_text())
    assert len(coco["images"]) == 12
    assert [c["name"] for c in coco["categories"]] == list(DEFAULT_CLASSES)
    assert coco["annotations"], "scenes must contain objects"
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        assert w > 0 and h > 0 and a["area"] > 0 and "counts" in a["segmentation"]
    ds = CocoSceneDataset(tiny_data, (96, 128), (0.5,) * 3, (0.5,) * 3)
    x, target, sem, image_id = ds[0]
    assert x.shape == (3, 96, 128) and sem.shape == (96, 128)
    assert target["boxes"].shape[1] == 4 and (target["boxes"][:, 2:] > target["boxes"][:, :2]).all()
    assert set(torch.unique(sem).tolist()) <= set(range(len(DEFAULT_CLASSES) + 1))
    images, targets, masks, ids = collate([ds[0], ds[1]])
    assert images.shape == (2, 3, 96, 128) and len(targets) == 2 and ids == ds.ids[:2]


def test_same_seed_same_files(tmp_path):
    make_dataset(tmp_path / "a", 3, seed=9, size=(64, 96), progress=False)
    make_dataset(tmp_path / "b", 3, seed=9, size=(64, 96), progress=False)
    assert (tmp_path / "a/annotations.json").read_text() == (tmp_path / "b/annotations.json").read_text()


def test_hard_scenes_have_smaller_and_more_objects(tmp_path):
    def stats(style):
        scenes = [render_scene(np.random.default_rng(s), style=STYLES[style])[1] for s in range(40)]
        objects = [o for sc in scenes for o in sc]
        return len(objects) / len(scenes), float(np.median([o.mask.sum() for o in objects]))
    (n_default, px_default), (n_hard, px_hard) = stats("default"), stats("hard")
    assert n_hard > 1.3 * n_default and px_hard < 0.5 * px_default
    a, _ = render_scene(np.random.default_rng(3), style=STYLES["hard"])
    assert np.array_equal(a, render_scene(np.random.default_rng(3), style=STYLES["hard"])[0])
    make_dataset(tmp_path / "h", 2, seed=1, size=(64, 96), progress=False, style="hard")
    assert json.loads((tmp_path / "h/annotations.json").read_text())["info"]["style"] == "hard"
    with pytest.raises(ValueError, match="scene style"):
        make_dataset(tmp_path / "x", 1, style="impossible")


def test_missing_dataset_has_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="make-dataset"):
        CocoSceneDataset(tmp_path, (96, 128), (0.5,) * 3, (0.5,) * 3)


def test_image_codecs_round_trip_and_refuse_unknown_formats():
    from split_perception.data.image_codecs import decode_image, encode_image

    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[:, :16] = (255, 0, 0)  # red left half: channel order must survive the BGR round trip
    for fmt, q in (("jpeg", 95), ("webp", 90), ("png", 3)):
        out = decode_image(encode_image(rgb, fmt, q))
        assert out.shape == rgb.shape and out[12, 4, 0] > 200 and out[12, 4, 2] < 50
    with pytest.raises(ConfigError, match="image format"):
        encode_image(rgb, "gif", 50)
