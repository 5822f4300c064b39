"""Non-learned feature codec: PCA over channels, uniform quantization, rANS with fitted tables.

The baseline a learned bottleneck has to beat, and the tool of `analyze-split`. Principal
components are fitted on training features (channels are the dimension, spatial positions the
samples); the kept coefficients are quantized with one common step and entropy-coded with
CompressAI's rANS coder, one CDF table per component built from training histograms. `encode`
returns real bytes and `decode` reads them back, so a byte count is a bitstream length.
"""

from __future__ import annotations

import struct

import numpy as np
import torch
from torch import Tensor

from ..errors import PacketError
from ..models.compressai_import import RansDecoder, RansEncoder, pmf_to_quantized_cdf
from ..models.pca import PCA, positions

HEADER = struct.Struct("<HHHf")  # latent h, w, components, step: 10 bytes, counted in every frame
PRECISION = 16  # bits of the quantized CDFs (CompressAI's default)
TAIL_MASS = 1e-4  # probability of the escape symbol (values outside the training range, coded raw)
MAX_SYMBOL = 2048  # symbols are clipped to +-this (no real feature comes near); inside it, escapes are lossless
# The grid both benchmarks sweep: components keeping these fractions of the variance, times
# quantization steps of these multiples of the features' RMS (sqrt of the mean channel variance).
VARIANCE_LEVELS = (0.90, 0.95, 0.99)
STEP_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)


class PCACodec:
    """Keep `components` principal components, quantize them with `step`, entropy-code them.

    Args:
        pca: the fitted components.
        components: how many to keep (1..C).
        step: uniform quantization step of every kept coefficient (feature units).
        training: N x C training samples whose histograms become the CDF tables.
    """

    def __init__(self, pca: PCA, components: int, step: float, training: Tensor):
        if not 1 <= components <= pca.channels or step <= 0:
            raise ValueError(f"need 1 <= components <= {pca.channels} and step > 0")
        self.pca, self.n, self.step = pca, components, float(step)
        q = self._quantize(training).numpy()
        self.offsets, self.cdfs = [], []
        for col in q.T:
            lo, hi = int(col.min()), int(col.max())
            counts = np.bincount(col - lo, minlength=hi - lo + 1).astype(np.float64)
            pmf = counts / counts.sum() * (1 - TAIL_MASS)
            self.offsets.append(lo)
            self.cdfs.append(pmf_to_quantized_cdf(torch.from_numpy(np.append(pmf, TAIL_MASS)), PRECISION).tolist())
        self.cdf_lengths = [len(c) for c in self.cdfs]

    def _quantize(self, samples: Tensor) -> Tensor:
        q = torch.round(self.pca.project(samples, self.n) / self.step)
        return q.clamp(-MAX_SYMBOL, MAX_SYMBOL - 1).to(torch.int32)

    def quantize(self, z: Tensor) -> Tensor:
        """1 x C x H x W features -> n x (H*W) integer symbols, component-major."""
        return self._quantize(positions(z)).T.contiguous()

    def dequantize(self, q: Tensor, hw: tuple[int, int]) -> Tensor:
        """n x (H*W) symbols -> 1 x C x H x W reconstructed features (float32)."""
        x = self.pca.reconstruct(q.T.double() * self.step)
        return x.T.reshape(1, self.pca.channels, *hw).float()

    def nmse(self, samples: Tensor) -> float:
        """Reconstruction error of quantize -> dequantize on N x C samples, relative to their variance."""
        x = samples.double()
        err = self.pca.reconstruct(self._quantize(x).double() * self.step) - x
        return float(err.pow(2).sum() / (x - self.pca.mean).pow(2).sum().clamp_min(1e-30))

    def _indexes(self, hw: tuple[int, int]) -> list[int]:
        return np.repeat(np.arange(self.n, dtype=np.int32), hw[0] * hw[1]).tolist()

    def encode(self, z: Tensor) -> bytes:
        """1 x C x H x W features -> header + rANS bitstream."""
        hw = tuple(z.shape[-2:])
        q = self.quantize(z)
        body = RansEncoder().encode_with_indexes(q.reshape(-1).tolist(), self._indexes(hw), self.cdfs,
                                                 self.cdf_lengths, self.offsets)
        return HEADER.pack(*hw, self.n, self.step) + body

    def decode(self, data: bytes) -> Tensor:
        """Bytes from `encode` -> 1 x C x H x W features."""
        if len(data) < HEADER.size:
            raise PacketError(f"PCA bitstream of {len(data)} bytes is shorter than its header")
        h, w, n, step = HEADER.unpack_from(data)
        if n != self.n or abs(step - self.step) > 1e-6 * self.step:
            raise PacketError(f"bitstream made with {n} components, step {step}; this codec has {self.n}, {self.step}")
        values = RansDecoder().decode_with_indexes(data[HEADER.size:], self._indexes((h, w)), self.cdfs,
                                                   self.cdf_lengths, self.offsets)
        return self.dequantize(torch.tensor(values, dtype=torch.int32).reshape(n, h * w), (h, w))

    def __call__(self, z: Tensor) -> tuple[Tensor, int]:
        """The feature transform `evaluate_teacher` takes: features -> (decoded features, bytes)."""
        data = self.encode(z)
        return self.decode(data), len(data)


def grid(pca: PCA, levels=VARIANCE_LEVELS, scales=STEP_SCALES) -> list[dict]:
    """The (components, step) settings swept: one dict per point, with what it means."""
    out = []
    for level in levels:
        n = pca.components_for(level)
        for scale in scales:
            out.append({"variance_level": level, "components": n, "variance_kept": float(pca.explained()[n - 1]),
                        "step_scale": scale, "step": scale * pca.rms()})
    return out
