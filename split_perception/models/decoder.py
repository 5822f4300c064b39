"""The offboard feature decoder: restores the teacher's split-point tensor from a bottleneck."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .gdn import GDN


class FeatureDecoder(nn.Module):
    """Bottleneck (C_in channels) -> teacher features at the split point (C_out channels), same size.

    `layers` 3x3 convolutions of `hidden` channels, then a 1x1 projection. With `gdn` the first
    normalization is an inverse GDN (undoing the encoder's GDN, as in learned image codecs) and the
    others batch norm + ReLU. The decoder runs offboard, where capacity is cheap. With `upsample`
    the bottleneck is on a grid twice as coarse (a coarse width) and is first repeated over 2x2.
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int, layers: int = 2, gdn: bool = False,
                 upsample: bool = False, linear: bool = False):
        super().__init__()
        self.upsample = upsample
        # `linear`: a 1x1 path beside the convolutions, so the decoder can start as the linear (PCA)
        # reconstruction and its convolutions learn only what that misses (`init_linear`)
        self.linear = nn.Conv2d(in_channels, out_channels, 1) if linear else None
        mods: list[nn.Module] = []
        for i in range(layers):
            mods.append(nn.Conv2d(in_channels if i == 0 else hidden, hidden, 3, padding=1, bias=gdn and i == 0))
            if gdn and i == 0:
                mods.append(GDN(hidden, inverse=True))
            else:
                mods += [nn.BatchNorm2d(hidden), nn.ReLU(inplace=True)]
        mods.append(nn.Conv2d(hidden, out_channels, 1))
        self.g_s = nn.Sequential(*mods)

    def forward(self, y: Tensor) -> Tensor:
        y = F.interpolate(y, scale_factor=2.0, mode="nearest") if self.upsample else y
        return self.g_s(y) if self.linear is None else self.g_s(y) + self.linear(y)

    @torch.no_grad()
    def init_linear(self, weight: Tensor, bias: Tensor) -> None:
        """Start as the linear reconstruction `weight @ y + bias` (C_out x C_in, C_out): the linear path
        set to it, the convolutions' last layer to zero."""
        self.linear.weight.copy_(weight[:, :, None, None])
        self.linear.bias.copy_(bias)
        nn.init.zeros_(self.g_s[-1].weight)
        nn.init.zeros_(self.g_s[-1].bias)

    @torch.no_grad()
    def scale_input(self, factor: float) -> None:
        """Expect inputs `factor` times larger: the first convolution's weight divided by it (its bias
        is added after the product), so the outputs stay the same."""
        self.g_s[0].weight.div_(factor)
        if self.linear is not None:
            self.linear.weight.div_(factor)


class SharedDecoder(nn.Module):
    """One decoder for every width, the slimmable counterpart of one decoder per width: a narrower
    bottleneck is zero-padded to the widest's channels, so its weights are a slice of the widest's."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int, layers: int = 2, gdn: bool = False):
        super().__init__()
        self.decoder = FeatureDecoder(in_channels, hidden, out_channels, layers, gdn)
        self.in_channels = in_channels

    def forward(self, y: Tensor) -> Tensor:
        return self.decoder(F.pad(y, (0, 0, 0, 0, 0, self.in_channels - y.shape[1])))
