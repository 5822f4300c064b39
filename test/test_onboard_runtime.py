"""The torch-free onboard runtime (ONNX Runtime + stored tables) against the torch one: same symbols,
same packets, same detections; it runs where torch cannot be imported, and in the encoder node."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from split_perception.codec.packet import parse
from split_perception.data.synthetic import render_scene
from split_perception.errors import CheckpointError, ConfigError, WidthError
from split_perception.harness.processes import run_probe, start_node, stop
from split_perception.model_files import BUNDLED_MODELS
from split_perception.models.checkpoint import read_checkpoint, save_checkpoint
from split_perception.models.split_model import SplitModel
from split_perception.offboard.decoder import OffboardDecoder
from split_perception.onboard.encoder import OnboardEncoder
from split_perception.onboard.export import export_onboard
from split_perception.onboard.export_files import (
    MANIFEST,
    TABLES,
    export_dir_for,
    find_export,
    read_export,
    widths_and_bytes,
)
from split_perception.onboard.preprocess import resize, to_input_array

from .conftest import tiny_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_model_path):
    """A copy of the tiny checkpoint with its onboard export beside it."""
    path = tmp_path_factory.mktemp("exported") / "model.pt"
    shutil.copy(tiny_model_path, path)
    export_onboard(path)
    return path


@pytest.fixture(scope="module")
def exported_gdn(tmp_path_factory):
    """A tiny student of the GDN design (split k=5, GDN/IGDN, 3-layer decoders), exported."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("exported_gdn") / "model.pt"
    save_checkpoint(SplitModel(tiny_config(split_index=5, gdn=True, decoder_layers=3)), path)
    export_onboard(path)
    return path


@pytest.fixture(scope="module")
def exported_front(tmp_path_factory):
    """A tiny student of the teacher-front design (split k=5, projection with a gain per width, the
    narrowest width on the coarse grid), exported."""
    torch.manual_seed(2)
    path = tmp_path_factory.mktemp("exported_front") / "model.pt"
    model = SplitModel(tiny_config(split_index=5, encoder="front", coarse_widths=(0.25,)))
    with torch.no_grad():
        for g in model.encoder.gain:
            g.uniform_(0.5, 2.0)
    save_checkpoint(model, path)
    export_onboard(path)
    return path


def images(cfg, n=4, seed=0):
    rng = np.random.default_rng(seed)
    scenes = [render_scene(rng, tuple(cfg.input_size), tuple(cfg.class_names))[0] for _ in range(n)]
    return scenes + [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8),  # resized down (INTER_AREA)
                     rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)]  # resized up (INTER_LINEAR)


def detections(frame):
    return [(d.label, round(d.score, 4), tuple(round(v, 2) for v in d.box)) for d in frame.detections]


def test_numpy_preprocessing_resizes_like_opencv_and_normalizes_like_torch():
    rng = np.random.default_rng(1)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    for shape in [(96, 128, 3), (480, 640, 3), (192, 256, 3), (130, 170, 3), (50, 70, 3), (96, 300, 3)]:
        rgb = rng.integers(0, 256, shape, dtype=np.uint8)
        resized = resize(rgb, (96, 128))
        assert resized.dtype == np.float32 and resized.shape == (96, 128, 3)
        if shape[:2] == (96, 128):
            assert np.array_equal(resized, rgb)
        else:  # OpenCV rounds to uint8 (and interpolates upwards with 11-bit weights): within a level
            shrinks = shape[0] >= 96 and shape[1] >= 128  # area per shrinking axis, bilinear per growing one
            ref = cv2.resize(rgb, (128, 96), interpolation=cv2.INTER_AREA if shrinks else cv2.INTER_LINEAR)
            assert np.abs(resized - ref).max() <= (0.51 if shrinks else 1.0), shape
        want = (torch.from_numpy(resized).permute(2, 0, 1).float().div_(255.0) - torch.tensor(mean)[:, None, None]) \
            / torch.tensor(std)[:, None, None]
        got = to_input_array(rgb, (96, 128), mean, std)
        assert got.dtype == np.float32 and got.flags.c_contiguous
        assert np.array_equal(got, want.numpy())
    rgb = rng.integers(0, 256, (192, 256, 3), dtype=np.uint8)  # an integer ratio: exactly the block mean
    assert np.allclose(resize(rgb, (96, 128)), rgb.reshape(96, 2, 128, 2, 3).mean(axis=(1, 3)), atol=1e-4)


