"""Checkpoints: fp16 weights, config and the entropy models' integer CDF tables in one file.

The CDF tables are computed once, when the checkpoint is written, and loaded verbatim, so an
encoder and a decoder on different machines code with identical integer tables (CompressAI users
report corrupted decodes when each side recomputes them). Files load with
`torch.load(..., weights_only=True)`: nothing in them is executed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from ..config import model_config_from_dict, to_dict
from ..errors import CheckpointError, ConfigError
from ..model_files import model_file
from .split_model import SplitModel
from .teacher import Teacher

FORMAT = "split_perception.checkpoint"
VERSION = 1


def fingerprint(state_dict: dict[str, torch.Tensor], cfg: dict) -> str:
    """SHA-256 over the config as stored, tensor names, dtypes, shapes and bytes (weights and CDF tables).

    The stored config dict is hashed (not one re-read with today's defaults), so a checkpoint keeps
    its fingerprint when later versions add configuration fields.
    """
    h = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode())
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _stored(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as stored: fp16 floats, on the CPU whatever device the model trained on."""
    return {k: (v.half() if v.is_floating_point() else v).cpu().clone()
            for k, v in model.state_dict().items()}


def save_checkpoint(model: nn.Module, path: str | Path, extra: dict | None = None) -> str:
    """Round weights to fp16 in place, compute CDF tables (student), write the file; return fingerprint."""
    with torch.no_grad():
        for v in model.state_dict().values():
            if v.is_floating_point():
                v.copy_(v.half().float())
    if isinstance(model, SplitModel):
        model.update(force=True)
    kind = "student" if isinstance(model, SplitModel) else "teacher"
    state = _stored(model)
    fp = fingerprint(state, to_dict(model.cfg))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": FORMAT, "version": VERSION, "kind": kind, "model_config": to_dict(model.cfg),
                "state_dict": state, "fingerprint": fp, "extra": extra or {}}, tmp)
    tmp.replace(path)  # atomic: an interrupted save never leaves a half-written checkpoint
    return fp


def read_checkpoint(path: str | Path) -> dict:
    """Load and validate the container (weights_only=True); raise CheckpointError with the reason."""
    path = model_file(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, pickle with forbidden globals, truncated file...
        raise CheckpointError(f"{path}: not a loadable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a split_perception checkpoint (a torchvision state dict goes "
                              "to `train.teacher_init` instead)")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt.get('version')}, this code reads {VERSION}")
    stored_config = ckpt["stored_model_config"] = ckpt.get("model_config")  # as written, for the fingerprint
    try:
        ckpt["model_config"] = model_config_from_dict(stored_config)
    except (ConfigError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: bad model config: {exc}") from None
    if fingerprint(ckpt["state_dict"], stored_config) != ckpt.get("fingerprint"):
        raise CheckpointError(f"{path}: fingerprint does not match the weights (file corrupt or edited)")
    return ckpt


def load_model(path: str | Path | None = None, kind: str = "student") -> tuple[nn.Module, str]:
    """Checkpoint -> (model in eval mode, fingerprint). The stored CDF tables are used as they are."""
    path = model_file(path)
    ckpt = read_checkpoint(path)
    return model_from_checkpoint(ckpt, path, kind), ckpt["fingerprint"]


def model_from_checkpoint(ckpt: dict, path: str | Path, kind: str = "student") -> nn.Module:
    """The model (eval mode) of a container that `read_checkpoint` returned; `path` names it in errors.
    For callers that also need the container's metadata, so the file is read once. The stored CDF tables
    are loaded as they are (`SplitModel.load_state_dict` sizes the buffers to them)."""
    if ckpt["kind"] != kind:
        raise CheckpointError(f"{path}: holds a {ckpt['kind']} model, a {kind} model is needed here")
    model = SplitModel(ckpt["model_config"]) if kind == "student" else Teacher(ckpt["model_config"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    counted = kind == "teacher" or any(k.endswith(".counts") for k in state)
    if not counted:  # written before context coding: no counts, so it codes as the factorized model did
        state.update({k: v for k, v in model.state_dict().items() if k.endswith(".counts")})
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the architecture: {exc}") from None
    if kind == "student":
        empty = [i for i, c in enumerate(model.latent_codecs)
                 if c.entropy_bottleneck.quantized_cdf.numel() == 0 or (counted and not len(c.tables().cdf_length))]
        if empty:
            raise CheckpointError(f"{path}: entropy tables missing for width indices {empty}")
        if not counted:
            model.update()  # the context tables, from zero counts: the factorized model's tables
    return model.eval()


def load_torchvision_detector(teacher: Teacher, path: str | Path) -> list[str]:
    """Load a torchvision `ssdlite320_mobilenet_v3_large` state dict into the teacher's detector.

    Tensors whose shape differs (e.g. a classifier for another class count) are skipped and
    returned; a file that is not such a state dict raises CheckpointError.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a loadable state dict ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    own = teacher.det.state_dict()
    if not isinstance(state, dict) or not any(k.startswith("backbone.features.") for k in state):
        raise CheckpointError(f"{path}: not an ssdlite320_mobilenet_v3_large state dict")
    skipped = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    missing = [k for k in own if k not in state]
    backbone_missing = [k for k in missing if k.startswith("backbone.")]
    if backbone_missing or len(skipped) > len(state) // 4:
        raise CheckpointError(f"{path}: does not match the teacher (backbone_width_mult="
                              f"{teacher.cfg.backbone_width_mult}); {len(skipped)} mismatched, "
                              f"{len(backbone_missing)} backbone tensors missing")
    teacher.det.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=False)
    return skipped
