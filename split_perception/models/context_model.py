"""Symbol counts per (channel, context) and the integer CDF tables the context coder codes with.

The factorized EntropyBottleneck stays the training rate term and fixes each channel's median
and support; this model only refines its pmf per context (see `codec/context.py`). A context's
pmf mixes its counted symbols with the factorized pmf, weighted as `PRIOR_COUNT` symbols, so a
rare context codes close to the factorized model and zero counts code exactly like it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ..codec.context import CONTEXTS, ContextTables, symbol_contexts
from .compressai_import import EntropyBottleneck, pmf_to_quantized_cdf

COUNT_RANGE = 32  # symbols -32..32 are counted; rarer ones keep the factorized pmf's share
PRIOR_COUNT = 32.0  # weight of the factorized pmf in every context, in symbols


class ContextModel(nn.Module):
    """One width's counts (buffer `counts`, int32 [C, CONTEXTS, 2 * COUNT_RANGE + 1]) and tables."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("counts", torch.zeros(channels, CONTEXTS, 2 * COUNT_RANGE + 1, dtype=torch.int32))
        # Same names as EntropyBottleneck's tables, so checkpoints store and resize them alike.
        self.register_buffer("_quantized_cdf", torch.IntTensor())
        self.register_buffer("_cdf_length", torch.IntTensor())
        self.register_buffer("_offset", torch.IntTensor())

    @torch.no_grad()
    def fit(self, symbols: Tensor) -> None:
        """Replace the counts by those of int symbols [N, C, H, W] (round(y - median), as coded)."""
        s = symbols.cpu().numpy().astype(np.int64)
        ctx = symbol_contexts(s)
        keep = np.abs(s) <= COUNT_RANGE
        chan = np.broadcast_to(np.arange(s.shape[1])[None, :, None, None], s.shape)
        counts = np.zeros(self.counts.shape, np.int64)
        np.add.at(counts, (chan[keep], ctx[keep], s[keep] + COUNT_RANGE), 1)
        self.counts.copy_(torch.from_numpy(np.minimum(counts, np.iinfo(np.int32).max).astype(np.int32)))

    @torch.no_grad()
    def update(self, eb: EntropyBottleneck) -> None:
        """Tables from the counts and `eb`'s factorized pmf (call after `eb.update`)."""
        pmf, tail, offset, length = _factorized_pmf(eb)
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
                t = (outside + PRIOR_COUNT * tail[c]) / total
                rows.append(pmf_to_quantized_cdf([*p.tolist(), float(t)], eb.entropy_coder_precision))
                lengths.append(n + 2)
                offsets.append(int(offset[c]))
        cdf = torch.zeros(len(rows), max(lengths), dtype=torch.int32)
        for r, row in enumerate(rows):
            cdf[r, :len(row)] = torch.tensor(row, dtype=torch.int32)
        self._quantized_cdf = cdf
        self._cdf_length = torch.tensor(lengths, dtype=torch.int32)
        self._offset = torch.tensor(offsets, dtype=torch.int32)

    def tables(self) -> ContextTables:
        return ContextTables(self._quantized_cdf.cpu().numpy(), self._cdf_length.cpu().numpy(),
                             self._offset.cpu().numpy())


def _factorized_pmf(eb: EntropyBottleneck) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pmf, tail mass, offset and pmf length per channel that `EntropyBottleneck.update` builds
    its tables from (its own steps, so zero counts reproduce its tables exactly)."""
    medians = eb.quantiles[:, 0, 1]
    minima = torch.ceil(medians - eb.quantiles[:, 0, 0]).int().clamp_min(0)
    maxima = torch.ceil(eb.quantiles[:, 0, 2] - medians).int().clamp_min(0)
    pmf_start = medians - minima
    pmf_length = maxima + minima + 1
    samples = torch.arange(int(pmf_length.max()), device=pmf_start.device)[None, :] + pmf_start[:, None, None]
    pmf, lower, upper = eb._likelihood(samples, stop_gradient=True)
    pmf = pmf[:, 0, :]
    tail = torch.sigmoid(lower[:, 0, :1]) + torch.sigmoid(-upper[:, 0, -1:])
    return tuple(t.cpu().numpy() for t in (pmf.double(), tail[:, 0].double(), -minima, pmf_length))
