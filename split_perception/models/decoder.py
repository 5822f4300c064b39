"""The offboard feature decoder: restores the teacher's split-point tensor from a bottleneck."""

from __future__ import annotations

from torch import Tensor, nn


class FeatureDecoder(nn.Module):
    """Bottleneck (C_in channels) -> teacher features at the split point (C_out channels), same size."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int):
        super().__init__()
        self.g_s = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_channels, 1),
        )

    def forward(self, y: Tensor) -> Tensor:
        return self.g_s(y)
