"""The symbol rule: which integer a bottleneck value is coded as, and which value a decoded integer restores.

Channel c's values are coded as `round(y - median_c)` (half to even, as `torch.round` rounds) and restored as
that integer plus `median_c`, in float32; the medians are those of the width's factorized entropy bottleneck.
Numpy only, so the torch-free onboard runtime applies the same rule as the torch codec and the entropy refit:
the three make the same symbols to the bit.
"""

from __future__ import annotations

import numpy as np


def _per_channel(medians: np.ndarray) -> np.ndarray:
    return np.asarray(medians, np.float32).reshape(-1, 1, 1)


def to_symbols(y: np.ndarray, medians: np.ndarray) -> np.ndarray:
    """float32 bottleneck [..., C, H, W] and the C medians -> the int32 symbols that are coded, same shape."""
    return np.round(y - _per_channel(medians)).astype(np.int32)


def from_symbols(symbols: np.ndarray, medians: np.ndarray) -> np.ndarray:
    """int32 symbols [..., C, H, W] and the C medians -> the float32 quantized bottleneck (the decoder's input)."""
    return symbols.astype(np.float32) + _per_channel(medians)
