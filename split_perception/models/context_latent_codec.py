"""One width's entropy coding as a CompressAI latent codec: a factorized entropy bottleneck refined per context.

`ContextLatentCodec` has the contract of `compressai.latent_codecs`: `forward(y)` (training) gives the
noisy `y_hat` and its likelihoods, `compress(y)` gives {"strings": [[one bytes per image]], "shape": (h, w)}
and `decompress(strings, shape)` gives {"y_hat": ...} back. Its `entropy_bottleneck` (CompressAI's
factorized model) is the training rate term and fixes each channel's median and support; the packets are
coded with context tables that refine its pmf per context (`codec/context.py`). A context's pmf mixes the
symbols counted in it with the factorized pmf, weighted as `PRIOR_COUNT` symbols, so a rare context codes
close to the factorized model and zero counts code exactly like it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..codec.context import CONTEXTS, ContextCoder, ContextTables, symbol_contexts
from ..codec.symbols import from_symbols, to_symbols
from ..errors import CheckpointError, PacketError
from .compressai_import import EntropyBottleneck, LatentCodec, pmf_to_quantized_cdf

COUNT_RANGE = 32  # symbols -32..32 are counted; rarer ones keep the factorized pmf's share
PRIOR_COUNT = 32.0  # weight of the factorized pmf in every context, in symbols
MAX_SYMBOL = 1e4  # no trained bottleneck comes near this; beyond it a payload is garbage
TABLE_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")  # CompressAI's CDF table buffers, sized on update
CODING_BUFFERS = (*TABLE_BUFFERS, "counts")  # what `update` and a refit recompute for a changed encoder


class DensityEntropyBottleneck(EntropyBottleneck):
    """CompressAI's factorized entropy bottleneck, keeping the density its `update` quantizes into tables:
    the pmf ([C, max length], float32) and tail mass ([C, 1]) of each channel. The context tables refine
    exactly that density, with CompressAI's own computation of it."""

    density: tuple[Tensor, Tensor] | None = None

    def _pmf_to_cdf(self, pmf, tail_mass, pmf_length, max_length):
        self.density = (pmf.detach(), tail_mass.detach())
        return super()._pmf_to_cdf(pmf, tail_mass, pmf_length, max_length)


