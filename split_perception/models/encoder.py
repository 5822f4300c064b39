"""The onboard part: a slimmable convolutional encoder that ends in a narrow bottleneck."""

from __future__ import annotations

from torch import Tensor, nn

from ..config import ModelConfig
from .gdn import GDN
from .slimmable import SlimConv2d, SwitchableBatchNorm2d, WidthState, channels_at


class SlimmableEncoder(nn.Module):
    """Image (normalized, 3xHxW) -> bottleneck (C_w x H/s x W/s), s = stride of the split point.

    Three strided convolutions, as the Entropic Student's bottleneck encoder but slimmable:
    at width w every layer uses round(w * channels), so compute and bottleneck channels (hence
    bytes) both shrink with the width. Between the convolutions: GDN (`cfg.gdn`, as the Entropic
    Student) or switchable batch norm + ReLU.
    """

    def __init__(self, cfg: ModelConfig, state: WidthState):
        super().__init__()
        ws = cfg.widths
        c1 = [channels_at(w, cfg.encoder_channels[0]) for w in ws]
        c2 = [channels_at(w, cfg.encoder_channels[1]) for w in ws]
        self.bottleneck_channels = [channels_at(w, cfg.bottleneck_channels) for w in ws]
        last_stride = cfg.split_stride // 4

        def act(chans: list[int]) -> list[nn.Module]:
            if cfg.gdn:
                return [GDN(max(chans))]
            return [SwitchableBatchNorm2d(chans, state), nn.ReLU(inplace=True)]

        self.g_a = nn.Sequential(
            SlimConv2d([3] * len(ws), c1, 5, 2, state, bias=cfg.gdn),
            *act(c1),
            SlimConv2d(c1, c2, 3, 2, state, bias=cfg.gdn),
            *act(c2),
            SlimConv2d(c2, self.bottleneck_channels, 3, last_stride, state),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.g_a(x)
