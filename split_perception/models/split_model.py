"""The student: slimmable onboard encoder + one latent codec per width + offboard decoders + teacher tail.

A CompressAI `CompressionModel`: `forward` (training) returns restored features and likelihoods,
`compress` the entropy-coded strings of the current width, `update` computes the CDF tables, `aux_loss`
fits the entropy bottlenecks' quantiles, and `load_state_dict` sizes the stored tables. Offboard, a width's
latent codec (`latent_codecs[width_index].decompress`) turns strings back into the bottleneck that
`decoder_for(width_index)` restores to features.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from ..config import ModelConfig, find_width
from ..errors import WidthError
from .compressai_import import CompressionModel, update_registered_buffers
from .context_latent_codec import TABLE_BUFFERS, ContextLatentCodec
from .decoder import FeatureDecoder, SharedDecoder
from .encoder import FrontProjectionEncoder, SlimmableEncoder
from .onnx_teacher import OnnxTeacher
from .slimmable import WidthState
from .teacher import Teacher

# Checkpoints written before the latent codecs kept each width's factorized bottleneck at `entropy.{i}.`
# and its context counts and tables at `context.{i}.`; a latent codec owns both, as CompressAI's own do.
_EARLIER_KEYS = ((re.compile(r"^entropy\.(\d+)\."), r"latent_codecs.\1.entropy_bottleneck."),
                 (re.compile(r"^context\.(\d+)\."), r"latent_codecs.\1."))


def current_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A student's state dict with the keys of this layout: those of checkpoints written before the latent
    codecs renamed, tensors as they are (a file's fingerprint covers its keys as stored, so it is unchanged)."""
    out = {}
    for key, value in state.items():
        for pattern, repl in _EARLIER_KEYS:
            key = pattern.sub(repl, key)
        out[key] = value
    return out


class SplitModel(CompressionModel):
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
        self.latent_codecs = nn.ModuleList(ContextLatentCodec(c) for c in chans)
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
        out = self.latent_codecs[i](self.encoder(x))
        return {"z_hat": self.decoder_for(i)(out["y_hat"]), "likelihoods": out["likelihoods"]}

    @torch.no_grad()
    def compress(self, x: Tensor) -> dict:
        """Images -> {"strings": [[one bytes per image]], "shape": (h, w) of the bottleneck} at the current width."""
        return self.latent_codecs[self._state.index].compress(self.encoder(x))

    def update(self, scale_table=None, force: bool = False, update_quantiles: bool = False) -> bool:
        """Compute every width's CDF tables (factorized and context, see `ContextLatentCodec.update`; there is
        no Gaussian conditional, so no `scale_table`). Called when a checkpoint is written and before
        evaluation; raises ValueError for a density that has no valid table (NaN)."""
        updated = [c.update(force=force, update_quantiles=update_quantiles) for c in self.latent_codecs]
        return any(updated)

    def load_state_dict(self, state_dict: dict[str, Tensor], strict: bool = True):
        """CompressAI's load, which sizes the entropy bottlenecks' tables to the stored ones; the context tables
        are sized the same way (`update_registered_buffers`). Keys of earlier checkpoints are renamed
        (`current_keys`). Tables a state leaves out (a training state: `update` recomputes them) stay as the
        model has them."""
        own = {k: v for k, v in self.state_dict().items() if k.rsplit(".", 1)[-1] in TABLE_BUFFERS}
        state = {**own, **current_keys(state_dict)}
        for name, module in self.named_modules():
            if isinstance(module, ContextLatentCodec):
                update_registered_buffers(module, name, TABLE_BUFFERS, state)
        return super().load_state_dict(state, strict=strict)