class ContextLatentCodec(LatentCodec):
    """One width's factorized bottleneck, symbol counts (buffer `counts`, int32 [C, CONTEXTS,
    2 * COUNT_RANGE + 1]) and context tables (the buffers of `TABLE_BUFFERS`, C * CONTEXTS rows)."""

    def __init__(self, channels: int):
        super().__init__()
        self.entropy_bottleneck = DensityEntropyBottleneck(channels)
        self.register_buffer("counts", torch.zeros(channels, CONTEXTS, 2 * COUNT_RANGE + 1, dtype=torch.int32))
        for name in TABLE_BUFFERS:  # the names of CompressAI's tables: checkpoints store and resize them alike
            self.register_buffer(name, torch.IntTensor())
        self._coder: ContextCoder | None = None

    def _load_from_state_dict(self, *args, **kwargs):
        self._coder = None  # made from the tables being replaced
        super()._load_from_state_dict(*args, **kwargs)

    @property
    def medians(self) -> Tensor:
        """Each channel's median [C] (its symbols are coded around it: `codec/symbols.py`)."""
        return self.entropy_bottleneck.quantiles[:, 0, 1].detach()

    def _medians(self) -> np.ndarray:
        return self.medians.cpu().numpy()

    def tables(self) -> ContextTables:
        return ContextTables(self._quantized_cdf.cpu().numpy(), self._cdf_length.cpu().numpy(),
                             self._offset.cpu().numpy())

    def coder(self) -> ContextCoder:
        """The rANS context coder of the current tables."""
        if self._coder is None:
            if self._quantized_cdf.numel() == 0:
                raise CheckpointError("entropy model has no CDF tables: load the model with "
                                      "split_perception.models.checkpoint.load_model (tables are stored there)")
            self._coder = ContextCoder(self.tables())
        return self._coder

    # ---- CompressAI's latent codec contract ----------------------------------------------
    def forward(self, y: Tensor) -> dict:
        """Training: the factorized model's noisy (or, in eval mode, rounded) y_hat and its likelihoods."""
        y_hat, likelihoods = self.entropy_bottleneck(y)
        return {"likelihoods": {"y": likelihoods}, "y_hat": y_hat}

    @torch.no_grad()
    def compress(self, y: Tensor) -> dict:
        """Unquantized bottlenecks N x C x h x w -> {"strings": [[one context-coded string per image]],
        "shape": (h, w)}."""
        coder = self.coder()
        return {"strings": [[coder.encode(s) for s in self.symbols(y)]], "shape": tuple(y.shape[-2:])}

    def symbols(self, y: Tensor) -> np.ndarray:
        """Unquantized bottlenecks N x C x h x w -> the int32 symbols they are coded as (`codec/symbols.py`)."""
        return to_symbols(y.detach().cpu().numpy(), self._medians())

    @torch.no_grad()
    def decompress(self, strings: list[list[bytes]], shape: tuple[int, int]) -> dict:
        """`compress`'s strings and shape -> {"y_hat": the quantized bottlenecks N x C x h x w, the feature
        decoder's input}. Raises PacketError for a payload that decodes to out-of-range values."""
        (y_strings,) = strings
        coder = self.coder()
        return {"y_hat": self.y_hat(np.stack([coder.decode(s, (coder.channels, *shape)) for s in y_strings]))}

    def y_hat(self, symbols: np.ndarray) -> Tensor:
        """Decoded int32 symbols N x C x h x w -> the quantized bottlenecks (the feature decoder's input).
        Raises PacketError for out-of-range values."""
        y_hat = torch.from_numpy(from_symbols(symbols, self._medians()))
        if not torch.isfinite(y_hat).all() or y_hat.abs().max() > MAX_SYMBOL:
            raise PacketError("payload decodes to out-of-range symbols: corrupt or forged packet")
        return y_hat

    # ---- tables ------------------------------------------------------------------------------
    @torch.no_grad()
    def count(self, y: Tensor) -> None:
        """Replace the counts by those of the symbols that unquantized bottlenecks y [N, C, H, W] are coded as."""
        s = to_symbols(y.cpu().numpy(), self._medians()).astype(np.int64)
        ctx = symbol_contexts(s)
        keep = np.abs(s) <= COUNT_RANGE
        chan = np.broadcast_to(np.arange(s.shape[1])[None, :, None, None], s.shape)
        counts = np.zeros(self.counts.shape, np.int64)
        np.add.at(counts, (chan[keep], ctx[keep], s[keep] + COUNT_RANGE), 1)
        self.counts.copy_(torch.from_numpy(np.minimum(counts, np.iinfo(np.int32).max).astype(np.int32)))

    @torch.no_grad()
    def update(self, force: bool = False, update_quantiles: bool = False) -> bool:
        """Compute the factorized tables (`EntropyBottleneck.update`) and the context tables from its density
        and the counts; as in CompressAI, tables already there are kept unless `force`. Returns whether the
        tables were computed; raises ValueError for a density that has no valid table (NaN)."""
        eb = self.entropy_bottleneck
        if self._quantized_cdf.numel() > 0 and eb.quantized_cdf.numel() > 0 and not force:
            return False
        eb.update(force=True, update_quantiles=update_quantiles)
        pmf, tail = (t.cpu().double().numpy() for t in eb.density)
        offset, length = eb.offset.cpu().numpy(), (eb.cdf_length - 2).cpu().numpy()
        channels, contexts = self.counts.shape[:2]
        counts = self.counts.cpu().double().numpy()
        rows, lengths, offsets = [], [], []
        for c in range(channels):
            n = int(length[c])
            sym = np.arange(n) + int(offset[c])  # the symbol of each pmf entry
            inside = np.abs(sym) <= COUNT_RANGE
            for k in range(contexts):
                hist = np.zeros(n)
                hist[inside] = counts[c, k, sym[inside] + COUNT_RANGE]
                outside = counts[c, k].sum() - hist.sum()  # counted, but beyond the table: escape-coded
                total = counts[c, k].sum() + PRIOR_COUNT
                p = (hist + PRIOR_COUNT * pmf[c, :n]) / total
                t = (outside + PRIOR_COUNT * tail[c, 0]) / total
                rows.append(pmf_to_quantized_cdf(torch.from_numpy(np.append(p, t)), eb.entropy_coder_precision))
                lengths.append(n + 2)
                offsets.append(int(offset[c]))
        cdf = torch.zeros(len(rows), max(lengths), dtype=torch.int32)
        for r, row in enumerate(rows):
            cdf[r, :len(row)] = row
        self._quantized_cdf = cdf
        self._cdf_length = torch.tensor(lengths, dtype=torch.int32)
        self._offset = torch.tensor(offsets, dtype=torch.int32)
        self._coder = None
        return True
