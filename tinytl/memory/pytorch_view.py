"""The "pytorch" view: per layer, what stock PyTorch autograd keeps for backward under a policy.

Rules follow autograd's derivative formulas as they run on torch 2.x (checked against
`tinytl.memory.measure`, which counts real saved tensors): a backward node exists when any of its inputs
or parameters needs a gradient, so frozen prefixes keep nothing; a convolution's node keeps its input and
weight whatever trains; the linear (addmm) node keeps its input only when its weight trains. A storage two
nodes keep (an in-place ReLU's output that the next convolution also keeps) is charged once, to the first
layer that keeps it whenever its input needs a gradient (`LayerRecord.input_peers` says who shares it).
"""

from __future__ import annotations

from torch import nn

from tinytl.memory.views import ACT_BYTES, FREE, LayerCost, LayerGrads, View, ViewContext, register_view
from tinytl.memory.walk import LayerRecord
from tinytl.models.layers import FrozenStatsBatchNorm2d, StdConv2d

INDEX_BYTES = 8  # max-pool indices are int64
# activations whose backward formula uses the output rather than the input
_OUTPUT_SAVERS = (nn.ReLU, nn.Sigmoid, nn.Tanh)
# in-place activations whose backward still needs the input: autograd keeps a fresh copy of it
_INPLACE_COPIERS = (nn.ReLU6, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.Mish)
_POOLS_WITH_INDICES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
                       nn.AdaptiveMaxPool3d)
_POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
          nn.AdaptiveAvgPool3d, *_POOLS_WITH_INDICES)


def _inplace(module: nn.Module) -> bool:
    return bool(getattr(module, "inplace", False))


def shared_roles(layer: LayerRecord) -> frozenset[str]:
    """Which of a layer's tensors ('input', 'output') its stock node keeps whenever its input needs a gradient."""
    m = layer.module
    if layer.kind in ("conv", "norm"):
        return frozenset({"input"})
    if layer.kind in ("relu", "act"):
        if isinstance(m, _OUTPUT_SAVERS) or (_inplace(m) and not isinstance(m, _INPLACE_COPIERS)):
            return frozenset({"output", "input"} if _inplace(m) else {"output"})
        return frozenset() if _inplace(m) else frozenset({"input"})
    if isinstance(m, _POOLS) and not _is_global_avg_pool(m):
        return frozenset({"input"})
    return frozenset()


def _is_global_avg_pool(m: nn.Module) -> bool:
    """Adaptive average pooling to one value per channel runs as mean(), which keeps nothing."""
    if not isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
        return False
    size = m.output_size if isinstance(m.output_size, tuple) else (m.output_size,)
    return all(s == 1 for s in size)


def _charge_input(layer: LayerRecord, grads: LayerGrads) -> int:
    """Bytes per sample for keeping this layer's input, unless an earlier layer already keeps that storage."""
    if grads.input and any(role in shared_roles(peer) for peer, role in layer.input_peers):
        return 0
    return ACT_BYTES * layer.input_numel


def _tmp(layer: LayerRecord) -> int:
    """Forward transient while the layer runs: its input and a fresh output (in-place ops write into the input)."""
    out = 0 if _inplace(layer.module) else layer.output_numel
    return ACT_BYTES * (layer.input_numel + out)


def _conv(layer: LayerRecord, grads: LayerGrads, ctx: ViewContext) -> LayerCost:
    if not grads.any:
        return LayerCost(tmp=_tmp(layer))
    fixed = 0
    m = layer.module
    if isinstance(m, StdConv2d):  # the standardized weight is a fresh tensor, kept by the conv node
        weight = m.weight.numel()
        fixed = ACT_BYTES * weight
        if grads.weight:  # std keeps its result, the division its numerator and denominator
            fixed += ACT_BYTES * (weight + 2 * m.out_channels)
    return LayerCost(stored=_charge_input(layer, grads), tmp=_tmp(layer), fixed=fixed)


def _linear(layer: LayerRecord, grads: LayerGrads, ctx: ViewContext) -> LayerCost:
    return LayerCost(stored=_charge_input(layer, grads) if grads.weight else 0, tmp=_tmp(layer))


def _norm(layer: LayerRecord, grads: LayerGrads, ctx: ViewContext) -> LayerCost:
    if not grads.any:
        return LayerCost(tmp=_tmp(layer))
    m = layer.module
    stored, fixed = _charge_input(layer, grads), 0
    if isinstance(m, nn.GroupNorm):  # per-sample, per-group mean and 1/std
        stored += 2 * ACT_BYTES * m.num_groups
    elif isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, FrozenStatsBatchNorm2d):
        fixed = 2 * ACT_BYTES * m.num_features  # batch mean and 1/std, per channel
    return LayerCost(stored=stored, tmp=_tmp(layer), fixed=fixed)


def _activation(layer: LayerRecord, grads: LayerGrads, ctx: ViewContext) -> LayerCost:
    if not grads.input:
        return LayerCost(tmp=_tmp(layer))
    roles = shared_roles(layer)
    if "input" in roles:  # keeps its input storage (in place: also its output)
        stored = _charge_input(layer, grads)
    elif roles:  # keeps its fresh output
        stored = ACT_BYTES * layer.output_numel
    else:  # in place, but the backward needs the input: a copy
        stored = ACT_BYTES * layer.input_numel
    return LayerCost(stored=stored, tmp=_tmp(layer))


def _dropout(layer: LayerRecord, grads: LayerGrads, ctx: ViewContext) -> LayerCost:
    if not grads.input or getattr(layer.module, "p", 0.0) == 0.0:
        return LayerCost(tmp=_tmp(layer))
    # CPU multiplies by a float32 noise tensor and keeps it; CUDA's fused kernel keeps a bool mask
    per_element = 1 if ctx.options.get("device") == "cuda" else ACT_BYTES
    return LayerCost(stored=per_element * layer.input_numel, tmp=_tmp(layer))


def _other(layer: LayerRecord, grads: LayerGrads, ctx: ViewContext) -> LayerCost:
    m = layer.module
    if not isinstance(m, _POOLS):  # flatten, identity, upsampling: nothing kept
        return FREE
    if not grads.input or _is_global_avg_pool(m):
        return LayerCost(tmp=_tmp(layer))
    indices = INDEX_BYTES * layer.output_numel if isinstance(m, _POOLS_WITH_INDICES) else 0
    return LayerCost(stored=_charge_input(layer, grads) + indices, tmp=_tmp(layer))

PYTORCH = register_view(View(
    name="pytorch", title="stock PyTorch autograd",
    rules={"conv": _conv, "linear": _linear, "norm": _norm, "relu": _activation, "act": _activation,
           "dropout": _dropout, "other": _other},
    frozen_storage_bits=lambda bits: 32,
    description="What stock PyTorch autograd keeps: a conv keeps its input whenever anything about it needs a "
                "gradient (bias-only training included), norms keep their input and statistics, in-place "
                "ReLU6 keeps a copy of its input; shared storages count once."))
