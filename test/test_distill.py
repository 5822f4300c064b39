"""Distillation on unlabelled footage: a tiny run through the real NanoDet-g teacher from a clip and
photos, resumed; output distillation's loss; the `train` command's errors."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from split_perception.cli import main
from split_perception.config import TrainConfig
from split_perception.errors import CheckpointError, ConfigError, FootageError
from split_perception.models.checkpoint import load_model
from split_perception.training.distill import DistillTrainer, footage_views, output_distillation

from .conftest import small_config
from .test_onnx_teacher import PHOTOS


@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    """A folder as `make footage` writes it: clips/ (one short video) and photos/ (two real photos)."""
    root = tmp_path_factory.mktemp("footage")
    (root / "clips").mkdir()
    writer = cv2.VideoWriter(str(root / "clips" / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    base = cv2.resize(cv2.imread(str(PHOTOS / "vtest_frame397.jpg")), (320, 240))
    for i in range(6):
        writer.write(np.roll(base, 4 * i, axis=1))
    writer.release()
    shutil.copytree(PHOTOS, root / "photos", ignore=shutil.ignore_patterns("*.json", "*.md"))
    return root


def _config(tmp_path, footage, **kw) -> TrainConfig:
    return TrainConfig(**{"stage": "distill", "train_data": str(footage), "output_dir": str(tmp_path / "run"),
                          "max_train_images": 8, "frame_stride": 2, "crops_per_photo": 1, "pca_init": 4, "epochs": 1,
                          "batch_size": 4, "task_weight": 0.5, "rate_weight": 1.0, "num_threads": 2, **kw})


def test_views_cover_clips_and_photos_mirrored(footage):
    views = list(footage_views([str(footage)], frame_stride=2, crops_per_photo=1, seed=0))
    assert len(views) == 3 * 2 + 3 * 2 * 2  # 3 clip frames, 3 photos with one crop each; each also mirrored
    assert np.array_equal(views[1], views[0][:, ::-1])
    with pytest.raises(FootageError):
        list(footage_views([str(footage / "nowhere")], 1, 0, 0))


def test_tiny_distillation_trains_resumes_and_writes_a_loadable_student(tmp_path, footage):
    logs = []
    first = DistillTrainer(small_config(), _config(tmp_path, footage), progress=False, log=logs.append)
    assert len(first.cache) == 8 and any("PCA" in line for line in logs)
    path = first.run()
    record = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])
    assert record["epoch"] == 1 and record["out"] > 0 and record["kd"] > 0 and record["bpp"] > 0
    model, _ = load_model(path)
    assert model.cfg.teacher == "nanodet_g"
    resumed = DistillTrainer(small_config(), _config(tmp_path, footage, epochs=2), progress=False, log=logs.append)
    assert resumed.epoch == 1 and any("resumed" in line for line in logs)  # more epochs: a resume
    with pytest.raises(CheckpointError, match="another configuration"):  # another rate weight: not a resume
        DistillTrainer(small_config(), _config(tmp_path, footage, rate_weight=2.0), progress=False, log=logs.append)


def test_output_distillation_is_zero_only_for_the_teacher_outputs():
    torch.manual_seed(0)
    t = {"cls": torch.rand(2, 10, 3) * 0.5, "box": torch.randn(2, 10, 8)}
    same = output_distillation({k: v.clone() for k, v in t.items()}, t, ("cls",))
    other = output_distillation({"cls": t["cls"].flip(1), "box": t["box"] + 0.5}, t, ("cls",))
    entropy = output_distillation({"cls": t["cls"], "box": t["box"]}, t, ("cls",))
    assert other > same and same == pytest.approx(entropy)


def test_train_command_refuses_distill_without_an_onnx_teacher(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {encoder: front}\ntrain: {stage: distill, train_data: nowhere}\n")
    assert main(["train", "--config", str(cfg)]) == 2
    assert "needs model.teacher" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        TrainConfig(stage="distill", frame_stride=0).validate()


def test_torchrun_two_cpu_processes_train_one_model(tmp_path, footage):
    """`torchrun --nproc_per_node 2` (gloo on the CPU): both processes train on their half of the batches
    with averaged gradients; rank 0 alone writes the log and the checkpoint."""
    import os
    import socket
    import subprocess
    import sys

    import yaml

    from split_perception.config import to_dict

    cfg = tmp_path / "ddp.yaml"
    train = {k: v for k, v in to_dict(_config(tmp_path, footage, num_threads=1)).items()}
    model = {"teacher": "nanodet_g", "encoder": "front", "bottleneck_channels": 8, "decoder_channels": 16,
             "decoder_layers": 1}
    cfg.write_text(yaml.safe_dump({"model": model, "train": train}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "split_perception.cli",
                          "train", "--config", str(cfg), "--quiet"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("final model:") == 2 and res.stdout.count("wrote ") == 1, res.stdout
    records = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert len(records) == 1 and json.loads(records[0])["epoch"] == 1
    load_model(tmp_path / "run" / "model.pt")


def test_linear_decoders_start_as_the_pca_reconstruction(tmp_path, footage):
    """With `decoder_linear`, every width's decoder starts as the linear reconstruction from the PCA the
    projection starts from: what the projection keeps comes back, and more channels give back more."""
    from split_perception.models.pca import PCA, positions

    trainer = DistillTrainer(small_config(bottleneck_channels=16, decoder_linear=True), _config(tmp_path, footage),
                             progress=False, log=lambda *_: None)
    m = trainer.model.eval()
    f = torch.from_numpy(trainer.cache.features[:2].astype(np.float32))
    pca = PCA.fit(torch.cat([positions(x) for x in f]).double())
    errors = []
    with torch.no_grad():
        for i, c in enumerate(m.encoder.bottleneck_channels):
            m.set_width(m.widths[i])
            z = m.decoder_for(i)(m.encoder.project(f))
            errors.append(float(((z - f) ** 2).mean() / ((f - f.mean((0, 2, 3), keepdim=True)) ** 2).mean()))
            assert errors[-1] < 1.0 - pca.explained()[c - 1] + 0.15, (c, errors[-1])
    assert errors == sorted(errors, reverse=True), errors


@pytest.mark.parametrize("mode", ["noise", "rounded"])
def test_decoders_train_on_rounded_symbols_only_when_asked(tmp_path, footage, mode):
    """`decoder_input: rounded`: the decoders see the symbols packets carry (integers around the medians);
    `noise` (CompressAI's way): the entropy model's noisy values. The gradient reaches the projection both ways."""
    import random

    trainer = DistillTrainer(small_config(), _config(tmp_path, footage, decoder_input=mode), progress=False,
                             log=lambda *_: None)
    m, seen = trainer.model, {}

    def keep_input(i):
        def hook(module, inputs, output):
            seen.setdefault(i, (inputs[0] - m.latent_codecs[i].medians[:, None, None]).detach().clone())  # before the aux step
        return hook

    hooks = [d.register_forward_hook(keep_input(i)) for i, d in enumerate(m.decoders)]
    trainer._step(*trainer._batch(np.arange(4)), random.Random(0))
    for h in hooks:
        h.remove()
    assert seen and m.encoder.proj.weight.grad is not None and m.encoder.proj.weight.grad.abs().sum() > 0
    for i, offsets in seen.items():
        integral = torch.allclose(offsets, offsets.round(), atol=1e-4)
        assert integral == (mode == "rounded"), (mode, i)
    with pytest.raises(ConfigError, match="decoder_input"):
        _config(tmp_path, footage, decoder_input="straight").validate()


def test_teacher_cache_is_keyed_by_the_split_tensor(tmp_path, footage):
    """Two cuts of one ONNX file (same SHA-256) get caches of their own, each of its split tensor's shape."""
    from split_perception.teachers.spec import load_teacher_spec, resolve_teacher
    from split_perception.training.distill import FeatureCache

    bundled = resolve_teacher("nanodet_g")
    other = next(t for t in ("Conv_6:0", "backbone_stride_8") if t != load_teacher_spec(bundled).split.tensor)
    assert main(["import-teacher", str(bundled / "model.onnx"), "--split", other, "--like", "nanodet_g",
                 "--name", "nanodet_g", "--out", str(tmp_path / "recut")]) == 0
    tc = _config(tmp_path, footage, max_train_images=2)
    caches = [FeatureCache.build(tmp_path / "cache", cfg, tc, progress=False)
              for cfg in (small_config(), small_config(teacher=str(tmp_path / "recut")))]
    assert caches[0].folder != caches[1].folder
    assert caches[1].features.shape[1:] == tuple(load_teacher_spec(tmp_path / "recut").split.shape[1:])
    assert caches[0].features.shape[1:] == tuple(load_teacher_spec(bundled).split.shape[1:])
