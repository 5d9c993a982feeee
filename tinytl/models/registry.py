"""Backbones by name: the paper's ProxylessNAS-Mobile, extra registered builders, and any torchvision model."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from functools import lru_cache

import torch
from torch import nn
from torchvision.models.efficientnet import FusedMBConv, MBConv
from torchvision.ops.misc import SqueezeExcitation

from tinytl.errors import TinyTLError
from tinytl.models.layers import LiteResidual, check_norm
from tinytl.models.proxylessnas import MBBlock, ProxylessNASMobile
from tinytl.models import torchvision_backbones as tvb

Builder = Callable[..., nn.Module]
# The blocks networks are made of: the memory walk records the outermost one each layer runs in, and the
# engine's recompute mode re-runs exactly those.
BLOCK_TYPES: tuple[type[nn.Module], ...] = (MBBlock, tvb.LiteResidualBlock, tvb.InvertedResidualV2,
                                            tvb.InvertedResidualV3, *tvb.RESNET_BLOCKS, MBConv, FusedMBConv)
# Set on a squeeze-excitation's layers ("pool" / "scale"): the memory views price SE's `scale * x` there
# (x is the pooling layer's input, scale the scale activation's output).
SE_FLAG = "squeeze_excitation_role"
_BUILDERS: dict[str, Builder] = {}


def register_backbone(name: str) -> Callable[[Builder], Builder]:
    """Register `builder(num_classes, lite_residual, norm, **options) -> nn.Module` under a name."""
    def wrap(builder: Builder) -> Builder:
        if name in _BUILDERS:
            raise TinyTLError(f"backbone {name!r} is already registered")
        _BUILDERS[name] = builder
        return builder
    return wrap


@register_backbone("proxylessnas_mobile")
def _proxylessnas_mobile(num_classes: int, lite_residual: bool, norm: str, **options) -> nn.Module:
    return ProxylessNASMobile(num_classes, lite_residual=lite_residual, norm=norm, **options)


@lru_cache(maxsize=1)
def _torchvision_names() -> tuple[str, ...]:
    return tuple(tvb.torchvision_names())


def list_backbones() -> list[str]:
    """Every backbone name `build_model` accepts: registered ones first, then torchvision's."""
    return list(_BUILDERS) + [n for n in _torchvision_names() if n not in _BUILDERS]


LIST_COMMAND = "python -m tinytl memory --list-backbones"


def check_backbone(name: str) -> str:
    """Return the name if it is known, else raise a one-line TinyTLError with the closest names."""
    if name not in _BUILDERS and name not in _torchvision_names():
        close = difflib.get_close_matches(str(name), list_backbones(), n=3, cutoff=0.5)
        hint = f"closest: {', '.join(close)}; " if close else ""
        raise TinyTLError(f"unknown backbone {name!r}; {hint}all {len(list_backbones())}: {LIST_COMMAND}")
    return name


def build_model(name: str, num_classes: int = 1000, lite_residual: bool = True, norm: str = "gn",
                device: str | torch.device = "cpu", **options) -> nn.Module:
    """Build a backbone with a fresh `num_classes` head; device 'meta' builds shapes only (for analysis)."""
    check_backbone(name)
    check_norm(norm)
    if num_classes < 1:
        raise TinyTLError(f"classes must be >= 1, got {num_classes}")
    if name in _BUILDERS:
        with torch.device(device):
            return _BUILDERS[name](num_classes, lite_residual, norm, **options)
    model = tvb.build_torchvision(name, num_classes, norm, device)
    if lite_residual:
        meta_twin = model if str(device) == "meta" else tvb.build_torchvision(name, num_classes, norm, "meta")
        tvb.insert_lite_residuals(model, meta_twin, norm)
    mark_squeeze_excitation(model)
    return model


def mark_squeeze_excitation(model: nn.Module) -> nn.Module:
    """Flag every torchvision squeeze-excitation's pooling and scale layers (SE_FLAG) for per-layer rules."""
    for module in model.modules():
        if isinstance(module, SqueezeExcitation):
            setattr(module.avgpool, SE_FLAG, "pool")
            setattr(module.scale_activation, SE_FLAG, "scale")
    return model


def has_lite_residual(model: nn.Module) -> bool:
    """True when the model contains at least one lite residual branch."""
    return any(isinstance(m, LiteResidual) for m in model.modules())
