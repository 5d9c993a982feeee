"""torchvision classification models by name, with TinyTL's norm choice and lite residual branches."""

from __future__ import annotations

import torch
import torchvision.models as tvm
from torch import nn
from torch.overrides import TorchFunctionMode
from torchvision.models.mobilenetv2 import InvertedResidual as InvertedResidualV2
from torchvision.models.mobilenetv3 import InvertedResidual as InvertedResidualV3
from torchvision.models.resnet import BasicBlock, Bottleneck

from tinytl.models.layers import LiteResidual, StdConv2d, lite_kernel_size, make_norm

RESNET_BLOCKS = (BasicBlock, Bottleneck)
LITE_HOSTS = (InvertedResidualV2, InvertedResidualV3, *RESNET_BLOCKS)
# Builders whose auxiliary heads or init would get in the way of a plain forward.
EXTRA_KWARGS = {
    "inception_v3": {"aux_logits": False, "init_weights": False},
    "googlenet": {"aux_logits": False, "init_weights": False},
}


def torchvision_names() -> list[str]:
    """Classification model names torchvision's registry knows."""
    return tvm.list_models(module=tvm)


def _set_child(root: nn.Module, name: str, child: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, attr, child)


def convert_norms(model: nn.Module, norm: str) -> None:
    """Swap BatchNorm2d for the chosen norm mode, and convs for weight-standardized convs under GroupNorm."""
    for name, module in list(model.named_modules()):
        if type(module) is nn.BatchNorm2d and norm != "bn":
            _set_child(model, name, make_norm(module.num_features, norm, eps=module.eps))
        elif type(module) is nn.Conv2d and norm == "gn":
            ws = StdConv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                           module.padding, module.dilation, module.groups, module.bias is not None,
                           module.padding_mode, device=module.weight.device)
            _set_child(model, name, ws)


class LiteResidualBlock(nn.Module):
    """A torchvision residual block with a lite residual branch added to its main branch output."""

    def __init__(self, block: nn.Module, lite: LiteResidual) -> None:
        super().__init__()
        self.block = block
        self.lite = lite
        self.identity_shortcut = isinstance(block, RESNET_BLOCKS) or bool(block.use_res_connect)

    def _main(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        if isinstance(b, RESNET_BLOCKS):
            out = b.relu(b.bn1(b.conv1(x)))
            if isinstance(b, Bottleneck):
                out = b.relu(b.bn2(b.conv2(out)))
                return b.bn3(b.conv3(out))
            return b.bn2(b.conv2(out))
        return b.conv(x) if isinstance(b, InvertedResidualV2) else b.block(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._main(x)
        out = out + self.lite(x, out.shape[-2:])
        b = self.block
        if isinstance(b, RESNET_BLOCKS):
            identity = b.downsample(x) if b.downsample is not None else x
            return b.relu(out + identity)
        return out + x if b.use_res_connect else out


def _host_shapes(meta_model: nn.Module) -> dict[str, tuple[torch.Size, torch.Size]]:
    """Input and output shape of every block that can host a lite residual, at a 128 px input (meta device)."""
    shapes: dict[str, tuple[torch.Size, torch.Size]] = {}
    if not any(isinstance(m, LITE_HOSTS) for m in meta_model.modules()):
        return shapes
    handles = []
    for name, module in meta_model.named_modules():
        if isinstance(module, LITE_HOSTS):
            handles.append(module.register_forward_hook(
                lambda m, i, o, name=name: shapes.__setitem__(name, (i[0].shape, o.shape))))
    try:
        with torch.no_grad():
            meta_model.eval()(torch.empty(1, 3, 128, 128, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return shapes


def insert_lite_residuals(model: nn.Module, meta_twin: nn.Module, norm: str) -> int:
    """Wrap every host block but the first with a lite residual; return how many were inserted.

    ResNet blocks are wide, so their branch narrows to a quarter of the input channels (a bottleneck's
    own reduction) in 8 groups; inverted-residual blocks keep the paper's in -> in conv in 2 groups.
    """
    hosts = list(_host_shapes(meta_twin).items())[1:]
    device = next(model.parameters()).device
    for name, (in_shape, out_shape) in hosts:
        stride = max(1, round(in_shape[-1] / out_shape[-1]))
        with torch.device(device):
            host = model.get_submodule(name)
            wide = isinstance(host, RESNET_BLOCKS)
            lite = LiteResidual(in_shape[1], out_shape[1], lite_kernel_size(in_shape[-1]), stride, norm,
                                groups=8 if wide else 2, mid_channels=in_shape[1] // 4 if wide else None)
        _set_child(model, name, LiteResidualBlock(model.get_submodule(name), lite))
    return len(hosts)


class _MetaExceptData(TorchFunctionMode):
    """Like `torch.device("meta")`, but tensors made from values (arange, tensor, linspace) stay on the CPU,
    so builders that compute their widths with tensors (RegNet) still run; parameters and buffers are
    created on the meta device, so nothing of the model is allocated."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _META_FACTORIES and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


_META_FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn, torch.empty_strided,
                   torch.randint, torch.normal}


def build_torchvision(name: str, num_classes: int, norm: str, device: str | torch.device) -> nn.Module:
    """A torchvision model with a new `num_classes` head and the chosen norm mode (no weights loaded).

    On the meta device nothing is allocated, even for builders that compute their widths with tensors
    (RegNet): those run with value-made tensors on the CPU and every parameter and buffer on meta.
    """
    kwargs = {"weights": None, "num_classes": num_classes, **EXTRA_KWARGS.get(name, {})}
    try:
        with torch.device(device):
            model = tvm.get_model(name, **kwargs)
    except NotImplementedError:
        if str(device) != "meta":
            raise
        with _MetaExceptData():
            model = tvm.get_model(name, **kwargs)
        model.to("meta")  # the few value-made buffers (BatchNorm's step counters)
    with torch.device(device):
        convert_norms(model, norm)
    return model