@pytest.mark.parametrize("which", ["tiny", "tiny_gdn", "tiny_front", "synthetic"])
def test_onnx_and_torch_agree_at_every_width(which, exported, exported_gdn, exported_front):
    path = {"tiny": exported, "tiny_gdn": exported_gdn, "tiny_front": exported_front,
            "synthetic": BUNDLED_MODELS["synthetic"]}[which]
    onnx, ref = OnboardEncoder(path, runtime="onnx"), OnboardEncoder(path, runtime="torch")
    assert (onnx.runtime, ref.runtime) == ("onnx", "torch") and onnx.fingerprint == ref.fingerprint
    dec = OffboardDecoder(path)
    flips = total = 0
    for i, w in enumerate(ref.widths):
        onnx.set_width(w)
        ref.set_width(w)
        codec = ref.model.latent_codecs[i]
        for k, rgb in enumerate(images(ref.cfg)):
            y = onnx.bottleneck(onnx.preprocess(rgb), i)
            with torch.no_grad():
                y_ref = ref.model.encoder(ref.preprocess(rgb))  # CompressAI's own rounding, for reference
                sym_ref = codec.entropy_bottleneck.quantize(y_ref, "symbols", codec.medians[:, None, None]).numpy()
            sym = onnx.symbols(y, i)[None]
            flips, total = flips + int((sym != sym_ref).sum()), total + sym.size
            a, b = onnx.encode(rgb, k, 7), ref.encode(rgb, k, 7)
            pa, pb = parse(a), parse(b)
            assert (pa.width, pa.width_index, pa.latent_shape, pa.image_size) == \
                   (pb.width, pb.width_index, pb.latent_shape, pb.image_size)
            assert abs(len(a) - len(b)) <= 4
            assert detections(dec.decode(a)) == detections(dec.decode(b)), (w, k)
    assert flips <= total // 10_000, f"{flips} of {total} symbols differ (rounding at .5 boundaries)"


@pytest.mark.parametrize("name", sorted(BUNDLED_MODELS))
def test_shipped_export_matches_the_bundled_checkpoint_and_is_up_to_date(tmp_path, name):
    model = BUNDLED_MODELS[name]
    shipped = find_export(model)
    assert shipped is not None, f"no up-to-date export at {export_dir_for(model)}: run " \
                                f"`split-perception export-onboard --model {name}`"
    assert shipped.fingerprint == read_checkpoint(model)["fingerprint"]
    fresh = read_export(export_onboard(model, tmp_path / "fresh"))
    man = [json.loads((d / MANIFEST).read_text()) for d in (shipped.directory, fresh.directory)]
    for m in man:
        m.pop("sha256")  # graph bytes may differ between torch versions; what they compute may not
    assert man[0] == man[1]
    with np.load(shipped.directory / TABLES) as a, np.load(fresh.directory / TABLES) as b:
        assert sorted(a.files) == sorted(b.files) and all(np.array_equal(a[k], b[k]) for k in a.files)
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((1, 3, *shipped.cfg.input_size)).astype(np.float32)
    for s, f in zip(shipped.widths, fresh.widths):
        ys, yf = (ort.InferenceSession(str(t.graph)).run(None, {"image": x})[0] for t in (s, f))
        np.testing.assert_allclose(ys, yf, atol=1e-5)


def test_runtime_choice_and_refusals(exported, tiny_model_path, tmp_path):
    assert OnboardEncoder(exported).runtime == "onnx"  # auto: the export is there
    assert OnboardEncoder(tiny_model_path).runtime == "torch"  # auto: no export
    assert OnboardEncoder(export_dir_for(exported)).runtime == "onnx"  # the export folder alone
    with pytest.raises(CheckpointError, match="export-onboard"):
        OnboardEncoder(tiny_model_path, runtime="onnx")
    with pytest.raises(CheckpointError, match="needs the checkpoint"):
        OnboardEncoder(export_dir_for(exported), runtime="torch")
    with pytest.raises(ConfigError, match="runtime"):
        OnboardEncoder(exported, runtime="tensorrt")
    enc = OnboardEncoder(exported)
    with pytest.raises(WidthError):
        enc.set_width(0.3)
    with pytest.raises(AttributeError, match="runtime='torch'"):
        enc.model
    # a checkpoint that changed after its export: auto falls back to torch, onnx refuses
    stale = tmp_path / "stale.pt"
    shutil.copy(exported, stale)
    shutil.copytree(export_dir_for(exported), export_dir_for(stale))
    stale.write_bytes(stale.read_bytes() + b"\0")
    assert find_export(stale) is None
    with pytest.raises(CheckpointError, match="export-onboard"):
        OnboardEncoder(stale, runtime="onnx")
    # an edited graph or table is refused, never run
    for name in ("encoder_w0.onnx", TABLES):
        broken = tmp_path / f"broken_{name}"
        shutil.copytree(export_dir_for(exported), broken)
        (broken / name).write_bytes((broken / name).read_bytes()[:-8])
        with pytest.raises(CheckpointError, match="does not match the manifest"):
            OnboardEncoder(broken)


