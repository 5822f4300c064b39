"""Onboard runtime: RGB frame -> packet bytes at the current width (what the encoder node calls).

Two implementations make the same packets: ONNX Runtime from the checkpoint's onboard export (no
torch: `onnx_runtime.py`) and torch from the checkpoint itself (`torch_runtime.py`). `runtime="auto"`
takes ONNX when an up-to-date export is there (`split-perception export-onboard`), else torch. Both
provide `EncoderRuntime`; `OnboardEncoder(...)` opens one and returns it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..config import RUNTIMES, ModelConfig
from ..errors import CheckpointError, ConfigError
from .export_files import export_dir_for, find_export


class EncoderRuntime(Protocol):
    """What each onboard runtime (`OnnxEncoder`, `TorchEncoder`) provides: a model loaded once, whose
    `set_width` switches width for the next frame without reloading anything."""

    runtime: str  # "onnx" or "torch"
    fingerprint: str
    cfg: ModelConfig

    @property
    def model(self) -> Any:
        """The torch model; the onnx runtime raises AttributeError (open it with runtime='torch')."""

    @property
    def widths(self) -> tuple[float, ...]: ...

    @property
    def width(self) -> float: ...

    def set_width(self, width: float) -> None:
        """Raises WidthError for a width the model does not have."""

    def preprocess(self, rgb: np.ndarray) -> Any:
        """RGB -> the runtime's network input (1x3xHxW: numpy for onnx, a tensor for torch)."""

    def frame(self, rgb: np.ndarray, frame_id: int = 0, stamp_ns: int = 0) -> tuple[Any, np.ndarray]:
        """RGB -> the frame's version-2 `Packet` without its payload, and its int32 symbols CxHxW."""

    def coder(self, width_index: int) -> Any:
        """The width's `ContextCoder` (the symbols' entropy coder)."""

    def encode(self, rgb: np.ndarray, frame_id: int = 0, stamp_ns: int = 0) -> bytes:
        """RGB uint8 HxWx3 -> one version-2 packet (bytes), decodable alone. Raises ImageError for a bad
        image. `TemporalEncoder` (temporal.py) codes frames against acknowledged ones instead."""


def _torch(model_path, threads):
    import torch

    from .torch_runtime import TorchEncoder

    if threads:
        torch.set_num_threads(int(threads))
    return TorchEncoder(model_path)


def _open(model_path, runtime: str, threads: int | None) -> EncoderRuntime:
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {list(RUNTIMES)}, got {runtime!r}")
    if model_path and Path(model_path).is_dir() and runtime == "torch":
        raise CheckpointError(f"{model_path} is an onboard export: the torch runtime needs the checkpoint")
    if runtime == "torch":
        return _torch(model_path, threads)
    export = find_export(model_path)
    if runtime == "onnx" and export is None:
        raise CheckpointError(f"no up-to-date onboard export at {export_dir_for(model_path)}: run "
                              "`split-perception export-onboard`")
    if export is None or importlib.util.find_spec("onnxruntime") is None:
        return _torch(model_path, threads)
    from .onnx_runtime import OnnxEncoder

    return OnnxEncoder(export, threads)


class OnboardEncoder:
    """Opens a model's onboard encoder: `OnboardEncoder(...)` returns the `EncoderRuntime` itself.

    Args:
        model_path: checkpoint (default: the bundled model) or an onboard export folder.
        runtime: "auto", "onnx" or "torch".
        threads: CPU threads of the runtime (ONNX Runtime intra-op threads, or torch's).
    """

    def __new__(cls, model_path: str | Path | None = None, runtime: str = "auto",
                threads: int | None = None) -> EncoderRuntime:
        return _open(model_path, runtime, threads)

    @staticmethod
    def from_model(model, fingerprint: str) -> EncoderRuntime:
        """Wrap an in-memory torch model (training-time evaluation); its CDF tables must be computed."""
        from .torch_runtime import TorchEncoder

        return TorchEncoder.from_model(model, fingerprint)
