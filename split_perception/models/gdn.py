"""Generalized divisive normalization (Balle et al.), slimmable: the layer runs on a prefix of its channels.

GDN is the normalization of learned image codecs and of the Entropic Student's bottleneck: it
gaussianizes features, which makes them cheaper to entropy-code than after ReLU. Parameters are
kept non-negative by squaring (plain tensor ops, so the layer exports to ONNX as it is).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPS = 1e-6


class GDN(nn.Module):
    """y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2); `inverse=True` multiplies instead (IGDN).

    A narrower input (fewer channels than `channels`) uses the leading block of beta and gamma,
    so one parameter set serves every width of a slimmable network.
    """

    def __init__(self, channels: int, inverse: bool = False, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(torch.eye(channels) * gamma_init ** 0.5)

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        if c > self.beta.numel():
            raise ValueError(f"GDN has {self.beta.numel()} channels, input has {c}")
        beta = self.beta[:c] ** 2 + EPS
        gamma = (self.gamma[:c, :c] ** 2).reshape(c, c, 1, 1)
        norm = F.conv2d(x * x, gamma, beta)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)
