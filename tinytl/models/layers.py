"""Building blocks shared by every backbone: weight-standardized conv, norm factory, lite residual."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tinytl.errors import TinyTLError

NORMS = ("gn", "bn", "bn-frozen")
WS_EPS = 1e-5


def standardize_weight(weight: torch.Tensor) -> torch.Tensor:
    """Weight standardization (w - mean) / (std + eps) per output channel (Qiao et al.): the one definition the
    layers, the super-net and the engine share, so the engine's gradients equal stock PyTorch's. The unbiased
    std is taken as a norm of the centred weight: on CPU about 10x faster than torch.std's one-pass reduction."""
    flat = weight.reshape(weight.shape[0], -1)
    centred = flat - flat.mean(dim=1, keepdim=True)
    std = torch.linalg.vector_norm(centred, dim=1, keepdim=True) / (flat.shape[1] - 1) ** 0.5
    return (centred / (std + WS_EPS)).reshape_as(weight)


class StdConv2d(nn.Conv2d):
    """Conv2d with weight standardization per output channel."""

    def standardized_weight(self) -> torch.Tensor:
        return standardize_weight(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.standardized_weight(), self.bias)


class FrozenStatsBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm that always normalizes with its running statistics: affine in x at training time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            False, 0.0, self.eps)


def group_count(channels: int, max_per_group: int = 8) -> int:
    """Groups for GroupNorm: channels // d, d the largest divisor of channels that is <= max_per_group."""
    d = max(k for k in range(1, max_per_group + 1) if channels % k == 0)
    return channels // d


def check_norm(norm: str) -> str:
    """`norm` if it is one of NORMS, else a TinyTLError naming them."""
    if norm not in NORMS:
        raise TinyTLError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")
    return norm


def make_norm(channels: int, norm: str, eps: float = 1e-3) -> nn.Module:
    """Norm layer for a mode: 'gn' GroupNorm (8 ch/group), 'bn' BatchNorm, 'bn-frozen' fixed-stat BN."""
    if check_norm(norm) == "gn":
        return nn.GroupNorm(group_count(channels), channels, eps=eps)
    if norm == "bn":
        return nn.BatchNorm2d(channels, eps=eps)
    return FrozenStatsBatchNorm2d(channels, eps=eps)


def make_conv(norm: str, *args, **kwargs) -> nn.Conv2d:
    """A conv that is weight-standardized when the norm is GroupNorm (the paper's GN+WS), plain otherwise."""
    return StdConv2d(*args, **kwargs) if norm == "gn" else nn.Conv2d(*args, **kwargs)


def lite_kernel_size(input_res_at_128: float, kernel: int = 5) -> int:
    """Lite-residual kernel: 5, reduced by 2 while it exceeds the block's input size at 128 px input."""
    while kernel > 3 and kernel > input_res_at_128:
        kernel -= 2
    return kernel


class LiteResidual(nn.Module):
    """TinyTL lite residual branch: avgpool 2 -> kxk group conv -> norm -> ReLU -> 1x1 conv -> norm -> upsample.

    Fed with the block input and added to the block's main output; its final norm's scale starts at
    zero so an inserted branch leaves the pretrained function unchanged.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, norm: str,
                 groups: int = 2, mid_channels: int | None = None) -> None:
        super().__init__()
        mid = mid_channels or in_channels
        groups = groups if in_channels % groups == 0 and mid % groups == 0 else 1
        self.pool = nn.AvgPool2d(2, 2, ceil_mode=True)
        self.conv1 = make_conv(norm, in_channels, mid, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.norm1 = make_norm(mid, norm)
        self.act = nn.ReLU()
        self.conv2 = make_conv(norm, mid, out_channels, 1, bias=False)
        self.final_norm = make_norm(out_channels, norm)
        nn.init.zeros_(self.final_norm.weight)

    def forward(self, x: torch.Tensor, size: torch.Size) -> torch.Tensor:
        y = self.final_norm(self.conv2(self.act(self.norm1(self.conv1(self.pool(x))))))
        return F.interpolate(y, size=size, mode="bilinear", align_corners=False)
