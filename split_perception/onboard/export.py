"""Checkpoint -> onboard export: one ONNX graph per width plus the stored entropy tables.

Only the analysis transform (the slimmable encoder) goes into ONNX, one graph per width with the
channel slices frozen at trace time; rounding and entropy coding stay outside the graph and use
the context coder's integer CDF tables exactly as the checkpoint stores them (see `onboard/export_files.py`).
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from ..model_files import file_sha256, model_file
from ..models.checkpoint import model_from_checkpoint, read_checkpoint
from .export_files import FORMAT, MANIFEST, TABLES, VERSION, export_dir_for

OPSET = 17


def _graph_bytes(encoder: torch.nn.Module, x: torch.Tensor) -> bytes:
    f = io.BytesIO()
    with warnings.catch_warnings():  # the tracer notes the frozen width checks; that is the point
        warnings.simplefilter("ignore")
        torch.onnx.export(encoder, (x,), f, dynamo=False, opset_version=OPSET, input_names=["image"],
                          output_names=["y"], do_constant_folding=True)
    return f.getvalue()


def export_onboard(model_path: str | Path | None = None, out: str | Path | None = None) -> Path:
    """Write the export of a checkpoint (default: beside it) and return its folder."""
    ckpt_path = model_file(model_path)
    out = Path(out) if out else export_dir_for(ckpt_path)
    ckpt = read_checkpoint(ckpt_path)
    model = model_from_checkpoint(ckpt, ckpt_path)
    cfg = model.cfg
    out.mkdir(parents=True, exist_ok=True)
    x = torch.zeros(1, 3, *cfg.input_size)
    widths, tables, sha = [], {}, {}
    with torch.no_grad():
        for i, w in enumerate(cfg.widths):
            model.set_width(w)
            shape = tuple(model.encoder(x).shape[1:])
            name = f"encoder_w{i}.onnx"
            (out / name).write_bytes(_graph_bytes(model.encoder, x))
            sha[name] = file_sha256(out / name)
            codec = model.latent_codecs[i]
            ctx = codec.tables()
            tables.update({f"quantized_cdf_{i}": ctx.quantized_cdf.astype(np.int32),
                           f"cdf_length_{i}": ctx.cdf_length.astype(np.int32),
                           f"offset_{i}": ctx.offset.astype(np.int32),
                           f"medians_{i}": codec.medians.numpy().astype(np.float32)})
            widths.append({"width": w, "graph": name, "channels": shape[0], "latent_shape": list(shape)})
    model.set_width(cfg.widths[-1])
    np.savez(out / TABLES, **tables)
    sha[TABLES] = file_sha256(out / TABLES)
    manifest = {"format": FORMAT, "version": VERSION, "fingerprint": ckpt["fingerprint"], "checkpoint_sha256": file_sha256(ckpt_path),
                "model_config": ckpt["stored_model_config"], "widths": widths, "input": {"name": "image", "shape": [1, 3, *cfg.input_size]},
                "bytes_per_width": ckpt["extra"].get("bytes_per_width") or {}, "onnx_opset": OPSET, "sha256": sha}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return out
