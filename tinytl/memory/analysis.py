"""Price a walked model under a policy and a view: the shared peak arithmetic of every view."""

from __future__ import annotations

import re
from functools import lru_cache

from tinytl.memory.report import LayerRow, MemoryReport, live_lines
from tinytl.memory.views import ACT_BYTES, LayerGrads, ViewContext, get_view
from tinytl.memory.walk import ModelTrace, trace_backbone
from tinytl.models.setting import ModelSetting
from tinytl.policies import Policy, classifier_name, policy_label, trainable_names
from tinytl.validation import check_batch_size, check_frozen_bits

_GROUP = re.compile(r"^(.*?\.\d+)(?:\.|$)")


def layer_group(name: str) -> str:
    """Stage a layer belongs to: its name up to the first numbered component ('blocks.3'), else the first part."""
    m = _GROUP.match(name)
    return m.group(1) if m else name.split(".")[0].split("#")[0]


def analyze(trace: ModelTrace, policy: Policy, batch_size: int = 8, frozen_bits: int = 8,
            view: str = "paper", **options) -> MemoryReport:
    """Training memory of a walked model under `policy`, priced by `view` (no re-walk, nothing allocated)."""
    check_batch_size(batch_size)
    check_frozen_bits(frozen_bits)
    spec = get_view(view)
    trainable = trainable_names(trace.model, policy)
    if spec.report is not None:
        return spec.report(trace, policy, trainable, batch_size, frozen_bits, policy_label(policy), options)
    head = classifier_name(trace.model)
    trains_mask = 0
    for layer in trace.layers:
        if any(p in trainable for p in layer.params):
            trains_mask |= 1 << layer.index
    ctx = ViewContext(any_backward=any(not (p == head or p.startswith(head + ".")) for p in trainable),
                      norm=trace.norm, options=options)
    costs = []
    for layer in trace.layers:
        own = {p.rsplit(".", 1)[-1] for p in layer.params if p in trainable}
        grads = LayerGrads(weight="weight" in own, bias="bias" in own,
                           input=bool(layer.ancestors & trains_mask))
        costs.append(spec.cost(layer, grads, ctx))
    residuals = [ACT_BYTES * layer.residual_numel for layer in trace.layers]
    lines = live_lines((c.tmp, c.stored, c.fixed, r) for c, r in zip(costs, residuals))
    live = [batch_size * a + f for a, f in lines]
    peak_index = max(range(len(live)), key=live.__getitem__, default=0)
    rows = [LayerRow(
        index=layer.index, name=layer.name, type=layer.type, kind=layer.kind, group=layer_group(layer.name),
        output_shape=layer.output_shape[1:], params=layer.num_params,
        trainable_params=sum(n for p, n in layer.params.items() if p in trainable),
        stored_bytes=cost.stored, tmp_bytes=cost.tmp, fixed_bytes=cost.fixed, residual_bytes=residual,
        live_bytes=live_bytes)
        for layer, cost, residual, live_bytes in zip(trace.layers, costs, residuals, live)]
    n_train = sum(trace.param_numels[p] for p in trainable)
    n_frozen = trace.num_params - n_train
    bits = spec.frozen_storage_bits(frozen_bits)
    return MemoryReport(
        view=view, backbone=trace.backbone, policy=policy_label(policy), resolution=trace.resolution,
        batch_size=batch_size, num_classes=trace.num_classes, norm=trace.norm,
        lite_residual=trace.lite_residual, frozen_bits=bits, layers=tuple(rows), peak_index=peak_index,
        peak_activation_bytes=live[peak_index] if live else 0, trainable_param_bytes=4 * n_train,
        frozen_param_bytes=n_frozen * bits // 8, buffer_bytes=4 * trace.buffer_numel,
        num_params=trace.num_params, num_trainable_params=n_train, options=tuple(sorted(options.items())))


@lru_cache(maxsize=32)
def cached_trace(model: ModelSetting) -> ModelTrace:
    """The walk for a model setting, cached: policy, batch, bits and view changes reuse it."""
    return trace_backbone(model)


def profile_memory(model: ModelSetting | None = None, *, policy: Policy = "lite+bias", batch_size: int = 8,
                   frozen_bits: int = 8, view: str = "paper", **view_options) -> MemoryReport:
    """One call from a model setting to a report (walks once per distinct setting, then cached); the defaults
    are the paper's setting (ModelSetting(): 224 px, a 102-class head; batch 8, 8-bit frozen weights)."""
    return analyze(cached_trace(model or ModelSetting()), policy, batch_size, frozen_bits, view, **view_options)
