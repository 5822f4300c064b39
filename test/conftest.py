"""Shared fixtures: a tiny synthetic dataset, tiny (untrained) students of the synthetic and NanoDet-g teachers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from split_perception.config import ModelConfig
from split_perception.data.synthetic import make_dataset
from split_perception.harness.domains import pick_domain
from split_perception.model_files import BUNDLED_MODELS, DEFAULT_MODEL
from split_perception.models.checkpoint import save_checkpoint
from split_perception.models.split_model import SplitModel

torch.set_num_threads(2)

TINY = dict(input_size=(96, 128), backbone_width_mult=0.25, decoder_channels=16, seg_inter_channels=16,
            encoder_channels=(8, 16), bottleneck_channels=8)


def tiny_config(**overrides) -> ModelConfig:
    return ModelConfig(**{**TINY, **overrides}).validate()


def small_config(**overrides) -> ModelConfig:
    """A small student of the bundled NanoDet-g teacher (8 bottleneck channels, one-layer decoders)."""
    return ModelConfig(**{"teacher": "nanodet_g", "encoder": "front", "bottleneck_channels": 8, "decoder_channels": 16,
                          "decoder_layers": 1, **overrides}).validate()


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_data")
    make_dataset(root, 12, seed=3, size=(96, 128), progress=False)
    return root


def untrained_checkpoint(config: ModelConfig, path: Path, seed: int = 0) -> Path:
    """A checkpoint of an untrained model of `config` (weights drawn from `seed`) written to `path`:
    the real file format, tables and loaders, without the minutes of training."""
    torch.manual_seed(seed)
    save_checkpoint(SplitModel(config), path)
    return path


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """An untrained `tiny_config` model's checkpoint: the synthetic-teacher path end to end, fast."""
    return untrained_checkpoint(tiny_config(), tmp_path_factory.mktemp("tiny_model") / "model.pt")


@pytest.fixture(scope="session")
def small_student_path(tmp_path_factory):
    """An untrained `small_config` student's checkpoint: the ONNX-teacher path end to end, fast."""
    return untrained_checkpoint(small_config(), tmp_path_factory.mktemp("small_student") / "model.pt")


@pytest.fixture(scope="session")
def bundled_model_path():
    """The bundled default model (the NanoDet-g student), what a user gets without `--model`."""
    assert DEFAULT_MODEL.is_file(), f"bundled model missing: {DEFAULT_MODEL}"
    return DEFAULT_MODEL


@pytest.fixture(scope="session")
def synthetic_model_path():
    """The bundled synthetic-shapes model (`--model synthetic`): for tests of machinery any model runs
    (nodes, link, faults), as it is small and fast, and for what only it has (segmentation, ground truth)."""
    path = BUNDLED_MODELS["synthetic"]
    assert path.is_file(), f"bundled model missing: {path}"
    return path


@pytest.fixture
def domain():
    """A ROS_DOMAIN_ID of this test's own."""
    return pick_domain()
