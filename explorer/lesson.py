"""The one-layer lesson of the "why" page: what stock autograd keeps for y = W x + b, measured.

A real copy of a conv/linear layer of the walked model runs one forward at batch 1 under
torch.autograd.graph.saved_tensors_hooks; every tensor autograd saves for backward passes the pack
hook, and is matched by storage to the layer's input x, its weight W or its bias b.
"""

from __future__ import annotations

import torch
from torch import nn

from tinytl.memory.walk import LayerRecord

TENSORS = ("x", "W", "b")


def real_layer(record: LayerRecord) -> nn.Module:
    """A CPU conv/linear layer with the record's configuration, bias included (the lesson's y = W x + b)."""
    m = record.module
    if record.kind == "conv":
        return nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                         bias=True)
    return nn.Linear(m.in_features, m.out_features, bias=True)


def autograd_keeps(record: LayerRecord, weight: bool, bias: bool, inp: bool) -> dict[str, int]:
    """Bytes per sample stock autograd keeps of x, W and b when those need gradients (others: 'other')."""
    layer = real_layer(record)
    layer.weight.requires_grad_(weight)
    layer.bias.requires_grad_(bias)
    x = torch.randn(record.input_shape, requires_grad=inp)
    owners = {"x": x, "W": layer.weight, "b": layer.bias}
    kept: dict[int, tuple[str, int]] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        name = next((n for n, o in owners.items() if o.untyped_storage().data_ptr() == ptr), "other")
        kept[ptr] = (name, t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x)
    out = dict.fromkeys((*TENSORS, "other"), 0)
    for name, nbytes in kept.values():
        out[name] += nbytes
    return out
