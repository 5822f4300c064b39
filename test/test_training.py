"""Tiny training runs: each stage lowers its loss, resume picks up where it stopped, several datasets train
together, and every committed config loads."""

import json
from pathlib import Path

import pytest
import torch

from split_perception.config import TrainConfig, load_config
from split_perception.errors import ConfigError
from split_perception.models.checkpoint import load_model
from split_perception.training.trainer import Trainer, sandwich_widths

from .conftest import tiny_config


def _train(tmp_path, tiny_data, stage, epochs, **kw):
    tc = TrainConfig(stage=stage, train_data=str(tiny_data), val_data=str(tiny_data), output_dir=str(tmp_path / stage),
                     epochs=epochs, batch_size=4, lr=3e-3, eval_every=0, max_eval_images=4, **kw)
    return Trainer(tiny_config(), tc, progress=False, log=lambda *_: None)


def test_two_stage_training_lowers_loss_and_resumes(tmp_path, tiny_data):
    teacher = _train(tmp_path, tiny_data, "teacher", 3)
    path = teacher.run()
    hist = [json.loads(l) for l in (tmp_path / "teacher/log.jsonl").read_text().splitlines()]
    assert hist[-1]["loss"] < hist[0]["loss"]
    load_model(path, kind="teacher")

    student = _train(tmp_path, tiny_data, "student", 3, teacher_checkpoint=str(path), rate_weight=0.05)
    student.tc.epochs = 2
    student.run()
    resumed = _train(tmp_path, tiny_data, "student", 3, teacher_checkpoint=str(path), rate_weight=0.05)
    assert resumed.epoch == 2  # picked up last.pt
    final = resumed.run()
    hist = [json.loads(l) for l in (tmp_path / "student/log.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["loss"] < hist[0]["loss"] and hist[-1]["kd"] < hist[0]["kd"]
    model, _ = load_model(final)
    assert len(model.widths) == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_gives_a_checkpoint_that_runs_on_the_cpu(tmp_path, tiny_data):
    """Both stages on CUDA (bfloat16 autocast, DataLoader workers); the checkpoints load and code on the CPU."""
    from split_perception.offboard.decoder import OffboardDecoder
    from split_perception.onboard.encoder import OnboardEncoder

    teacher = _train(tmp_path, tiny_data, "teacher", 3, device="cuda", num_workers=2)
    assert teacher.device.type == "cuda"
    path = teacher.run()
    student = _train(tmp_path, tiny_data, "student", 3, teacher_checkpoint=str(path), rate_weight=0.05,
                     device="cuda", num_workers=2)
    final = student.run()
    hist = [json.loads(l) for l in (tmp_path / "student/log.jsonl").read_text().splitlines()]
    assert hist[-1]["loss"] < hist[0]["loss"] and hist[-1]["kd"] < hist[0]["kd"]
    model, _ = load_model(final)
    assert next(model.parameters()).device.type == "cpu"
    enc, dec = OnboardEncoder.from_model(model, "0" * 64), OffboardDecoder.from_model(model, "0" * 64)
    frame = (torch.rand(96, 128, 3) * 255).byte().numpy()
    for w in model.widths:
        enc.set_width(w)
        assert dec.decode(enc.encode(frame, frame_id=1)).width == w


def test_sandwich_rule_takes_widest_and_narrowest():
    import random

    rng = random.Random(0)
    for _ in range(20):
        idx = sandwich_widths((0.25, 0.5, 0.75, 1.0), 1, rng)
        assert idx[:2] == [3, 0] and len(idx) == 3 and idx[2] in (1, 2)


def test_several_training_sets_are_trained_on_together(tmp_path, tiny_data):
    one = _train(tmp_path, tiny_data, "teacher", 1, max_train_images=5)
    tc = TrainConfig(**{**vars(one.tc), "train_data": [str(tiny_data), str(tiny_data)]})
    both = Trainer(tiny_config(), tc, progress=False, log=lambda *_: None)
    assert len(one.train_ds) == 5 and len(both.train_ds) == 10  # the limit holds per set
    for bad in ([], [""], [str(tiny_data), 3]):
        with pytest.raises(ConfigError, match="train_data"):
            TrainConfig(train_data=bad, teacher_checkpoint="x").validate()


def test_every_committed_config_loads():
    configs = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))
    assert len(configs) >= 5
    for path in configs:
        mc, tc = load_config(path)
        tc.validate().rate_weights(len(mc.widths))
