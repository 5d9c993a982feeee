"""Backbones (ProxylessNAS-Mobile, torchvision models), lite residual branches, GN+WS layers."""

from tinytl.models.registry import build_model, check_backbone, has_lite_residual, list_backbones, register_backbone
from tinytl.models import supernet  # noqa: F401  (registers the "supernet" backbone)
from tinytl.models.setting import ModelSetting

__all__ = ["ModelSetting", "build_model", "check_backbone", "has_lite_residual", "list_backbones", "register_backbone"]
