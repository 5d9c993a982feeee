"""The "why" page's lessons: what one layer keeps for backward (measured), and why policies cost what they do.

A real copy of a conv / linear / norm layer of the walked model runs a forward under
torch.autograd.graph.saved_tensors_hooks; every tensor autograd saves for backward passes the pack
hook and is matched by storage to the layer's input x, its weight (or scale) or its bias (or shift);
the rest (a norm's mean and 1/sigma) counts as statistics. Buffers (running statistics) are excluded.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from tinytl.memory.engine_view import affine_in_x
from tinytl.memory.report import MemoryReport
from tinytl.memory.walk import LayerRecord, ModelTrace

TENSORS = ("x", "W", "b", "stats")


def real_layer(record: LayerRecord) -> nn.Module:
    """A CPU copy of the record's layer; a conv / linear always gets a bias (the lesson's y = W x + b)."""
    m = record.module
    if record.kind == "conv":
        return nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                         bias=True)
    if record.kind == "linear":
        return nn.Linear(m.in_features, m.out_features, bias=True)
    layer = copy.deepcopy(m).to_empty(device="cpu")  # a norm: same class, groups, eps and train/eval mode
    layer.reset_parameters()
    return layer


def _kept_at(layer: nn.Module, shape: tuple[int, ...], inp: bool) -> dict[str, int]:
    """Bytes autograd saves, by tensor, for one forward of `layer` on a random input of `shape`."""
    x = torch.randn(shape, requires_grad=inp)
    owners = {"x": x, "W": layer.weight, "b": layer.bias}
    buffers = {b.untyped_storage().data_ptr() for b in layer.buffers()}
    kept: dict[int, tuple[str, int]] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in buffers:
            name = next((n for n, o in owners.items()
                         if o is not None and o.untyped_storage().data_ptr() == ptr), "stats")
            kept[ptr] = (name, t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x)
    out = dict.fromkeys(TENSORS, 0)
    for name, nbytes in kept.values():
        out[name] += nbytes
    return out


def autograd_keeps(record: LayerRecord, weight: bool, bias: bool, inp: bool, batch: int) -> dict[str, int]:
    """Bytes stock autograd keeps of x, W, b and statistics at `batch`, when those need gradients.

    Measured at batch 1 and 2 and extended linearly (parameters and batch-norm statistics do not grow
    with the batch, activations and per-sample statistics do), so a large batch allocates nothing big."""
    layer = real_layer(record)
    for param, trains in ((layer.weight, weight), (layer.bias, bias)):
        if param is not None:  # a norm without affine parameters has neither
            param.requires_grad_(trains)
    one = _kept_at(layer, (1, *record.input_shape[1:]), inp)
    two = _kept_at(layer, (2, *record.input_shape[1:]), inp)
    return {k: (2 * one[k] - two[k]) + batch * (two[k] - one[k]) for k in TENSORS}


def _size(nbytes: float) -> str:
    return f"{nbytes / 1e6:.2f} MB" if nbytes >= 10_000 else f"{nbytes / 1e3:.2f} kB"


def lesson_caption(record: LayerRecord, weight: bool, inp: bool, affine: bool, batch: int,
                   measured: dict[str, int], needed: int) -> str:
    """What the one-layer numbers mean, from the measurement, what the formulas need and the layer's kind."""
    w = "γ" if record.kind == "norm" else "W"
    parts = [f"x is {_size(4 * record.input_numel * batch)} for a batch of {batch}; {w} is "
             f"{_size(4 * record.module.weight.numel())} and stays in memory whatever trains."]
    if measured["x"] and not weight:
        parts.append(f"Stock PyTorch keeps x although {w} is frozen: its {record.type} saves the input whenever "
                     "any gradient passes (one backward for all of them)"
                     + (", so freezing the weights saves nothing here without a custom engine." if needed <
                        measured["x"] else "."))
    elif not measured["x"] and (inp or weight or measured["b"]):
        parts.append(f"Stock PyTorch keeps no x here: its {record.type} saves the input only for the {w} gradient.")
    if record.kind == "norm" and not affine and inp and not weight:
        parts.append(f"{record.type} normalizes with statistics computed while training, so dL/dx needs x̂ even "
                     "with γ and β frozen: the paper's rule (keep nothing while γ is frozen) holds only for a norm "
                     "that is affine in x (frozen running statistics); an exact engine keeps x̂ and 1/σ.")
    elif record.kind == "norm" and affine and not weight:
        parts.append("With frozen running statistics this norm is affine in x: dL/dx needs nothing kept, as the "
                     "paper's rule says.")
    return " ".join(parts)


def bias_owner(trace: ModelTrace, record: LayerRecord) -> LayerRecord | None:
    """For a conv without a bias: the norm layer reading its output, whose shift is the bias that trains."""
    return next((r for r in trace.layers if r.kind == "norm"
                 and any(peer is record and role == "output" for peer, role in r.input_peers)), None)


@dataclass(frozen=True)
class PeakParts:
    """A report's peak split into what the peak layer holds only while it runs and what is kept by then."""

    layer: str
    transient: int  # the peak layer's own input/output buffers, whole batch
    residual: int  # an enclosing identity block's input, held for the shortcut
    stored: int  # everything kept for backward by earlier layers (and the fixed bytes)

    @property
    def total(self) -> int:
        return self.transient + self.residual + self.stored


def peak_parts(report: MemoryReport) -> PeakParts:
    """Where a report's activation peak is and what it is made of."""
    row = report.layers[report.peak_index]
    transient = report.batch_size * row.tmp_bytes
    residual = report.batch_size * row.residual_bytes
    return PeakParts(row.name, transient, residual, report.peak_activation_bytes - transient - residual)


