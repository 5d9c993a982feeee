"""A model setting: everything a model's shape walk and its weights depend on, as one frozen value.

Analysis caches walks by it, measurement builds real models from it, the app keys its caches by it:
one object, so the order of (backbone, resolution, classes, lite residual, norm, sub-net) cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tinytl.errors import TinyTLError
from tinytl.models.layers import check_norm
from tinytl.models.registry import build_model, check_backbone
from tinytl.models.supernet import parse_subnet
from tinytl.validation import check_classes, check_resolution


@dataclass(frozen=True)
class ModelSetting:
    """A backbone at an input resolution with a `classes`-way head; `subnet` (JSON, canonicalised) picks a
    super-net sub-net. Validated on creation; the defaults are the paper's setting (224 px, 102 classes,
    GN+WS, lite residuals)."""

    backbone: str = "proxylessnas_mobile"
    resolution: int = 224
    classes: int = 102
    lite_residual: bool = True
    norm: str = "gn"
    subnet: str | None = None

    def __post_init__(self) -> None:
        check_backbone(self.backbone)
        object.__setattr__(self, "resolution", check_resolution(self.resolution))
        object.__setattr__(self, "classes", check_classes(self.classes))
        object.__setattr__(self, "lite_residual", bool(self.lite_residual))
        check_norm(self.norm)
        if self.subnet is not None:
            if self.backbone != "supernet":
                raise TinyTLError(f"a subnet applies only to the 'supernet' backbone, not {self.backbone!r}")
            object.__setattr__(self, "subnet", parse_subnet(self.subnet).canonical().to_json())

    def build(self, device: str | torch.device = "cpu") -> nn.Module:
        """The model itself (fresh head); device 'meta' builds shapes only."""
        extra = {"subnet": self.subnet} if self.subnet is not None else {}
        return build_model(self.backbone, self.classes, lite_residual=self.lite_residual, norm=self.norm,
                           device=device, **extra)
