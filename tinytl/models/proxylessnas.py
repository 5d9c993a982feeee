"""ProxylessNAS-Mobile, the TinyTL paper's backbone, with lite residuals and GN+WS options."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from tinytl.models.layers import LiteResidual, lite_kernel_size, make_conv, make_norm

# (expand, kernel, stride, out) for the 20 blocks after the stem and block 0 (docs/PAPER.md, "ProxylessNAS-Mobile").
PROXYLESS_MOBILE_BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (3, 5, 2, 24), (3, 3, 1, 24),
    (3, 7, 2, 40), (3, 3, 1, 40), (3, 5, 1, 40), (3, 5, 1, 40),
    (6, 7, 2, 80), (3, 5, 1, 80), (3, 5, 1, 80), (3, 5, 1, 80),
    (6, 5, 1, 96), (3, 5, 1, 96), (3, 5, 1, 96), (3, 5, 1, 96),
    (6, 7, 2, 192), (6, 7, 1, 192), (3, 7, 1, 192), (3, 7, 1, 192),
    (6, 7, 1, 320),
)
STEM_CHANNELS = 32
FIRST_BLOCK_CHANNELS = 16
FEATURE_CHANNELS = 1280


def conv_norm_act(norm: str, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                  act: bool = True) -> nn.Sequential:
    """conv (no bias) -> norm -> optional ReLU6, the unit every MBConv is made of."""
    layers: dict[str, nn.Module] = {
        "conv": make_conv(norm, cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        "norm": make_norm(cout, norm),
    }
    if act:
        layers["act"] = nn.ReLU6(inplace=True)
    return nn.Sequential(OrderedDict(layers))


class MBConv(nn.Sequential):
    """Inverted bottleneck: 1x1 expand (skipped when expand is 1) -> kxk depthwise -> 1x1 linear projection."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int, norm: str) -> None:
        mid = round(cin * expand)
        layers: dict[str, nn.Module] = {}
        if expand != 1:
            layers["expand"] = conv_norm_act(norm, cin, mid, 1)
        layers["depthwise"] = conv_norm_act(norm, mid, mid, kernel, stride, groups=mid)
        layers["project"] = conv_norm_act(norm, mid, cout, 1, act=False)
        super().__init__(OrderedDict(layers))
        self.mid_channels = mid


class MBBlock(nn.Module):
    """An MBConv block: main branch, optional lite residual on the block input, identity shortcut if shapes match."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int, norm: str,
                 lite_kernel: int | None = None) -> None:
        super().__init__()
        self.conv = MBConv(cin, cout, expand, kernel, stride, norm)
        self.lite = LiteResidual(cin, cout, lite_kernel, stride, norm) if lite_kernel else None
        self.identity_shortcut = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if self.lite is not None:
            out = out + self.lite(x, out.shape[-2:])
        if self.identity_shortcut:
            out = out + x
        return out


class ProxylessNASMobile(nn.Module):
    """ProxylessNAS-Mobile (4.08M params at 1000 classes) as used by TinyTL."""

    def __init__(self, num_classes: int = 1000, lite_residual: bool = True, norm: str = "gn",
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.first_conv = conv_norm_act(norm, 3, STEM_CHANNELS, 3, 2)
        blocks = [MBBlock(STEM_CHANNELS, FIRST_BLOCK_CHANNELS, 1, 3, 1, norm)]
        cin, res = FIRST_BLOCK_CHANNELS, 128 / 2  # feature size at a 128 px input, for the lite kernel rule
        for expand, kernel, stride, cout in PROXYLESS_MOBILE_BLOCKS:
            lite_k = lite_kernel_size(res) if lite_residual else None
            blocks.append(MBBlock(cin, cout, expand, kernel, stride, norm, lite_k))
            cin, res = cout, res / stride
        self.blocks = nn.ModuleList(blocks)
        self.feature_mix = conv_norm_act(norm, cin, FEATURE_CHANNELS, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(FEATURE_CHANNELS, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_conv(x)
        for block in self.blocks:
            x = block(x)
        x = self.pool(self.feature_mix(x)).flatten(1)
        return self.classifier(x)
