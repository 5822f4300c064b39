"""The onboard part: a slimmable convolutional encoder that ends in a narrow bottleneck."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ModelConfig
from ..errors import ConfigError
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


class FrontProjectionEncoder(nn.Module):
    """The teacher's own first layers (frozen, shared with the teacher) + a slimmable 1x1 projection.

    Only the output is slimmed: every width runs the same front and keeps the first C_w projected
    channels, times a gain per width, so each width learns its own quantization step. Configurable
    detectors kept more accuracy by slimming the bottleneck than by slimming the encoder's compute.
    Started from PCA (`init_from_pca`), the projection begins as the PCA baseline's transform.
    A coarse width (`coarse_widths`) averages its channels over 2x2 positions: a quarter of the
    symbols, for the low rates where the tail's stride-16 layers need little of the stride-8 detail.
    """

    def __init__(self, cfg: ModelConfig, state: WidthState, front: nn.Module, split_channels: int):
        super().__init__()
        if cfg.bottleneck_channels > split_channels:
            raise ConfigError(f"bottleneck_channels {cfg.bottleneck_channels} exceeds the {split_channels} "
                              f"channels at split {cfg.split_index}")
        ws = cfg.widths
        self.bottleneck_channels = [channels_at(w, cfg.bottleneck_channels) for w in ws]
        self.front = front
        self.proj = SlimConv2d([split_channels] * len(ws), self.bottleneck_channels, 1, 1, state)
        self.gain = nn.ParameterList(nn.Parameter(torch.ones(c)) for c in self.bottleneck_channels)
        self.pooled = [cfg.latent_stride(i) > cfg.split_stride for i in range(len(ws))]
        self.state = state

    @torch.no_grad()
    def init_from_pca(self, mean: Tensor, basis: Tensor, step: float) -> None:
        """Projection = the first principal components (rows of `basis`) over `step`, centred on `mean`."""
        n = self.proj.out_channels
        w = basis[:n].float() / step
        self.proj.weight.copy_(w[:, :, None, None])
        self.proj.bias.copy_(-(w @ mean.float()))

    def forward(self, x: Tensor) -> Tensor:
        return self.project(self.front(x))

    def project(self, f: Tensor) -> Tensor:
        """Split-point features -> the bottleneck at the current width (before quantization)."""
        y = self.proj(f)
        if self.pooled[self.state.index]:
            y = F.avg_pool2d(y, 2)
        return y * self.gain[self.state.index].view(1, -1, 1, 1)
