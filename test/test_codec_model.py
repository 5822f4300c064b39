"""Model + bitstream: bit-exact across processes, width switching, foreign packets, checkpoints."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import split_perception.codec.checkpoint as ckpt_mod
from split_perception.codec.checkpoint import (
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from split_perception.codec.packet import parse
from split_perception.data.synthetic import render_scene
from split_perception.errors import (
    CheckpointError,
    ImageError,
    ModelMismatchError,
    PacketError,
    WidthError,
)
from split_perception.models.split_model import SplitModel
from split_perception.offboard import OffboardDecoder
from split_perception.onboard import OnboardEncoder

from .conftest import tiny_config


def frame(seed=0, size=(120, 160)):
    return render_scene(np.random.default_rng(seed), size)[0]


def test_cross_process_encode_is_bit_exact(tiny_model_path, tmp_path):
    """Encode in a separate process; the decoded symbols equal the in-process quantized bottleneck."""
    np.save(tmp_path / "img.npy", frame(1))
    code = textwrap.dedent(f"""
        import numpy as np, torch
        torch.set_num_threads(1)
        from split_perception.onboard import OnboardEncoder
        enc = OnboardEncoder({str(tiny_model_path)!r})
        enc.set_width(0.5)
        open({str(tmp_path / 'pkt.spf')!r}, 'wb').write(enc.encode(np.load({str(tmp_path / 'img.npy')!r}), 7, 99))
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    data = (tmp_path / "pkt.spf").read_bytes()
    dec = OffboardDecoder(tiny_model_path)
    packet = parse(data)
    assert (packet.frame_id, packet.stamp_ns, packet.width) == (7, 99, 0.5)
    c, h, w = packet.latent_shape
    m = dec.model
    y_remote = m.entropy_decode([packet.payload + bytes(4096)], (h, w), packet.width_index)
    enc = OnboardEncoder(tiny_model_path)
    enc.set_width(0.5)
    with torch.no_grad():
        y_local = enc.model.quantized_bottleneck(enc.preprocess(np.load(tmp_path / "img.npy")))
    assert torch.equal(y_remote, y_local)
    assert enc.encode(np.load(tmp_path / "img.npy"), 7, 99) == data  # byte-identical bitstream too
    assert dec.decode(data).frame_id == 7


def test_every_width_decodes_and_switch_reloads_nothing(tiny_model_path, monkeypatch):
    enc, dec = OnboardEncoder(tiny_model_path), OffboardDecoder(tiny_model_path)
    ptrs = {n: p.data_ptr() for n, p in enc.model.named_parameters()}
    loads = []
    monkeypatch.setattr(ckpt_mod, "read_checkpoint", lambda *a, **k: loads.append(a))
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a))
    img = frame(2)
    sizes = {}
    for w in reversed(enc.widths):
        enc.set_width(w)
        data = enc.encode(img, frame_id=3)
        p = parse(data)
        assert p.width == w and p.latent_shape[0] == enc.model.encoder.bottleneck_channels[p.width_index]
        out = dec.decode(data)
        assert out.width == w and out.mask.shape == img.shape[:2]
        sizes[w] = len(data)
    assert len(set(sizes.values())) == len(sizes)  # each width's packet has its own size
    assert loads == []
    assert ptrs == {n: p.data_ptr() for n, p in enc.model.named_parameters()}


def test_bad_width_is_refused(tiny_model_path):
    enc = OnboardEncoder(tiny_model_path)
    with pytest.raises(WidthError, match="not one of"):
        enc.set_width(0.3)
    assert enc.width == 1.0


def test_bad_images_are_refused(tiny_model_path):
    enc = OnboardEncoder(tiny_model_path)
    for bad in (np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32), np.zeros((4, 4, 3), np.uint8)):
        with pytest.raises(ImageError):
            enc.encode(bad)


def test_packets_of_another_model_are_refused(tiny_model_path, tmp_path):
    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    save_checkpoint(SplitModel(tiny_config()), other)
    data = OnboardEncoder(other).encode(frame(3))
    with pytest.raises(ModelMismatchError, match="load the encoder's checkpoint"):
        OffboardDecoder(tiny_model_path).decode(data)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=600))
def test_forged_payloads_with_valid_crc_never_crash(tiny_model_path, payload):
    """Right header, right CRC, garbage entropy-coded payload: a typed error or a frame, nothing else."""
    dec = _decoder(tiny_model_path)
    enc = _encoder(tiny_model_path)
    good = parse(enc.encode(frame(4)))
    forged = type(good)(good.fingerprint, good.width_index, good.width, 1, 2, good.image_size,
                        good.latent_shape, payload).to_bytes()
    try:
        dec.decode(forged, with_mask=False)
    except PacketError:
        pass


_cache: dict = {}


def _decoder(path):
    return _cache.setdefault(("dec", path), OffboardDecoder(path))


def _encoder(path):
    return _cache.setdefault(("enc", path), OnboardEncoder(path))


def test_checkpoint_is_weights_only_and_tables_are_stored(tiny_model_path):
    raw = torch.load(tiny_model_path, map_location="cpu", weights_only=True)
    assert any(k.endswith("_quantized_cdf") and v.numel() > 0 for k, v in raw["state_dict"].items())
    model, fp = load_model(tiny_model_path)
    for i, m in enumerate(model.entropy):  # loaded verbatim, never recomputed
        assert torch.equal(m._quantized_cdf, raw["state_dict"][f"entropy.{i}._quantized_cdf"])
    assert fp == raw["fingerprint"]


def test_pickled_code_in_checkpoint_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed!",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "split_perception.checkpoint", "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        read_checkpoint(path)


def test_edited_checkpoint_is_refused(tiny_model_path, tmp_path):
    raw = torch.load(tiny_model_path, map_location="cpu", weights_only=True)
    key = next(k for k in raw["state_dict"] if k.endswith("weight"))
    raw["state_dict"][key] = raw["state_dict"][key] + 1
    torch.save(raw, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="fingerprint"):
        load_model(tmp_path / "edited.pt")


def test_missing_and_wrong_kind_checkpoints(tiny_model_path, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="teacher model is needed"):
        load_model(tiny_model_path, kind="teacher")


def test_compress_without_tables_names_the_fix():
    model = SplitModel(tiny_config()).eval()
    with pytest.raises(CheckpointError, match="load_model"):
        model.compress(torch.zeros(1, 3, 96, 128))
