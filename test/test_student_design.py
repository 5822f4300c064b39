"""The student's design options: slimmable GDN, the teacher-front encoder started from PCA, split points, per-width rate weights, fine-tuning
from a head-distilled checkpoint, the teacher taken from a student checkpoint, the device choice, a shared decoder."""

from __future__ import annotations

import json

import pytest
import torch

from split_perception.config import ModelConfig, TrainConfig
from split_perception.errors import CheckpointError, ConfigError
from split_perception.models.checkpoint import load_model, save_checkpoint
from split_perception.models.gdn import GDN
from split_perception.models.pca import PCA, positions, training_samples
from split_perception.models.split_model import SplitModel
from split_perception.training.trainer import Trainer, resolve_device

from .conftest import tiny_config


def test_gdn_on_a_channel_prefix_uses_the_leading_parameters():
    torch.manual_seed(0)
    wide, narrow = GDN(8), GDN(4)
    with torch.no_grad():
        wide.beta.uniform_(0.5, 1.5)
        wide.gamma.uniform_(0, 0.5)
        narrow.beta.copy_(wide.beta[:4])
        narrow.gamma.copy_(wide.gamma[:4, :4])
    x = torch.randn(2, 4, 5, 6)
    assert torch.allclose(wide(x), narrow(x))
    with pytest.raises(ValueError, match="8 channels"):
        wide(torch.randn(1, 9, 2, 2))
    y = GDN(4, inverse=True)(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_split_points_and_their_strides():
    assert tiny_config(split_index=5).split_stride == 8 and tiny_config(split_index=4).split_stride == 4
    model = SplitModel(tiny_config(split_index=5, gdn=True))
    x = torch.zeros(1, 3, 96, 128)
    assert model(x)["z_hat"].shape == model.teacher.front(x).shape
    with pytest.raises(ConfigError, match="split_index"):
        ModelConfig(split_index=2).validate()
    with pytest.raises(ConfigError, match="decoder_layers"):
        ModelConfig(decoder_layers=0).validate()


def test_rate_weights_per_width_and_device_are_checked():
    assert TrainConfig(rate_weight=0.1).rate_weights(3) == [0.1] * 3
    assert TrainConfig(rate_weight=[2, 1, 0.5]).rate_weights(3) == [2.0, 1.0, 0.5]
    with pytest.raises(ConfigError, match="3 values for 4 widths"):
        TrainConfig(rate_weight=[2, 1, 0.5]).rate_weights(4)
    for bad in ([], [0.1, -1.0], "x"):
        with pytest.raises(ConfigError, match="rate_weight"):
            TrainConfig(teacher_checkpoint="t.pt", rate_weight=bad).validate()
    with pytest.raises(ConfigError, match="device"):
        TrainConfig(teacher_checkpoint="t.pt", device="tpu").validate()
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            resolve_device("cuda")
        assert resolve_device("auto").type == "cpu"


def _student(tmp_path, tiny_data, name, mc, **kw):
    tc = TrainConfig(stage="student", train_data=str(tiny_data), val_data=str(tiny_data), output_dir=str(tmp_path / name),
                     epochs=1, batch_size=4, eval_every=0, max_eval_images=4, device="cpu", **kw)
    return Trainer(mc, tc, progress=False, log=lambda *_: None)


def test_fine_tuning_starts_from_the_head_distilled_student(tmp_path, tiny_data, tiny_model_path):
    mc = tiny_config(split_index=5, gdn=True)
    # the teacher comes from a student checkpoint (the one frozen inside it)
    head = _student(tmp_path, tiny_data, "head", mc, teacher_checkpoint=str(tiny_model_path), task_weight=0.0,
                    rate_weight=[1.0, 0.5, 0.2, 0.1]).run()
    log = json.loads((tmp_path / "head/log.jsonl").read_text().splitlines()[-1])
    assert log["task"] == 0.0 and {"bpp_w0", "bpp_w3"} <= set(log)
    fine = _student(tmp_path, tiny_data, "fine", mc, teacher_checkpoint=str(tiny_model_path), student_init=str(head))
    init, _ = load_model(head)
    assert torch.equal(fine.model.encoder.g_a[0].weight, init.encoder.g_a[0].weight)
    assert fine.model.encoder.g_a[0].weight.requires_grad and not fine.model.teacher.det.head.parameters().__next__().requires_grad
    load_model(fine.run())
    # another architecture, or another teacher, is refused
    with pytest.raises(CheckpointError, match="another model configuration"):
        _student(tmp_path, tiny_data, "bad", tiny_config(split_index=5), teacher_checkpoint=str(tiny_model_path),
                 student_init=str(head))
    torch.manual_seed(5)
    other = tmp_path / "other_teacher.pt"
    save_checkpoint(SplitModel(tiny_config()), other)
    with pytest.raises(CheckpointError, match="another teacher"):
        _student(tmp_path, tiny_data, "bad2", mc, teacher_checkpoint=str(other), student_init=str(head))


def test_front_encoder_starts_as_the_pca_baseline_and_keeps_the_teacher_front(tmp_path, tiny_data, tiny_model_path):
    mc = tiny_config(split_index=5, encoder="front")  # 16 channels at the split, bottleneck 2/4/6/8
    trainer = _student(tmp_path, tiny_data, "front", mc, teacher_checkpoint=str(tiny_model_path), pca_init=6,
                       pca_step=1.5, rate_weight=[1.0, 0.5, 0.2, 0.1])
    model = trainer.model
    stem = model.teacher.det.backbone.features[0]
    assert all(a is b for a, b in zip(model.encoder.front, stem))  # shared modules, not a copy
    assert not any(p.requires_grad for p in model.encoder.front.parameters())
    # at the start, width 1.0 computes exactly the PCA baseline's coefficients over its step
    pca = PCA.fit(training_samples(model.teacher, tiny_data, 5, 6, progress=False))
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        got = model.encoder(x)
        want = pca.project(positions(model.teacher.front(x[:1])), 8) / (1.5 * pca.rms())
    assert torch.allclose(positions(got[:1]).double(), want, atol=1e-3)
    front_before = {k: v.clone() for k, v in model.encoder.front.state_dict().items()}
    trained, _ = load_model(trainer.run())
    for k, v in trained.encoder.front.state_dict().items():
        assert torch.allclose(v.float(), front_before[k].half().float()), k  # frozen (fp16 in the checkpoint)
    with pytest.raises(ConfigError, match="'front' encoder"):
        _student(tmp_path, tiny_data, "conv_pca", tiny_config(split_index=5), teacher_checkpoint=str(tiny_model_path),
                 pca_init=4)
    with pytest.raises(ConfigError, match="exceeds the 16 channels"):
        SplitModel(tiny_config(split_index=5, encoder="front", bottleneck_channels=20))
    with pytest.raises(ConfigError, match="encoder must be one of"):
        ModelConfig(encoder="resnet").validate()


def test_a_shared_decoder_serves_every_width_and_starts_from_the_widest(tmp_path, tiny_data):
    from split_perception.offboard.decoder import OffboardDecoder
    from split_perception.onboard.encoder import OnboardEncoder
    from split_perception.training.entropy_refit import rescale_gain

    src = tmp_path / "front_ensemble.pt"
    save_checkpoint(SplitModel(tiny_config(split_index=5, encoder="front")), src)
    ensemble, _ = load_model(src)
    mc = tiny_config(split_index=5, encoder="front", shared_decoder=True)
    trainer = _student(tmp_path, tiny_data, "shared", mc, teacher_checkpoint=str(src), student_init=str(src))
    size = lambda m: sum(p.numel() for p in m.parameters())
    assert size(trainer.model.decoders) == size(ensemble.decoders[3]) < size(ensemble.decoders)
    for k, v in ensemble.decoders[3].state_dict().items():  # the widest width's decoder, taken whole
        assert torch.equal(trainer.model.decoders.decoder.state_dict()[k], v), k
    path = trainer.run()
    model, _ = load_model(path)
    assert model.cfg.shared_decoder and all(model.decoder_for(i) is model.decoders for i in range(4))
    enc, dec = OnboardEncoder.from_model(model, "0" * 64), OffboardDecoder.from_model(model, "0" * 64)
    frame = (torch.rand(96, 128, 3) * 255).byte().numpy()
    for w in model.widths:  # every width's packet decodes through the one decoder
        enc.set_width(w)
        assert dec.decode(enc.encode(frame, frame_id=1)).width == w
    with pytest.raises(ConfigError, match="shared decoder"):
        rescale_gain(model, 1.0, 1.5)
    with pytest.raises(CheckpointError, match="another model configuration"):  # shared -> ensemble is refused
        _student(tmp_path, tiny_data, "back", tiny_config(split_index=5, encoder="front"),
                 teacher_checkpoint=str(path), student_init=str(path))


def test_train_widths_fine_tunes_one_width_on_a_coarse_grid_and_leaves_the_others_bit_exact(tmp_path, tiny_data):
    from split_perception.codec.packet import parse
    from split_perception.offboard.decoder import OffboardDecoder
    from split_perception.onboard.encoder import OnboardEncoder

    src = tmp_path / "front.pt"
    save_checkpoint(SplitModel(tiny_config(split_index=5, encoder="front")), src)
    mc = tiny_config(split_index=5, encoder="front", coarse_widths=(0.25,))
    trainer = _student(tmp_path, tiny_data, "narrowest", mc, teacher_checkpoint=str(src), student_init=str(src),
                       train_widths=[0.25], rate_weight=[5.0, 0.5, 0.2, 0.1])
    assert trainer.trained_widths == [0]
    trained = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trained and all(n.startswith(("encoder.gain.0", "decoders.0.", "latent_codecs.0.")) for n in trained)
    before, _ = load_model(src)
    after, _ = load_model(trainer.run())
    old, new = before.state_dict(), after.state_dict()
    moved = {k for k in new if not torch.equal(old[k], new[k])}
    assert "encoder.gain.0" in moved and any(k.startswith("decoders.0.") for k in moved)
    assert all(k.startswith(("encoder.gain.0", "decoders.0.", "latent_codecs.0.")) for k in moved), sorted(moved)
    # the coarse width codes a quarter of the positions (stride 16 for 96x128), the others the split's grid
    enc, dec = OnboardEncoder.from_model(after, "0" * 64), OffboardDecoder.from_model(after, "0" * 64)
    frame = (torch.rand(96, 128, 3) * 255).byte().numpy()
    for w, grid in [(0.25, (6, 8)), (1.0, (12, 16))]:
        enc.set_width(w)
        packet = enc.encode(frame, frame_id=1)
        assert parse(packet).latent_shape[1:] == grid and dec.decode(packet).width == w
    with pytest.raises(ConfigError, match="multiples of 16"):
        tiny_config(split_index=5, encoder="front", coarse_widths=(0.25,), input_size=(96, 120))
    with pytest.raises(ConfigError, match="coarse_widths must be some of the widths"):
        tiny_config(split_index=5, encoder="front", coarse_widths=(0.3,))
    with pytest.raises(ConfigError, match="train_widths"):
        TrainConfig(teacher_checkpoint="t.pt", train_widths=0.25).validate()
    with pytest.raises(ConfigError, match="'front' encoder"):
        _student(tmp_path, tiny_data, "conv", tiny_config(split_index=5), teacher_checkpoint=str(src),
                 train_widths=[0.25])
