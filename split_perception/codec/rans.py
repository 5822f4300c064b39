"""CompressAI's rANS coder (its C++ extension `compressai.ans`) without importing torch.

`import compressai.ans` runs `compressai/__init__.py`, which imports torch; the extension itself
links only the C++ runtime, so the onboard side loads the module file directly. The bitstream is
the one `EntropyBottleneck.compress` writes, so the offboard decoder reads it unchanged.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

import numpy as np

from ..errors import ConfigError

_NAME = "compressai.ans"


def ans_module():
    """The loaded `compressai.ans` extension (shared with CompressAI when it is imported too)."""
    if _NAME in sys.modules:  # one copy per process: a second load would register its types twice
        return sys.modules[_NAME]
    spec = importlib.util.find_spec("compressai")  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("compressai is not installed (the onboard coder is its `ans` extension)")
    files = sorted(p for d in spec.submodule_search_locations for p in Path(d).glob("ans.*")
                   if p.suffix in (".so", ".pyd"))
    if not files:
        raise ConfigError(f"compressai's `ans` extension not found in {spec.submodule_search_locations}")
    loader = importlib.machinery.ExtensionFileLoader(_NAME, str(files[0]))
    module = importlib.util.module_from_spec(importlib.util.spec_from_file_location(_NAME, files[0], loader=loader))
    loader.exec_module(module)
    sys.modules[_NAME] = module
    return module


class BottleneckEncoder:
    """Entropy-codes one width's bottleneck as CompressAI's EntropyBottleneck.compress does.

    Symbols are round(y - median) per channel (half to even, as torch.round), coded with the
    channel's own stored CDF (index = channel), offsets and lengths as stored.
    """

    def __init__(self, quantized_cdf: np.ndarray, cdf_length: np.ndarray, offset: np.ndarray,
                 medians: np.ndarray, latent_shape: tuple[int, int, int]):
        c, h, w = latent_shape
        self._cdf = quantized_cdf.astype(np.int32).tolist()
        self._cdf_length = cdf_length.reshape(-1).astype(np.int32).tolist()
        self._offset = offset.reshape(-1).astype(np.int32).tolist()
        self._medians = medians.reshape(1, -1, 1, 1).astype(np.float32)
        self._indexes = np.broadcast_to(np.arange(c, dtype=np.int32)[:, None, None], (c, h, w)).reshape(-1).tolist()
        self.shape = (1, c, h, w)
        self._coder = ans_module().RansEncoder()

    def symbols(self, y: np.ndarray) -> np.ndarray:
        """float32 1xCxHxW -> int32 symbols (what is coded)."""
        return np.round(y - self._medians).astype(np.int32)

    def encode(self, y: np.ndarray) -> bytes:
        if y.shape != self.shape:
            raise ValueError(f"bottleneck of shape {y.shape}, the tables are for {self.shape}")
        return self._coder.encode_with_indexes(self.symbols(y).reshape(-1).tolist(), self._indexes, self._cdf,
                                               self._cdf_length, self._offset)
