"""Context-adaptive rANS coding of a bottleneck: each symbol's CDF depends on the row above it.

Numpy and CompressAI's rANS extension only (no torch), so the onboard runtime codes with it too.
A symbol at (channel c, row h, column w) is coded with one of `CONTEXTS` tables of channel c,
chosen by what the decoder already has, the row h - 1 of every channel:
- how many of the 3 symbols above it (w - 1, w, w + 1) in its own channel are nonzero (0-3), and
- how active that 3-symbol window is across all channels (6 levels of the nonzero fraction).
Most symbols are zero, and near an object many channels are active at once, so both counts
predict a symbol's spread better than its channel alone.

The stream is one `encode_with_indexes` call over the symbols in (row, channel, column) order;
the decoder reads it back one row at a time (`decode_stream`), computing each row's contexts
from the row it decoded before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .rans import ans_module

NEIGHBOURS = 4  # 0-3 nonzero symbols above, in the symbol's own channel
ACTIVITY_EDGES = np.array([0.02, 0.05, 0.1, 0.2, 0.35])  # nonzero fraction of the window above, all channels
CONTEXTS = NEIGHBOURS * (len(ACTIVITY_EDGES) + 1)  # tables per channel


def _window_above(nonzero: np.ndarray) -> np.ndarray:
    """[..., C, H, W] bool -> [..., C, H, W] int: nonzero symbols among the 3 above (0 in row 0)."""
    up = np.zeros(nonzero.shape, np.int32)
    up[..., 1:, :] = nonzero[..., :-1, :]
    out = up.copy()
    out[..., :, 1:] += up[..., :, :-1]
    out[..., :, :-1] += up[..., :, 1:]
    return out


def _contexts(window: np.ndarray) -> np.ndarray:
    """Per-channel window counts [..., C, H, W] -> context ids 0..CONTEXTS-1, same shape."""
    channels = window.shape[-3]
    activity = window.sum(axis=-3, keepdims=True) / (3.0 * channels)
    level = np.searchsorted(ACTIVITY_EDGES, activity, side="right")
    return (window * (len(ACTIVITY_EDGES) + 1) + level).astype(np.int32)


def symbol_contexts(symbols: np.ndarray) -> np.ndarray:
    """int symbols [..., C, H, W] -> the context id of every symbol (what its table is chosen by)."""
    return _contexts(_window_above(symbols != 0))


@dataclass(frozen=True)
class ContextTables:
    """The integer CDFs of one width: row c * CONTEXTS + k is channel c's table in context k."""

    quantized_cdf: np.ndarray  # int32 [C * CONTEXTS, max_length + 2]
    cdf_length: np.ndarray  # int32 [C * CONTEXTS]
    offset: np.ndarray  # int32 [C * CONTEXTS]

    @property
    def channels(self) -> int:
        return len(self.cdf_length) // CONTEXTS


class ContextCoder:
    """Codes int32 symbols [C, H, W] to bytes and back with one width's context tables."""

    def __init__(self, tables: ContextTables):
        if len(tables.cdf_length) % CONTEXTS or len(tables.quantized_cdf) != len(tables.cdf_length):
            raise ValueError(f"context tables of {len(tables.cdf_length)} rows, a multiple of {CONTEXTS} is needed")
        self.channels = tables.channels
        lengths = tables.cdf_length.astype(np.int64)
        self._cdfs = [row[:n].tolist() for row, n in zip(tables.quantized_cdf.astype(np.int32), lengths)]
        self._lengths = tables.cdf_length.astype(np.int32)
        self._offsets = tables.offset.astype(np.int32)
        self._base = (np.arange(self.channels, dtype=np.int32) * CONTEXTS)[:, None, None]
        self._ans = ans_module()

    def _indexes(self, window: np.ndarray) -> np.ndarray:
        return self._base + _contexts(window)

    def encode(self, symbols: np.ndarray) -> bytes:
        """int32 [C, H, W] -> one rANS stream (symbols outside a table are escape-coded, never lost)."""
        if symbols.ndim != 3 or symbols.shape[0] != self.channels:
            raise ValueError(f"symbols of shape {symbols.shape}, the tables are for {self.channels} channels")
        idx = self._indexes(_window_above(symbols != 0))
        order = (1, 0, 2)  # rows outermost: the decoder needs row h - 1 of every channel for row h
        return self._ans.RansEncoder().encode_with_indexes(
            symbols.transpose(order).reshape(-1).astype(np.int32).tolist(),
            idx.transpose(order).reshape(-1).tolist(), self._cdfs, self._lengths.tolist(), self._offsets.tolist())

    def decode(self, data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
        """The stream of `encode` -> int32 symbols [C, H, W], one `decode_stream` call per row.

        Each call gets only the tables its row uses, renumbered, because the extension converts
        every table it is handed on every call."""
        c, h, w = shape
        if c != self.channels:
            raise ValueError(f"{c} channels, the tables are for {self.channels}")
        out = np.zeros(shape, np.int32)
        dec = self._ans.RansDecoder()
        dec.set_stream(data)
        above = np.zeros((c, w), bool)
        for row in range(h):
            window = _window_above(np.stack([above, np.zeros_like(above)], axis=1))[:, 1:]
            idx = self._indexes(window).reshape(-1)
            used, local = np.unique(idx, return_inverse=True)
            values = dec.decode_stream(local.astype(np.int32).tolist(), [self._cdfs[k] for k in used],
                                       self._lengths[used].tolist(), self._offsets[used].tolist())
            out[:, row] = np.asarray(values, np.int32).reshape(c, w)
            above = out[:, row] != 0
        return out
