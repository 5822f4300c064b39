"""refit-entropy: only the entropy models change, the bytes fall, the result is a working checkpoint."""

from __future__ import annotations

import json

import numpy as np
import torch

from split_perception.cli import main
from split_perception.codec.checkpoint import load_model, read_checkpoint
from split_perception.data.synthetic import render_scene
from split_perception.offboard import OffboardDecoder
from split_perception.onboard import OnboardEncoder


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
        if not k.startswith("entropy."):
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
