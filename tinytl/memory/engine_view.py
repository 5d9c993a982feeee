"""The "engine" view: per layer, what this project's training engine (tinytl.engine) keeps for backward.

Option `mode` ("exact", default, or "recompute") picks the engine mode. Exact: a conv / linear keeps its
input only if its weight trains; ReLU / ReLU6 / LeakyReLU / Hardsigmoid / dropout keep a 1-bit mask when
their input needs a gradient, SiLU / Hardswish / GELU / Mish their input, Sigmoid its output; a
squeeze-excitation's multiply keeps its input x (charged to the SE's pooling layer) and its scale (to the
scale activation); GroupNorm and batch-statistics BatchNorm keep their input and per-group statistics (x_hat)
whenever their input or scale gradient is needed (docs/PAPER.md, "Norm layers that are not affine");
frozen-statistics BatchNorm keeps
its input only if its scale trains; max pooling keeps one byte per output; average pooling nothing;
stochastic depth its per-sample noise.
Recompute: layers inside a recomputed block keep nothing; each block that needs a backward keeps its
input, charged to the layer consuming the block's output (the first layer whose gradient needs tell
whether the block runs a backward at all); layers outside blocks follow the exact rules.
"""

from __future__ import annotations

from torch import nn
from torchvision.ops import StochasticDepth

from tinytl.engine.convert import ENGINE_MODES
from tinytl.errors import TinyTLError
from tinytl.memory.views import ACT_BYTES, LayerCost, LayerGrads, Rule, View, ViewContext, register_view
from tinytl.memory.walk import LayerRecord
from tinytl.models.layers import FrozenStatsBatchNorm2d
from tinytl.models.registry import SE_FLAG

STAT_BYTES = 2 * ACT_BYTES  # a norm's kept mean and 1/sigma per group (GN, per sample) or channel (BN)


def _priced_mode(ctx: ViewContext) -> str:
    """The engine mode a report prices ('exact' unless option mode says otherwise)."""
    mode = ctx.options.get("mode", "exact")
    if mode not in ENGINE_MODES:
        raise TinyTLError(f"unknown engine mode {mode!r}; choose one of {', '.join(ENGINE_MODES)}")
    return mode


def _mask_bytes(numel: int) -> int:
    return (numel + 7) // 8


def _tmp(layer: LayerRecord) -> int:
    out = 0 if getattr(layer.module, "inplace", False) else layer.output_numel
    return ACT_BYTES * (layer.input_numel + out)


def _conv(layer: LayerRecord, grads: LayerGrads, ctx: ViewContext) -> LayerCost:
    """Input kept iff the weight trains, charged once when sibling layers read the same tensor.

    A rule sees only its own layer's gradients, so an earlier conv / linear reading the same input (a
    ResNet block's conv1 beside its downsample conv) is taken to train like this one, as in every named
    policy.
    """
    shared = any(role == "input" and peer.kind in ("conv", "linear") for peer, role in layer.input_peers)
    return LayerCost(stored=ACT_BYTES * layer.input_numel if grads.weight and not shared else 0, tmp=_tmp(layer))


def affine_in_x(norm: nn.Module) -> bool:
    """A norm whose output is affine in its input at training time (frozen running statistics), so its
    input gradient needs nothing kept; GroupNorm and batch-statistics BatchNorm are not (docs/PAPER.md)."""
    return isinstance(norm, FrozenStatsBatchNorm2d) or (
        isinstance(norm, nn.BatchNorm2d) and not norm.training and norm.running_mean is not None)


def _norm(layer: LayerRecord, grads: LayerGrads, ctx: ViewContext) -> LayerCost:
    m = layer.module
    if affine_in_x(m):
        return LayerCost(stored=ACT_BYTES * layer.input_numel if grads.weight else 0, tmp=_tmp(layer))
    if not (grads.input or grads.weight):
        return LayerCost(tmp=_tmp(layer))
    x_hat = ACT_BYTES * layer.input_numel
    if isinstance(m, nn.GroupNorm):
        return LayerCost(stored=x_hat + STAT_BYTES * m.num_groups, tmp=_tmp(layer))
    if isinstance(m, nn.BatchNorm2d):
        return LayerCost(stored=x_hat, tmp=_tmp(layer), fixed=STAT_BYTES * m.num_features)
    return LayerCost(stored=x_hat, tmp=_tmp(layer))  # other norms run stock: input kept (stats not counted)


