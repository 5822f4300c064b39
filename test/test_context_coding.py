"""Context-adaptive coding: exact round trips, the factorized model as its zero-count case, real
savings where symbols cluster, and checkpoints (new and from before contexts) that code with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from split_perception.cli import main
from split_perception.codec.context import CONTEXTS, ContextCoder, symbol_contexts
from split_perception.codec.packet import parse
from split_perception.codec.symbols import from_symbols, to_symbols
from split_perception.data.synthetic import render_scene
from split_perception.models.checkpoint import fingerprint, load_model, read_checkpoint
from split_perception.models.context_latent_codec import ContextLatentCodec
from split_perception.offboard.decoder import OffboardDecoder
from split_perception.onboard.encoder import OnboardEncoder

from .test_codec_model import earlier_layout


def blobs(rng: np.random.Generator, n: int, c: int = 12, h: int = 15, w: int = 20) -> np.ndarray:
    """Bottleneck-like symbols: zero almost everywhere, spread out inside a few boxes in every channel."""
    out = np.zeros((n, c, h, w), np.int32)
    for k in range(n):
        for _ in range(3):
            y, x = rng.integers(0, h - 4), rng.integers(0, w - 5)
            box = out[k, :, y:y + 4, x:x + 5]
            box[...] = np.round(rng.normal(0, 3, box.shape))
    noise = rng.random(out.shape) < 0.01
    out[noise] = rng.choice([-1, 1], noise.sum())
    return out


def codec_for(symbols: np.ndarray, counted: bool) -> ContextLatentCodec:
    codec = ContextLatentCodec(symbols.shape[1])  # support -10..10 around median 0: y codes as itself
    if counted:
        codec.count(torch.from_numpy(symbols).float())
    codec.update()
    return codec


def test_round_trip_is_exact_including_escaped_symbols():
    rng = np.random.default_rng(0)
    train, test = blobs(rng, 20), blobs(rng, 3)
    test[0, 0, 0, 0], test[1, 3, 7, 9] = 500, -77  # beyond every table: escape-coded
    coder = ContextCoder(codec_for(train, counted=True).tables())
    for s in test:
        assert np.array_equal(coder.decode(coder.encode(s) + bytes(64), s.shape), s)


def test_zero_counts_give_the_factorized_tables():
    rng = np.random.default_rng(1)
    codec = codec_for(blobs(rng, 2), counted=False)
    tables, eb = codec.tables(), codec.entropy_bottleneck
    assert len(tables.cdf_length) == eb.quantized_cdf.shape[0] * CONTEXTS
    for r in range(len(tables.cdf_length)):
        c, n = r // CONTEXTS, tables.cdf_length[r]
        assert n == eb.cdf_length[c] and tables.offset[r] == eb.offset[c]
        assert np.array_equal(tables.quantized_cdf[r, :n], eb.quantized_cdf[c, :n].numpy())


def test_contexts_save_a_tenth_of_the_bytes_where_symbols_cluster():
    rng = np.random.default_rng(2)
    train, test = blobs(rng, 40), blobs(rng, 10)
    counted = codec_for(train, counted=True)
    marginal = ContextLatentCodec(train.shape[1])  # the best factorized model: each channel's histogram everywhere
    marginal.entropy_bottleneck = counted.entropy_bottleneck
    marginal.counts.copy_(counted.counts.sum(dim=1, keepdim=True).expand_as(counted.counts))
    marginal.update()
    ours = sum(len(ContextCoder(counted.tables()).encode(s)) for s in test)
    factorized = sum(len(ContextCoder(marginal.tables()).encode(s)) for s in test)
    assert ours < 0.9 * factorized, (ours, factorized)


def test_the_symbol_rule_is_compressais_rounding_around_the_medians():
    """The numpy rule gives, to the bit, what CompressAI's EntropyBottleneck.quantize gives (ties included)."""
    rng = np.random.default_rng(3)
    medians = rng.normal(0, 0.3, 6).astype(np.float32)
    medians[0] = 0.0  # exact ties in channel 0
    y = (rng.normal(0, 4, (2, 6, 5, 7)) * 2).round().astype(np.float32) / 2 + medians[:, None, None]  # many .5 ties
    y[0, :, 0] = rng.normal(0, 4, (6, 7))
    codec = ContextLatentCodec(6)
    m = torch.from_numpy(medians)[:, None, None]
    symbols = to_symbols(y, medians)
    assert symbols.dtype == np.int32
    assert np.array_equal(symbols, codec.entropy_bottleneck.quantize(torch.from_numpy(y), "symbols", m).numpy())
    restored = from_symbols(symbols, medians)
    assert restored.dtype == np.float32
    assert np.array_equal(restored, codec.entropy_bottleneck.quantize(torch.from_numpy(y), "dequantize", m).numpy())