CHILD = textwrap.dedent("""
    import json, sys

    class NotOnTheRobot:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "cv2"):
                raise ImportError(f"{name} is not installed on this robot")

    sys.meta_path.insert(0, NotOnTheRobot())
    import io
    import numpy as np
    from PIL import Image
    from split_perception.onboard.export_files import widths_and_bytes
    from split_perception.data.image_messages import compressed_to_rgb
    from split_perception.onboard.encoder import OnboardEncoder

    model, out = sys.argv[1], sys.argv[2]
    frames = np.load(out + ".npy")
    png = io.BytesIO()
    Image.fromarray(frames[0]).save(png, "PNG")
    class Compressed:
        format, data = "png", png.getvalue()
    assert (compressed_to_rgb(Compressed) == frames[0]).all()
    enc = OnboardEncoder(model, threads=1)
    packets = []
    for k, rgb in enumerate(frames):  # a new width every frame, cycling through all of them
        enc.set_width(enc.widths[k % len(enc.widths)])
        packets.append(enc.encode(rgb, frame_id=k, stamp_ns=k).hex())
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "compressai", "torchvision", "cv2"))
    json.dump({"runtime": enc.runtime, "packets": packets, "loaded": loaded, "table": widths_and_bytes(model)},
              open(out, "w"))
""")


def test_onboard_runtime_without_torch_packets_decode_offboard(exported, tmp_path):
    ref = OnboardEncoder(exported, runtime="torch")
    frames = np.stack([im for im in images(ref.cfg, n=8, seed=5) if im.shape[:2] == tuple(ref.cfg.input_size)])
    np.save(tmp_path / "out.json.npy", frames)
    (tmp_path / "child.py").write_text(CHILD)
    res = subprocess.run([sys.executable, str(tmp_path / "child.py"), str(exported), str(tmp_path / "out.json")],
                         cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["runtime"] == "onnx" and out["loaded"] == ["compressai.ans"]
    assert out["table"][0] == list(ref.widths)
    dec = OffboardDecoder(exported)
    seen = set()
    for k, (rgb, hexed) in enumerate(zip(frames, out["packets"])):
        w = ref.widths[k % len(ref.widths)]
        ref.set_width(w)
        frame = dec.decode(bytes.fromhex(hexed))
        seen.add(frame.width)
        assert frame.width == w and frame.frame_id == k
        assert detections(frame) == detections(dec.decode(ref.encode(rgb, frame_id=k, stamp_ns=k)))
    assert seen == set(ref.widths)


def test_link_monitor_table_comes_from_the_export(exported, bundled_model_path):
    widths, sizes = widths_and_bytes(bundled_model_path)
    ckpt = read_checkpoint(bundled_model_path)
    assert widths == list(ckpt["model_config"].widths) and sizes == ckpt["extra"]["bytes_per_width"]
    assert widths_and_bytes(export_dir_for(exported))[0] == widths_and_bytes(exported)[0]


def test_encoder_node_on_onnx_switches_width_and_torch_decodes(tmp_path, domain, exported):
    log = tmp_path / "encoder.log"
    procs = [start_node("encoder", domain, params={"model_path": str(exported), "runtime": "onnx", "threads": 1},
                        log_path=log)]
    dec, ref = OffboardDecoder(exported), OnboardEncoder(exported, runtime="torch")
    frames = images(ref.cfg, n=6, seed=2)
    files = [str(tmp_path / f"{k}.png") for k in range(len(frames))]
    for name, rgb in zip(files, frames):
        cv2.imwrite(name, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cfg = {"seconds": 18, "fps": 5, "record_packets": True, "images": files,
           "set_width": [{"at": 0, "after_features": 5, "width": 0.5}]}
    try:
        rec = run_probe(cfg, tmp_path, domain)
        maps = Path(f"/proc/{procs[0].pid}/maps").read_text() if procs[0].poll() is None else ""
    finally:
        stop(procs)
    text = log.read_text()
    assert "runtime onnx" in text, text[-3000:]
    assert maps and "libtorch" not in maps and "onnxruntime" in maps
    res = rec["set_results"]
    assert res and res[0]["ok"], text[-3000:]
    before = [f for f in rec["features"] if f["t"] < res[0]["t"] - 0.5]
    after = [f for f in rec["features"] if f["t"] > res[0]["t"] + 0.5]
    assert before and after and {f["width"] for f in before} == {1.0} and {f["width"] for f in after} == {0.5}
    sent = {s["stamp"]: s["frame"] for s in rec["sent"]}
    for f in before + after:
        frame = dec.decode(bytes.fromhex(f["packet"]))
        assert frame.width == f["width"]
        ref.set_width(f["width"])
        rgb = frames[sent[f["stamp"]]]
        assert detections(frame) == detections(dec.decode(ref.encode(rgb, frame.frame_id, frame.stamp_ns)))
