"""The student: slimmable onboard encoder + entropy models + offboard decoders + teacher tail.

Follows CompressAI's contract: `forward` (training) returns restored features and likelihoods;
`compress` returns entropy-coded strings; offboard, `entropy_decode` turns them back into the
bottleneck that `decoder_for(width_index)` restores to features.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ..codec.context import ContextCoder
from ..config import ModelConfig, find_width
from ..errors import CheckpointError, PacketError, WidthError
from .compressai_import import EntropyBottleneck
from .context_model import ContextModel
from .decoder import FeatureDecoder, SharedDecoder
from .encoder import FrontProjectionEncoder, SlimmableEncoder
from .onnx_teacher import OnnxTeacher
from .slimmable import WidthState
from .teacher import Teacher

MAX_SYMBOL = 1e4  # no trained bottleneck comes near this; beyond it a payload is garbage


class SplitModel(nn.Module):
    """Entropic-Student-style split network with a slimmable encoder (one weight set, many widths).

    The onboard encoder is a small slimmable conv network (`encoder: conv`) or the teacher's own
    front with a slimmable projection (`encoder: front`). The offboard side keeps one small decoder
    per width (an ensemble, see docs/design.md for why) or one shared by all widths (`shared_decoder`).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg.validate()
        self._state = WidthState(len(cfg.widths) - 1)
        self.teacher = OnnxTeacher(cfg) if cfg.teacher else Teacher(cfg)
        if cfg.encoder == "front":
            self.encoder = FrontProjectionEncoder(cfg, self._state, self.teacher.front_layers(),
                                                  self.teacher.split_channels)
        else:
            self.encoder = SlimmableEncoder(cfg, self._state)
        chans = self.encoder.bottleneck_channels
        self.entropy = nn.ModuleList(EntropyBottleneck(c) for c in chans)  # training rate term, medians
        self.context = nn.ModuleList(ContextModel(c) for c in chans)  # the tables packets are coded with
        self._coders: dict[int, ContextCoder] = {}
        args = (cfg.decoder_channels, self.teacher.split_channels, cfg.decoder_layers, cfg.gdn)
        self.decoders = (SharedDecoder(chans[-1], *args) if cfg.shared_decoder
                         else nn.ModuleList(FeatureDecoder(c, *args, upsample=cfg.latent_stride(i) > cfg.split_stride,
                                                           linear=cfg.decoder_linear)
                                            for i, c in enumerate(chans)))

    # ---- width -------------------------------------------------------------------------
    @property
    def widths(self) -> tuple[float, ...]:
        return tuple(self.cfg.widths)

    @property
    def width(self) -> float:
        return self.cfg.widths[self._state.index]

    @property
    def width_index(self) -> int:
        return self._state.index

    def width_index_of(self, width: float) -> int:
        i = find_width(self.cfg.widths, width)
        if i is not None:
            return i
        raise WidthError(f"width {width} is not one of this model's widths {list(self.cfg.widths)}")

    def decoder_for(self, width_index: int) -> nn.Module:
        """The offboard feature decoder of a width: its own, or the one shared by every width."""
        return self.decoders if self.cfg.shared_decoder else self.decoders[width_index]

    def set_width(self, width: float) -> None:
        """Select the width used from the next call on; nothing is re-allocated."""
        self._state.index = self.width_index_of(width)

    # ---- CompressAI contract -----------------------------------------------------------
    def forward(self, x: Tensor) -> dict:
        """Training pass at the current width: restored split features and likelihoods."""
        i = self._state.index
        y = self.encoder(x)
        y_hat, likelihoods = self.entropy[i](y)
        return {"z_hat": self.decoder_for(i)(y_hat), "likelihoods": {"y": likelihoods}}

    def _coder(self, i: int) -> ContextCoder:
        if i not in self._coders:
            if self.context[i]._quantized_cdf.numel() == 0:
                raise CheckpointError("entropy model has no CDF tables: load the model with "
                                      "split_perception.codec.checkpoint.load_model (tables are stored there)")
            self._coders[i] = ContextCoder(self.context[i].tables())
        return self._coders[i]

    @torch.no_grad()
    def compress(self, x: Tensor) -> dict:
        """Images -> {"strings": one bytes per image, "shape": (h, w) of the bottleneck}."""
        y = self.encoder(x)
        return {"strings": self.entropy_encode(y, self._state.index), "shape": tuple(y.shape[-2:])}

    @torch.no_grad()
    def entropy_encode(self, y: Tensor, width_index: int) -> list[bytes]:
        """Unquantized bottlenecks N x C x h x w of a width -> one context-coded string each."""
        coder = self._coder(width_index)
        symbols = torch.round(y - self.entropy[width_index]._get_medians()).int().cpu().numpy()
        return [coder.encode(s) for s in symbols]

    @torch.no_grad()
    def entropy_decode(self, strings: list[bytes], shape: tuple[int, int], width_index: int) -> Tensor:
        """Strings of the given width -> the quantized bottleneck, the feature decoder's input."""
        coder = self._coder(width_index)
        symbols = np.stack([coder.decode(s, (coder.channels, *shape)) for s in strings])
        y_hat = torch.from_numpy(symbols).float() + self.entropy[width_index]._get_medians()
        if not torch.isfinite(y_hat).all() or y_hat.abs().max() > MAX_SYMBOL:
            raise PacketError("payload decodes to out-of-range symbols: corrupt or forged packet")
        return y_hat

    def quantized_bottleneck(self, x: Tensor) -> Tensor:
        """The integer-valued bottleneck that `compress` codes (for tests and analysis)."""
        i = self._state.index
        y = self.encoder(x)
        return self.entropy[i].quantize(y, "dequantize", self.entropy[i]._get_medians())

    def aux_loss(self) -> Tensor:
        return sum(m.loss() for m in self.entropy)

    def update_tables(self, width_index: int | None = None) -> None:
        """Compute the integer CDF tables (of one width, or all). Called when a checkpoint is written
        and after a refit; raises ValueError for a density that has no valid table (NaN)."""
        for i in range(len(self.entropy)) if width_index is None else (width_index,):
            self.entropy[i].update(force=True)
            self.context[i].update(self.entropy[i])
            self._coders.pop(i, None)
