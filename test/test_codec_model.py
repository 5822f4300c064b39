"""Model + bitstream: bit-exact across processes, width switching, foreign packets, checkpoints."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import split_perception.models.checkpoint as ckpt_mod
from split_perception.codec.packet import parse
from split_perception.data.synthetic import render_scene
from split_perception.errors import (
    CheckpointError,
    ImageError,
    ModelMismatchError,
    PacketError,
    WidthError,
)
from split_perception.model_files import BUNDLED_MODELS
from split_perception.models.checkpoint import (
    fingerprint,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from split_perception.models.split_model import SplitModel, current_keys
from split_perception.offboard.decoder import OffboardDecoder
from split_perception.onboard.encoder import OnboardEncoder

from .conftest import tiny_config


def frame(seed=0, size=(120, 160)):
    return render_scene(np.random.default_rng(seed), size)[0]


def test_cross_process_encode_is_bit_exact(tiny_model_path, tmp_path):
    """Encode in a separate process; the decoded symbols equal the in-process quantized bottleneck."""
    np.save(tmp_path / "img.npy", frame(1))
    code = textwrap.dedent(f"""
        import numpy as np, torch
        torch.set_num_threads(1)
        from split_perception.onboard.encoder import OnboardEncoder
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
    y_remote = m.latent_codecs[packet.width_index].decompress([[packet.payload + bytes(4096)]], (h, w))["y_hat"]
    enc = OnboardEncoder(tiny_model_path)
    enc.set_width(0.5)
    with torch.no_grad():  # the eval-mode forward: CompressAI's entropy bottleneck rounds around its medians
        y = enc.model.encoder(enc.preprocess(np.load(tmp_path / "img.npy")))
        y_local = enc.model.latent_codecs[packet.width_index](y)["y_hat"]
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


def earlier_layout(state: dict) -> dict:
    """A state dict with the keys checkpoints had before the latent codecs (`entropy.{i}.`, `context.{i}.`)."""
    out = {}
    for k, v in state.items():
        k = re.sub(r"^latent_codecs\.(\d+)\.entropy_bottleneck\.", r"entropy.\1.", k)
        out[re.sub(r"^latent_codecs\.(\d+)\.", r"context.\1.", k)] = v
    return out


def assert_loaded_as_stored(model, stored: dict) -> None:
    """Every stored tensor is in the model as it is (floats as float32), CDF tables included."""
    own, stored = model.state_dict(), current_keys(stored)
    assert set(own) == set(stored)
    for k, v in stored.items():
        assert torch.equal(own[k], v.float() if v.is_floating_point() else v), k


def test_checkpoint_is_weights_only_and_tables_are_stored(tiny_model_path):
    raw = torch.load(tiny_model_path, map_location="cpu", weights_only=True)
    for i in range(len(tiny_config().widths)):  # the factorized and the context tables of every width
        for key in (f"latent_codecs.{i}.entropy_bottleneck._quantized_cdf", f"latent_codecs.{i}._quantized_cdf"):
            assert raw["state_dict"][key].numel() > 0, key
    model, fp = load_model(tiny_model_path)
    assert_loaded_as_stored(model, raw["state_dict"])  # loaded verbatim, never recomputed
    assert fp == raw["fingerprint"]


def test_a_checkpoint_of_the_earlier_layout_loads_as_it_is(tiny_model_path, tmp_path):
    raw = torch.load(tiny_model_path, map_location="cpu", weights_only=True)
    state = earlier_layout(raw["state_dict"])
    assert any(k.startswith("context.0.") for k in state) and any(k.startswith("entropy.0.") for k in state)
    raw.update(state_dict=state, fingerprint=fingerprint(state, raw["model_config"]))
    torch.save(raw, tmp_path / "earlier.pt")
    model, fp = load_model(tmp_path / "earlier.pt")
    assert fp == raw["fingerprint"]
    assert_loaded_as_stored(model, state)
    x = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    same, _ = load_model(tiny_model_path)
    assert model.compress(x) == same.compress(x)


@pytest.mark.parametrize("name", sorted(BUNDLED_MODELS))
def test_bundled_checkpoints_load_as_stored(name):
    raw = torch.load(BUNDLED_MODELS[name], map_location="cpu", weights_only=True)
    model, fp = load_model(BUNDLED_MODELS[name])
    assert fp == raw["fingerprint"]
    assert_loaded_as_stored(model, raw["state_dict"])


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
