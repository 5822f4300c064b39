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
                 upsample: bool = False):
        super().__init__()
        self.upsample = upsample
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
        return self.g_s(F.interpolate(y, scale_factor=2.0, mode="nearest") if self.upsample else y)

    @torch.no_grad()
    def scale_input(self, factor: float) -> None:
        """Expect inputs `factor` times larger: the first convolution's weight divided by it (its bias
        is added after the product), so the outputs stay the same."""
        self.g_s[0].weight.div_(factor)


class SharedDecoder(nn.Module):
    """One decoder for every width, the slimmable counterpart of one decoder per width: a narrower
    bottleneck is zero-padded to the widest's channels, so its weights are a slice of the widest's."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int, layers: int = 2, gdn: bool = False):
        super().__init__()
        self.decoder = FeatureDecoder(in_channels, hidden, out_channels, layers, gdn)
        self.in_channels = in_channels

    def forward(self, y: Tensor) -> Tensor:
        return self.decoder(F.pad(y, (0, 0, 0, 0, 0, self.in_channels - y.shape[1])))
