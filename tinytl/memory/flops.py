"""Multiply-accumulates per model with fvcore (on a real batch-1 model: fvcore's tracer needs real tensors)."""

from __future__ import annotations

import torch

from tinytl.validation import check_resolution
from tinytl.models import build_model


MAC_OPS = ("conv", "linear", "addmm", "matmul", "bmm", "einsum")


def count_macs(backbone: str, resolution: int = 224, num_classes: int = 1000, lite_residual: bool = True,
               norm: str = "gn", **options) -> int:
    """MACs of one forward at batch 1 in conv and matrix products (fvcore counts one per multiply-add)."""
    from fvcore.nn import FlopCountAnalysis

    check_resolution(resolution)
    model = build_model(backbone, num_classes, lite_residual=lite_residual, norm=norm, **options).eval()
    with torch.no_grad():
        analysis = FlopCountAnalysis(model, torch.zeros(1, 3, resolution, resolution))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        by_op = analysis.by_operator()
    return int(sum(n for op, n in by_op.items() if op in MAC_OPS))
