"""refit-entropy: only the entropy models change, the bytes fall, the result is a working checkpoint."""

from __future__ import annotations

import copy
import json

import numpy as np
import torch

from split_perception.cli import main
from split_perception.data.synthetic import render_scene
from split_perception.models.checkpoint import load_model, read_checkpoint, save_checkpoint
from split_perception.models.split_model import SplitModel
from split_perception.offboard.decoder import OffboardDecoder
from split_perception.onboard.encoder import OnboardEncoder
from split_perception.training.entropy_refit import refit_entropy, rescale_gain

from .conftest import tiny_config


def test_refit_lowers_bytes_and_changes_only_the_entropy_models(tmp_path, tiny_data, tiny_model_path, capsys):
    out = tmp_path / "refit.pt"
    assert main(["refit-entropy", "--model", str(tiny_model_path), "--out", str(out), "--data", str(tiny_data),
                 "--images", "12", "--steps", "400", "--lr", "0.01", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "bytes/frame on the held-out images" in printed
    report = read_checkpoint(out)["extra"]["entropy_refit"]["bytes"]
    for w, r in report.items():  # the untrained model's densities are far wider than its bottleneck
        assert r["bytes_after"] < 0.8 * r["bytes_before"], (w, r)
    before, _ = load_model(tiny_model_path)
    after, fp = load_model(out)
    for (k, a), b in zip(before.state_dict().items(), after.state_dict().values()):
        if not k.startswith("latent_codecs."):
            assert torch.equal(a, b), k
    assert read_checkpoint(out)["extra"]["bytes_per_width"] == {w: r["bytes_after"] for w, r in report.items()}
    rgb = render_scene(np.random.default_rng(0), (96, 128))[0]
    enc, dec = OnboardEncoder(out, runtime="torch"), OffboardDecoder(out)
    for w in enc.widths:
        enc.set_width(w)
        frame = dec.decode(enc.encode(rgb, frame_id=1))
        assert frame.width == w and dec.fingerprint == fp
    json.dumps(report)  # plain numbers: it goes into the checkpoint's extra


def test_bad_arguments_are_one_clear_error(tmp_path, tiny_model_path, capsys):
    assert main(["refit-entropy", "--model", str(tiny_model_path), "--out", str(tmp_path / "x.pt"),
                 "--images", "1"]) == 2
    assert "--images must be >= 2" in capsys.readouterr().err
    assert main(["refit-entropy", "--model", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.pt")]) == 2
    assert not (tmp_path / "x.pt").exists()


def test_gain_moves_one_width_along_the_rate_axis(tiny_data):
    torch.manual_seed(0)
    model = SplitModel(tiny_config(split_index=5, encoder="front")).eval()
    model.encoder.front = torch.nn.Conv2d(3, 16, 8, stride=8)  # an untrained front codes a constant
    model.update(force=True)
    x = torch.randn(2, 3, 96, 128)
    model.set_width(1.0)
    restored = model.decoder_for(3)(model.encoder(x))
    moved = copy.deepcopy(model)
    rescale_gain(moved, 1.0, 3.0)
    rescale_gain(moved, 0.25, 0.5)
    assert torch.allclose(moved.decoder_for(3)(moved.encoder(x)), restored, atol=1e-4)  # the decoder undoes it

    b0, b1 = (refit_entropy(m, str(tiny_data), 12, 400, lr=0.01, progress=False) for m in (model, moved))
    assert b1["1.0"]["bytes_after"] > 1.3 * b0["1.0"]["bytes_after"], (b0, b1)  # finer steps: more bytes
    assert b1["0.25"]["bytes_after"] < b0["0.25"]["bytes_after"], (b0, b1)
    assert b1["0.5"] == b0["0.5"]


def test_gain_is_recorded_and_checked(tmp_path, tiny_data, tiny_model_path, capsys):
    torch.manual_seed(0)
    path = tmp_path / "front.pt"
    save_checkpoint(SplitModel(tiny_config(split_index=5, encoder="front")), path)
    args = ["refit-entropy", "--model", str(path), "--data", str(tiny_data), "--images", "4", "--steps", "5",
            "--quiet", "--out"]
    assert main(args + [str(tmp_path / "moved.pt"), "--gain", "1.0=3", "--gain", "0.25=0.5"]) == 0
    assert read_checkpoint(tmp_path / "moved.pt")["extra"]["entropy_refit"]["gain"] == {"1.0": 3.0, "0.25": 0.5}
    capsys.readouterr()
    assert main(args + [str(tmp_path / "x.pt"), "--gain", "0.3=2"]) == 2
    assert "width 0.3 is not one of" in capsys.readouterr().err
    assert main(args + [str(tmp_path / "x.pt"), "--gain", "1.0=50"]) == 2
    assert "gain factor must be in" in capsys.readouterr().err
    assert main(["refit-entropy", "--model", str(tiny_model_path), "--out", str(tmp_path / "x.pt"),
                 "--gain", "1.0=2"]) == 2
    assert "only an `encoder: front` model" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()
