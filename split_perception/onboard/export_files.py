"""The onboard export: per-width ONNX encoder graphs, the stored entropy tables and a JSON manifest.

Written by `split-perception export-onboard` (see `onboard/export.py`) next to its checkpoint
(`model.pt` -> `model.onboard/`); read here without torch, so a robot runs the encoder from it
with ONNX Runtime. The manifest carries the checkpoint's fingerprint (packets name their model by
it) and the SHA-256 of the checkpoint file it was made from, so a stale export is never used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import ModelConfig, model_config_from_dict
from ..errors import CheckpointError, ConfigError
from ..model_files import file_sha256, model_file

FORMAT = "split_perception.onboard_export"
VERSION = 2  # 2: context-coder tables (CONTEXTS per channel)
MANIFEST = "manifest.json"
TABLES = "tables.npz"


def export_dir_for(checkpoint: str | Path | None) -> Path:
    """Where the export of a checkpoint lives: beside it, `<name>.onboard/`."""
    return model_file(checkpoint).with_suffix(".onboard")


@dataclass(frozen=True)
class WidthTables:
    """One width's graph, context-coder tables and medians, exactly as the checkpoint stores them."""

    graph: Path
    channels: int
    latent_shape: tuple[int, int, int]  # (channels, h, w) of the bottleneck
    quantized_cdf: np.ndarray  # int32 [channels * CONTEXTS, max_length + 2]
    cdf_length: np.ndarray  # int32 [channels * CONTEXTS]
    offset: np.ndarray  # int32 [channels * CONTEXTS]
    medians: np.ndarray  # float32 [channels]


@dataclass(frozen=True)
class OnboardExport:
    """What the onboard runtime needs from a checkpoint, read without torch."""

    directory: Path
    fingerprint: str
    checkpoint_sha256: str
    cfg: ModelConfig
    widths: tuple[WidthTables, ...]
    bytes_per_width: dict[str, float]  # str(width) -> typical bytes/frame (from training), may be empty


def read_export(directory: str | Path) -> OnboardExport:
    """Manifest + tables -> OnboardExport; CheckpointError says what is missing, corrupt or edited."""
    d = Path(directory)
    try:
        man = json.loads((d / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{d}: no readable onboard export ({type(exc).__name__}: {exc})") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise CheckpointError(f"{d}: not a split_perception onboard export")
    if man.get("version") != VERSION:
        raise CheckpointError(f"{d}: onboard export version {man.get('version')}, this code reads {VERSION}: "
                              "run `split-perception export-onboard` again")
    try:
        cfg = model_config_from_dict(man["model_config"])
        for name in [TABLES] + [w["graph"] for w in man["widths"]]:
            if file_sha256(d / name) != man["sha256"][name]:
                raise CheckpointError(f"{d / name}: does not match the manifest (file corrupt or edited)")
        with np.load(d / TABLES, allow_pickle=False) as npz:
            tables = {k: npz[k] for k in npz.files}
        widths = tuple(
            WidthTables(d / w["graph"], int(w["channels"]), tuple(w["latent_shape"]),
                        tables[f"quantized_cdf_{i}"].astype(np.int32), tables[f"cdf_length_{i}"].astype(np.int32),
                        tables[f"offset_{i}"].astype(np.int32), tables[f"medians_{i}"].astype(np.float32))
            for i, w in enumerate(man["widths"]))
    except (KeyError, TypeError, OSError, ValueError, ConfigError) as exc:
        raise CheckpointError(f"{d}: malformed onboard export ({type(exc).__name__}: {exc})") from None
    if len(widths) != len(cfg.widths):
        raise CheckpointError(f"{d}: {len(widths)} graphs for {len(cfg.widths)} widths")
    return OnboardExport(d, man["fingerprint"], man["checkpoint_sha256"], cfg, widths,
                         dict(man.get("bytes_per_width") or {}))


def find_export(model_path: str | Path | None) -> OnboardExport | None:
    """The export that belongs to `model_path` (an export folder, or a checkpoint with an up-to-date
    export beside it), else None. Raises CheckpointError for an export folder that is broken."""
    path = model_file(model_path)
    if path.is_dir():
        return read_export(path)
    d = export_dir_for(path)
    if not (d / MANIFEST).is_file() or not path.is_file():
        return None
    exp = read_export(d)
    return exp if exp.checkpoint_sha256 == file_sha256(path) else None


def widths_and_bytes(model_path: str | Path | None) -> tuple[list[float], dict[str, float]]:
    """Widths and typical bytes/frame per width: from the export when there is one (no torch),
    else from the checkpoint."""
    exp = find_export(model_path)
    if exp is not None:
        return list(exp.cfg.widths), exp.bytes_per_width
    from ..models.checkpoint import read_checkpoint

    ckpt = read_checkpoint(model_file(model_path))
    return list(ckpt["model_config"].widths), dict(ckpt["extra"].get("bytes_per_width") or {})
