"""The engine's kernels against the stock ones they replace, one op at a time (medians, one thread by default).

Rows: a ReLU6's mask (forward: clamp + pack; backward: unpack and multiply) against stock's in-place
hardtanh under autograd (which copies its input) and hardtanh_backward; a pointwise conv's input gradient
as a batched matmul against convolution_backward; a frozen BN's backward against the bias-gradient sum
left when a frozen conv + BN pair folds the norm's scale into the conv weight; weight standardization's
centred-norm std against `Tensor.std`. Shapes are ProxylessNAS-Mobile's at 224 px, batch 8.
Run: python -m benchmarks.engine_kernels [--threads 1 --repeats 21]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from tinytl.engine import functional as EF
from tinytl.models.layers import WS_EPS, standardize_weight


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def std_by_reduction(weight: torch.Tensor) -> torch.Tensor:
    """Weight standardization with Tensor.std, the form it had before (the reference row)."""
    flat = weight.reshape(weight.shape[0], -1)
    return ((flat - flat.mean(dim=1, keepdim=True)) / (flat.std(dim=1, keepdim=True) + WS_EPS)).reshape_as(weight)


def relu6_rows(repeats: int) -> list[tuple[str, float, float]]:
    rows = []
    relu6 = EF.passes(torch.ops.aten.hardtanh_backward.grad_input, 0.0, 6.0)
    for shape in [(8, 144, 56, 56), (8, 240, 28, 28), (8, 576, 14, 14)]:
        x, grad = torch.randn(shape) * 4, torch.randn(shape)
        y = x.clamp(0, 6)
        packed = EF.pack_mask_of(y, relu6)

        def stock_forward():
            F.hardtanh(x.detach().requires_grad_(True) * 1.0, 0.0, 6.0, inplace=True)

        def stock_multiply():
            x.detach().requires_grad_(True) * 1.0

        def engine_forward():
            z = x.clone()
            EF.pack_mask_of(z.clamp_(0, 6), relu6)

        fwd_stock = median_ms(stock_forward, repeats) - median_ms(stock_multiply, repeats)
        fwd_engine = median_ms(engine_forward, repeats) - median_ms(x.clone, repeats)
        rows.append((f"ReLU6 forward {shape}", fwd_stock, fwd_engine))
        rows.append((f"ReLU6 backward {shape}",
                     median_ms(lambda: torch.ops.aten.hardtanh_backward(grad, y, 0.0, 6.0), repeats),
                     median_ms(lambda: EF.masked_grad(grad, packed), repeats)))
    return rows


def pointwise_rows(repeats: int) -> list[tuple[str, float, float]]:
    rows = []
    for n, c_in, size, c_out in [(8, 144, 56, 24), (8, 24, 56, 72), (8, 480, 14, 96), (8, 16, 112, 48)]:
        x, w = torch.randn(n, c_in, size, size), torch.randn(c_out, c_in, 1, 1)
        grad = torch.randn(n, c_out, size, size)
        rows.append((f"1x1 conv input grad {(n, c_in, size, size)}->{c_out}",
                     median_ms(lambda: torch.ops.aten.convolution_backward(
                         grad, x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [True, False, False]), repeats),
                     median_ms(lambda: EF._pointwise_input_grad(grad, w), repeats)))
    return rows


def norm_rows(repeats: int) -> list[tuple[str, float, float]]:
    """A frozen conv + fixed-statistics BN pair's backward: the norm's own backward (input and bias gradients)
    against what is left of it when its scale is folded into the conv weight (the bias gradient, a sum)."""
    rows = []
    for shape in [(8, 144, 56, 56), (8, 240, 28, 28), (8, 576, 14, 14)]:
        grad, c = torch.randn(shape), shape[1]
        gamma, mean, var = torch.rand(c) + 0.5, torch.randn(c), torch.rand(c) + 0.5
        rows.append((f"frozen BN backward {shape}",
                     median_ms(lambda: torch.ops.aten.native_batch_norm_backward(
                         grad, grad, gamma, mean, var, None, None, False, 1e-3, [True, False, True]), repeats),
                     median_ms(lambda: grad.sum(dim=(0, 2, 3)), repeats)))
    return rows


def standardize_rows(repeats: int) -> list[tuple[str, float, float]]:
    rows = []
    for shape in [(1280, 320, 1, 1), (192, 1152, 1, 1), (1152, 1, 7, 7), (48, 16, 1, 1)]:
        w = torch.randn(shape)
        rows.append((f"weight standardization {shape}", median_ms(lambda: std_by_reduction(w), repeats),
                     median_ms(lambda: standardize_weight(w), repeats)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}\n")
    print("| op | before / stock ms | engine ms | ratio |")
    print("|---|---|---|---|")
    for rows in (relu6_rows, pointwise_rows, norm_rows, standardize_rows):
        for name, before, after in rows(args.repeats):
            print(f"| {name} | {before:.3f} | {after:.3f} | {after / before:.2f}x |")


if __name__ == "__main__":
    main()