def stored_by_kind(report: MemoryReport) -> dict[str, int]:
    """Bytes kept for backward at the end of the forward, whole batch, by layer kind (largest first)."""
    out: dict[str, int] = {}
    for r in report.layers:
        out[r.kind] = out.get(r.kind, 0) + r.stored_bytes * report.batch_size + r.fixed_bytes
    return dict(sorted(((k, v) for k, v in out.items() if v), key=lambda kv: -kv[1]))


def _mb(nbytes: float) -> str:
    return f"{nbytes / 1e6:.1f} MB"


def _span(values: list[int]) -> str:
    lo, hi = _mb(min(values)), _mb(max(values))
    return lo if lo == hi else f"{lo} to {hi}"


def split_summary(full: MemoryReport, bias: MemoryReport, view_title: str) -> str:
    """Full vs bias-only under one view, in words: the activation ratio and what frozen weights cost there."""
    ratio = full.peak_activation_bytes / max(bias.peak_activation_bytes, 1)
    if 0.95 <= ratio <= 1.05:
        acts = (f"keeps about the same activations (**{_mb(bias.peak_activation_bytes)}**, {ratio:.2f}x): this "
                "view keeps layer inputs whatever trains")
    elif ratio > 1:
        acts = f"cuts activations to **{_mb(bias.peak_activation_bytes)}** ({ratio:.1f}x less)"
    else:
        acts = f"raises activations to **{_mb(bias.peak_activation_bytes)}** ({1 / ratio:.1f}x more)"
    frozen = bias.num_params - bias.num_trainable_params
    bits = 8 * bias.frozen_param_bytes / frozen if frozen else 32
    store = (f"this view stores frozen weights at {bits:.0f} bits" if bits < 31.5
             else "this view keeps frozen weights at 32 bits, so freezing them saves no parameter memory")
    return (f"Under **full** fine-tuning, activations take **{_mb(full.peak_activation_bytes)}** and parameters "
            f"**{_mb(full.param_bytes)}**. Training only the **biases** {acts}, while parameters go to "
            f"**{_mb(bias.param_bytes)}** ({store}). Priced by {view_title}.")


def shared_peak_text(parts: dict[str, PeakParts], reports: dict[str, MemoryReport]) -> str:
    """Why policies peak where they do: one layer's transient, or what has been kept by then."""
    if not parts:
        return ""
    names = ", ".join(f"**{p}**" for p in parts)
    ends = [r.stored_activation_bytes for r in reports.values()]
    if len({q.layer for q in parts.values()}) > 1:
        where = "; ".join(f"{p} at `{q.layer}` ({_mb(q.total)})" for p, q in parts.items())
        return f"{names} peak at different layers: {where}."
    q0 = next(iter(parts.values()))
    totals = [q.total for q in parts.values()]
    stored = [q.stored for q in parts.values()]
    if q0.transient + q0.residual >= max(stored):
        return (f"{names} all peak at `{q0.layer}`: that layer's own input and output buffers ({_mb(q0.transient)}"
                + (f", plus {_mb(q0.residual)} of shortcut input" if q0.residual else "")
                + f") outweigh what earlier layers have kept by then ({_span(stored)}). So their peaks differ by "
                f"only {_mb(max(totals) - min(totals))}; their difference shows in what each keeps at the end of "
                f"the forward ({_span(ends)}).")
    return (f"{names} all peak at `{q0.layer}`, where what earlier layers have kept ({_span(stored)}) outweighs "
            f"that layer's own buffers ({_mb(q0.transient + q0.residual)}): their peaks are set by what each "
            f"keeps for backward, so they differ ({_span(totals)}).")


def norm_gap_text(trace: ModelTrace, paper: MemoryReport, exact: MemoryReport, recompute: MemoryReport) -> str:
    """Bias-only under the paper's rules vs the engine's exact and recompute modes, and which norms cause the gap."""
    norms = [r for r in trace.layers if r.kind == "norm"]
    types = " / ".join(sorted({r.type for r in norms}))
    head = (f"Under **bias**, the paper's rules keep **{_mb(paper.stored_activation_bytes)}** for backward and peak "
            f"at **{_mb(paper.peak_activation_bytes)}** (`{paper.peak_layer}`); the engine, computing the same "
            f"gradients exactly, keeps **{_mb(exact.stored_activation_bytes)}** and peaks at "
            f"**{_mb(exact.peak_activation_bytes)}** (`{exact.peak_layer}`).")
    if not norms:
        return head + " This model has no norm layers, so the paper's rules need no assumption about them."
    if all(affine_in_x(r.module) for r in norms):
        return (head + f" Its {types} layers use frozen running statistics, so they are affine in x and the "
                "paper's rule (keep nothing while the scale is frozen) is exact here.")
    kept = [r for r in exact.layers if r.kind == "norm" and (r.stored_bytes or r.fixed_bytes)]
    norm_bytes = stored_by_kind(exact).get("norm", 0)
    return (head + f" **{_mb(norm_bytes)}** of what the engine keeps is x̂ and 1/σ of {len(kept)} {types} layers "
            "that a gradient passes through. The paper counts nothing for a norm whose scale is frozen, which holds "
            f"only for a norm affine in x at training time (frozen running statistics); {types} normalizes with "
            "statistics computed while training, so dL/dx needs x̂ (section 1: pick a norm layer). The engine's "
            "recompute mode keeps only each block's input and re-runs the block's forward in its backward: it "
            f"peaks at **{_mb(recompute.peak_activation_bytes)}** "
            f"({recompute.peak_activation_bytes / max(paper.peak_activation_bytes, 1):.1f}x the paper's figure), "
            "with the same exact gradients.")
