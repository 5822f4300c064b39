"""Slimmable building blocks: convolutions that run on a prefix of their channels, and
switchable batch norm (one set of statistics per width), after Yu et al., "Slimmable Neural
Networks" (ICLR 2019). Switching width changes an index; no weight is copied or re-allocated.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def channels_at(width: float, full: int) -> int:
    """Channels used at `width` for a layer that has `full` channels at width 1.0."""
    return max(1, int(round(full * width)))


class WidthState:
    """The active width index, shared by every slimmable layer of one network."""

    def __init__(self, index: int):
        self.index = index


class SlimConv2d(nn.Conv2d):
    """Conv2d whose active input/output channels are prefixes chosen by the shared width index."""

    def __init__(self, in_list: list[int], out_list: list[int], kernel_size: int, stride: int, state: WidthState,
                 bias: bool = True):
        super().__init__(max(in_list), max(out_list), kernel_size, stride, kernel_size // 2, bias=bias)
        self.in_list, self.out_list, self.state = in_list, out_list, state

    def forward(self, x: Tensor) -> Tensor:
        cin, cout = self.in_list[self.state.index], self.out_list[self.state.index]
        if x.shape[1] != cin:
            raise ValueError(f"expected {cin} input channels at width index {self.state.index}, got {x.shape[1]}")
        bias = self.bias[:cout] if self.bias is not None else None
        return F.conv2d(x, self.weight[:cout, :cin], bias, self.stride, self.padding)


class SwitchableBatchNorm2d(nn.Module):
    """One BatchNorm2d per width: each width keeps its own running statistics and affine terms."""

    def __init__(self, out_list: list[int], state: WidthState):
        super().__init__()
        self.bn = nn.ModuleList(nn.BatchNorm2d(c) for c in out_list)
        self.state = state

    def forward(self, x: Tensor) -> Tensor:
        return self.bn[self.state.index](x)
