"""The onboard encoder on torch: the checkpoint's own model, coded by its latent codecs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ..codec.context import ContextCoder
from ..codec.packet import Packet
from ..models.loaded_model import ModelRuntime
from .preprocess import model_input_tensor


class TorchEncoder(ModelRuntime):
    """Loads a checkpoint once; `set_width` switches width for the next frame without reloading."""

    runtime = "torch"

    @property
    def widths(self) -> tuple[float, ...]:
        return self.model.widths

    @property
    def width(self) -> float:
        return self.model.width

    def set_width(self, width: float) -> None:
        """Raises WidthError for a width the model does not have."""
        self.model.set_width(width)

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        return model_input_tensor(rgb, self.cfg)

    def coder(self, width_index: int) -> ContextCoder:
        """The context coder of a width."""
        return self.model.latent_codecs[width_index].coder()

    @torch.no_grad()
    def frame(self, rgb: np.ndarray, frame_id: int = 0, stamp_ns: int = 0) -> tuple[Packet, np.ndarray]:
        """RGB -> the frame's version-2 packet without its payload, and its int32 symbols CxHxW."""
        x = self.preprocess(rgb)
        width_index, width = self.model.width_index, self.model.width  # one consistent snapshot
        symbols = self.model.latent_codecs[width_index].symbols(self.model.encoder(x))[0]
        packet = Packet(self._fp, width_index, width, frame_id, stamp_ns, tuple(rgb.shape[:2]), symbols.shape, b"")
        return packet, symbols

    def encode(self, rgb: np.ndarray, frame_id: int = 0, stamp_ns: int = 0) -> bytes:
        """RGB uint8 HxWx3 -> one packet (bytes). Raises ImageError for a bad image."""
        packet, symbols = self.frame(rgb, frame_id, stamp_ns)
        return replace(packet, payload=self.coder(packet.width_index).encode(symbols)).to_bytes()