def _relu(layer: LayerRecord, grads: LayerGrads, ctx: ViewContext) -> LayerCost:
    return LayerCost(stored=_mask_bytes(layer.input_numel) if grads.input else 0, tmp=_tmp(layer))


def _act(layer: LayerRecord, grads: LayerGrads, ctx: ViewContext) -> LayerCost:
    """Hardsigmoid keeps a 1-bit mask; SiLU, Hardswish, GELU, Mish their input; Sigmoid (and the unconverted
    Tanh) their output. A squeeze-excitation's scale activation also holds the scale its multiply keeps."""
    m = layer.module
    if not grads.input:
        return LayerCost(tmp=_tmp(layer))
    if isinstance(m, nn.Hardsigmoid):
        stored = _mask_bytes(layer.input_numel)
        if getattr(m, SE_FLAG, "") == "scale":  # the multiply keeps the (fresh) scale for dL/dx
            stored += ACT_BYTES * layer.output_numel
        return LayerCost(stored=stored, tmp=_tmp(layer))
    return LayerCost(stored=ACT_BYTES * layer.input_numel, tmp=_tmp(layer))  # (sigmoid: its output, the scale)


def _dropout(layer: LayerRecord, grads: LayerGrads, ctx: ViewContext) -> LayerCost:
    m = layer.module
    active = grads.input and m.training and getattr(m, "p", 0) > 0
    return LayerCost(stored=_mask_bytes(layer.input_numel) if active else 0, tmp=_tmp(layer))


def _other(layer: LayerRecord, grads: LayerGrads, ctx: ViewContext) -> LayerCost:
    m = layer.module
    if getattr(m, SE_FLAG, "") == "pool" and grads.input:  # SE's multiply keeps x for the scale's gradient
        return LayerCost(stored=ACT_BYTES * layer.input_numel, tmp=_tmp(layer))
    if isinstance(m, StochasticDepth) and grads.input and m.training and m.p > 0:  # its multiply keeps the noise
        return LayerCost(stored=ACT_BYTES) if m.mode == "row" else LayerCost(fixed=ACT_BYTES)
    if isinstance(m, nn.MaxPool2d) and grads.input:
        return LayerCost(stored=layer.output_numel, tmp=_tmp(layer))  # one byte: argmax inside the window
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and grads.input:
        global_avg = isinstance(m, nn.AdaptiveAvgPool2d) and layer.output_numel == layer.input_shape[1]
        return LayerCost(stored=0 if global_avg else ACT_BYTES * layer.input_numel, tmp=_tmp(layer))
    return LayerCost()


def _engine_rule(exact: Rule) -> Rule:
    """Wrap an exact-mode rule with the recompute mode's block accounting."""
    def rule(layer: LayerRecord, grads: LayerGrads, ctx: ViewContext) -> LayerCost:
        cost = exact(layer, grads, ctx)
        if _priced_mode(ctx) == "exact":
            return cost
        kept_block_input = ACT_BYTES * layer.closes_block_input_numel if grads.input else 0
        if layer.recompute_block:  # re-run during the block's backward: transient only
            return LayerCost(stored=kept_block_input, tmp=cost.tmp)
        return LayerCost(stored=cost.stored + kept_block_input, tmp=cost.tmp, fixed=cost.fixed)
    rule.__doc__ = exact.__doc__
    return rule


ENGINE = register_view(View(
    name="engine", title="engine (this project's)",
    rules={kind: _engine_rule(rule) for kind, rule in (
        ("conv", _conv), ("linear", _conv), ("norm", _norm), ("relu", _relu), ("act", _act),
        ("dropout", _dropout), ("other", _other))},
    frozen_storage_bits=lambda bits: 8 if bits <= 8 else 32,
    options={"mode": ENGINE_MODES},
    description="What tinytl.engine keeps (option mode: exact or recompute): inputs only for training "
                "weights, 1-bit ReLU/Hardsigmoid/dropout masks, inputs of SiLU/Hardswish/GELU, x_hat for "
                "GroupNorm / batch-statistics BatchNorm whenever "
                "a gradient passes through them, nothing for frozen-scale affine norms; recompute keeps "
                "block inputs and re-runs each block's forward in its backward. Frozen parameters priced at 8 "
                "bits when --frozen-bits <= 8 (convert_model(frozen_bits=...) holds frozen conv/linear "
                "weights as one uint8 code each, whatever the bits; the few frozen norm parameters stay "
                "32-bit, under 1% of proxylessnas_mobile), else 32 bits."))
