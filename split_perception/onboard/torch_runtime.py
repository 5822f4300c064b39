"""The onboard encoder on torch: the checkpoint's own model, coded by its latent codecs."""

from __future__ import annotations

import numpy as np
import torch

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

    @torch.no_grad()
    def encode(self, rgb: np.ndarray, frame_id: int = 0, stamp_ns: int = 0) -> bytes:
        """RGB uint8 HxWx3 -> one packet (bytes). Raises ImageError for a bad image."""
        x = self.preprocess(rgb)
        width_index, width = self.model.width_index, self.model.width  # one consistent snapshot
        out = self.model.compress(x)
        channels = self.model.encoder.bottleneck_channels[width_index]
        packet = Packet(self._fp, width_index, width, frame_id, stamp_ns, tuple(rgb.shape[:2]),
                        (channels, *out["shape"]), out["strings"][0][0])
        return packet.to_bytes()
