"""Multiply-accumulates per model with fvcore (on a real batch-1 model: fvcore's tracer needs real tensors)."""

from __future__ import annotations

import torch

from tinytl.models.setting import ModelSetting


MAC_OPS = ("conv", "linear", "addmm", "matmul", "bmm", "einsum")


def count_macs(model: ModelSetting) -> int:
    """MACs of one forward at batch 1 in conv and matrix products (fvcore counts one per multiply-add)."""
    from fvcore.nn import FlopCountAnalysis

    net = model.build().eval()
    with torch.no_grad():
        analysis = FlopCountAnalysis(net, torch.zeros(1, 3, model.resolution, model.resolution))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        by_op = analysis.by_operator()
    return int(sum(n for op, n in by_op.items() if op in MAC_OPS))