def test_contexts_come_only_from_the_row_above():
    s = np.zeros((2, 4, 4), np.int32)
    s[0, 1, 1] = 5  # one nonzero symbol in row 1 of channel 0
    ctx = symbol_contexts(s)
    assert (ctx[:, :2] == 0).all()  # rows 0 and 1 see nothing above them
    assert ctx[0, 2, 0] > 0 and ctx[0, 2, 1] > 0 and ctx[0, 2, 2] > 0 and ctx[0, 2, 3] == 0
    assert ctx[1, 2, 1] > 0 and ctx[1, 2, 1] < ctx[0, 2, 1]  # channel 1 sees only the activity
    assert (ctx[:, 3] == 0).all()


def test_steps_0_counts_contexts_and_keeps_the_densities(tmp_path, tiny_data, tiny_model_path):
    out = tmp_path / "counted.pt"
    assert main(["refit-entropy", "--model", str(tiny_model_path), "--out", str(out), "--data", str(tiny_data),
                 "--images", "12", "--steps", "0", "--quiet"]) == 0
    before, _ = load_model(tiny_model_path)
    after, _ = load_model(out)
    for (k, a), b in zip(before.state_dict().items(), after.state_dict().values()):
        if not k.startswith("latent_codecs.") or ".entropy_bottleneck." in k:
            assert torch.equal(a, b), k
    assert all(int(c.counts.sum()) > 0 for c in after.latent_codecs)
    rgb = render_scene(np.random.default_rng(0), (96, 128))[0]
    enc, dec = OnboardEncoder(out, runtime="torch"), OffboardDecoder(out)
    for i, w in enumerate(enc.widths):
        enc.set_width(w)
        with torch.no_grad():  # the eval-mode forward: CompressAI's entropy bottleneck rounds around its medians
            expected = enc.model.latent_codecs[i](enc.model.encoder(enc.preprocess(rgb)))["y_hat"]
        packet = parse(enc.encode(rgb))
        decoded = dec.model.latent_codecs[i].decompress([[packet.payload + bytes(4096)]], packet.latent_shape[1:])
        assert torch.equal(decoded["y_hat"], expected)


def test_a_checkpoint_from_before_contexts_codes_as_it_did(tmp_path, tiny_model_path):
    ckpt = read_checkpoint(tiny_model_path)
    state = {k: v for k, v in earlier_layout(ckpt["state_dict"]).items() if not k.startswith("context.")}
    old = {k: ckpt[k] for k in ("format", "version", "kind", "extra")}
    old.update(model_config=ckpt["stored_model_config"], state_dict=state,
               fingerprint=fingerprint(state, ckpt["stored_model_config"]))
    torch.save(old, tmp_path / "old.pt")
    model, fp = load_model(tmp_path / "old.pt")
    assert fp == old["fingerprint"] and all(int(c.counts.sum()) == 0 for c in model.latent_codecs)
    for i, c in enumerate(model.latent_codecs):  # the stored factorized tables, as they were
        for name in ("_quantized_cdf", "_cdf_length", "_offset"):
            assert torch.equal(getattr(c.entropy_bottleneck, name), state[f"entropy.{i}.{name}"])
    x = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    for i, w in enumerate(model.widths):
        model.set_width(w)
        with torch.no_grad():
            y = model.encoder(x)
        factorized = [len(s) for s in model.latent_codecs[i].entropy_bottleneck.compress(y)]
        assert [len(s) for s in model.latent_codecs[i].compress(y)["strings"][0]] == pytest.approx(factorized, abs=2)
