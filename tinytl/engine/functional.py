"""Memory-lean autograd Functions: each saves only what the gradients it must produce need.

Rules (docs/PAPER.md: "Why bias-only saves memory", "Norm layers that are not affine"): a conv / linear keeps
its input only when its weight trains; a
ReLU / ReLU6 / dropout keeps a 1-bit mask packed 8 per byte; GroupNorm and training-mode BatchNorm keep
their input and per-group statistics (i.e. x_hat) only when the input or scale gradient is needed;
frozen-statistics BatchNorm keeps its input only when its scale trains. Gradients that are not needed
are returned as None, never as materialised zeros. Parameters and buffers are saved freely: they live
anyway and are not activations.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from tinytl.models.layers import standardize_weight

_STATE = threading.local()  # .recomputing: depth of block re-runs in progress (BatchNorm keeps its stats then)
# (8 bytes of 0/1, read as one little-endian int64) * _PACK >> 56 is the byte with bit i = byte i
_PACK = 0x0102040810204080
_LUTS: dict[tuple, torch.Tensor] = {}
MASK_CHUNK = 1 << 18  # elements per slice of a mask computation (a multiple of 8; 1 MB of float32)


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """Pack a bool tensor into uint8, 8 elements per byte (little-endian bit order), one multiply per byte."""
    flat = mask.reshape(-1)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return (flat.view(torch.int64) * _PACK).bitwise_right_shift_(56).to(torch.uint8)


def pack_mask_of(x: torch.Tensor, predicate: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """pack_mask(predicate(x)), computed over slices of MASK_CHUNK elements: the predicate's temporaries then
    stay small enough for the allocator to reuse one block, where a whole-tensor temporary is a fresh mapping
    that page-faults on every step (on CPU that costs more than the arithmetic)."""
    flat = x.reshape(-1)
    if flat.numel() <= MASK_CHUNK:
        return pack_mask(predicate(flat))
    out = torch.empty((flat.numel() + 7) // 8, dtype=torch.uint8, device=x.device)
    for start in range(0, flat.numel(), MASK_CHUNK):
        packed = pack_mask(predicate(flat[start:start + MASK_CHUNK]))
        out[start // 8:start // 8 + packed.numel()] = packed
    return out


def _lut(values: tuple[float, float], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(256, 8) table: row b holds values[bit i of b] for i in 0..7 (unpacking is then one gather)."""
    key = (values, dtype, device)
    if key not in _LUTS:
        bits = torch.arange(256).unsqueeze(1).bitwise_right_shift(torch.arange(8)).bitwise_and(1).bool()
        _LUTS[key] = torch.where(bits, values[1], values[0]).to(dtype=dtype, device=device)
    return _LUTS[key]


def unpack_mask_as(packed: torch.Tensor, shape: Sequence[int], off: float, on: float,
                   dtype: torch.dtype) -> torch.Tensor:
    """A fresh `dtype` tensor of `shape` holding `on` where the packed bit is set, `off` elsewhere."""
    numel = 1
    for s in shape:
        numel *= s
    table = _lut((float(off), float(on)), dtype, packed.device)
    return table.index_select(0, packed.int()).view(-1)[:numel].view(shape)


def unpack_mask(packed: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Inverse of `pack_mask`: a bool tensor of the given shape."""
    return unpack_mask_as(packed, shape, 0, 1, torch.uint8).view(torch.bool)


def masked_grad(grad: torch.Tensor, packed: torch.Tensor, on: float = 1.0) -> torch.Tensor:
    """grad * on where the packed bit is set, 0 elsewhere: one gather and one in-place multiply."""
    return unpack_mask_as(packed, grad.shape, 0.0, on, grad.dtype).mul_(grad)


@contextlib.contextmanager
def recomputing() -> Iterator[None]:
    """Mark a block's forward as a recomputation (norm running statistics are left untouched)."""
    _STATE.recomputing = getattr(_STATE, "recomputing", 0) + 1
    try:
        yield
    finally:
        _STATE.recomputing -= 1


def is_recomputing() -> bool:
    """True while a block's forward is being re-run inside its backward."""
    return getattr(_STATE, "recomputing", 0) > 0


def _standardize_backward(weight: torch.Tensor, grad_std: torch.Tensor) -> torch.Tensor:
    """Gradient through weight standardization, recomputed from the raw weight (weight-sized, batch-free)."""
    with torch.enable_grad():
        w = weight.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(standardize_weight(w), w, grad_std)
    return grad


def _shape_only(buffer: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """A contiguous tensor of `shape` standing in for an input whose values a kernel never reads.

    Convolution's input-gradient kernel reads only the input's size and layout (stride-0 expanded
    stand-ins are copied to contiguous first), so it borrows `buffer`'s storage when it is large enough.
    """
    numel = 1
    for s in shape:
        numel *= s
    if buffer.is_contiguous() and buffer.numel() >= numel:
        return buffer.view(-1)[:numel].view(shape)
    return buffer.new_empty(shape)


class Conv2dFn(Function):
    """conv2d (optionally weight-standardized) that keeps its input only when the weight trains."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, standardize, dequant):
        w = weight if dequant is None else dequant()
        w_eff = standardize_weight(w) if standardize else w
        y = F.conv2d(x, w_eff, bias, stride, padding, dilation, groups)
        need_x, need_w, _ = ctx.needs_input_grad[:3]
        # a block re-run inside the backward keeps a frozen weight's effective form for the backward that follows
        # at once (a weight-sized transient; standardizing a third time costs more); the forward keeps the raw one
        ctx.eff_kept = is_recomputing() and (standardize or dequant is not None) and need_x and not need_w
        ctx.conf = (x.shape, stride, padding, dilation, groups, standardize, dequant)
        kept = w_eff if ctx.eff_kept else weight if (need_x or need_w) and dequant is None else None
        ctx.save_for_backward(x if need_w else None, kept)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        x_shape, stride, padding, dilation, groups, standardize, dequant = ctx.conf
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        if ctx.eff_kept:
            w_eff = weight
        elif need_x or need_w:
            w = weight if dequant is None else dequant()
            w_eff = standardize_weight(w) if standardize else w
        if need_w:
            grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
                grad, x, w_eff, None, stride, padding, dilation, False, [0, 0], groups, [need_x, True, False])
            if standardize:
                grad_w = _standardize_backward(w, grad_w)
        elif need_x:
            grad_x = torch.ops.aten.convolution_backward(
                grad, _shape_only(grad, x_shape), w_eff, None, stride, padding, dilation, False, [0, 0], groups,
                [True, False, False])[0]
        if need_b:
            grad_b = grad.sum(dim=(0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None, None, None, None


class LinearFn(Function):
    """linear layer that keeps its input only when the weight trains."""

    @staticmethod
    def forward(ctx, x, weight, bias, dequant):
        w = weight if dequant is None else dequant()
        y = F.linear(x, w, bias)
        need_x, need_w, _ = ctx.needs_input_grad[:3]
        ctx.dequant = dequant
        ctx.save_for_backward(x if need_w else None, weight if need_x and dequant is None else None)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        g2 = grad.reshape(-1, grad.shape[-1])
        if need_x:
            w = weight if ctx.dequant is None else ctx.dequant()
            grad_x = grad.matmul(w)
        if need_w:
            grad_w = g2.t().mm(x.reshape(-1, x.shape[-1]))
        if need_b:
            grad_b = g2.sum(dim=0)
        return grad_x, grad_w, grad_b, None


class ClampMaskFn(Function):
    """ReLU (upper None) or ReLU6 (upper 6) keeping a 1-bit mask of where the gradient passes.

    The mask is read off the clamped output y (0 < x < upper exactly where y is neither 0 nor upper): y != 0,
    or y * (y - upper) != 0, are a cast and two float passes, cheaper on CPU than two comparisons.
    """

    @staticmethod
    def forward(ctx, x, upper, inplace):
        if inplace:
            ctx.mark_dirty(x)
        y = x.clamp_(0, upper) if inplace else x.clamp(0, upper)
        ctx.save_for_backward(pack_mask_of(y, torch.Tensor.bool if upper is None
                                           else lambda v: v.sub(upper).mul_(v).bool()))
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (packed,) = ctx.saved_tensors
        return masked_grad(grad, packed), None, None


class MaskGradFn(Function):
    """Activation whose derivative takes two values (LeakyReLU 1 / slope, Hardsigmoid 1/6 / 0): a 1-bit mask."""

    @staticmethod
    def forward(ctx, x, kind, slope):
        if kind == "leaky_relu":
            packed, y = pack_mask_of(x, lambda v: v > 0), F.leaky_relu(x, slope)
        else:  # hardsigmoid: derivative 1/6 inside (-3, 3)
            packed, y = pack_mask_of(x, lambda v: (v > -3) & (v < 3)), F.hardsigmoid(x)
        ctx.values = (slope, 1.0) if kind == "leaky_relu" else (0.0, 1.0 / 6.0)
        ctx.save_for_backward(packed)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (packed,) = ctx.saved_tensors
        off, on = ctx.values
        return unpack_mask_as(packed, grad.shape, off, on, grad.dtype).mul_(grad), None, None


_INPUT_KEEPERS: dict[str, tuple[Callable, Callable]] = {
    "silu": (F.silu, torch.ops.aten.silu_backward),
    "hardswish": (F.hardswish, torch.ops.aten.hardswish_backward),
    "mish": (F.mish, torch.ops.aten.mish_backward),
}


class InputActFn(Function):
    """SiLU, Hardswish, Mish or GELU: the derivative needs the input itself, so the input is kept (never a copy).

    Runs out of place even for in-place modules: stock in-place autograd would keep a copy of the input
    and overwrite it, the same bytes and one more pass.
    """

    @staticmethod
    def forward(ctx, x, kind, approximate):
        ctx.kind, ctx.approximate = kind, approximate
        ctx.save_for_backward(x)
        if kind == "gelu":
            return F.gelu(x, approximate=approximate)
        return _INPUT_KEEPERS[kind][0](x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        if ctx.kind == "gelu":
            return torch.ops.aten.gelu_backward(grad, x, approximate=ctx.approximate), None, None
        return _INPUT_KEEPERS[ctx.kind][1](grad, x), None, None


class SigmoidFn(Function):
    """Sigmoid keeping its output (its derivative is y (1 - y))."""

    @staticmethod
    def forward(ctx, x):
        y = torch.sigmoid(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return torch.ops.aten.sigmoid_backward(grad, y)


class ScaleFn(Function):
    """Squeeze-excitation's `scale * x`: x kept only when the scale needs a gradient, the (N, C, 1, 1) scale
    only when x does."""

    @staticmethod
    def forward(ctx, x, scale):
        need_x, need_scale = ctx.needs_input_grad
        ctx.save_for_backward(x if need_scale else None, scale if need_x else None)
        return scale * x

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, scale = ctx.saved_tensors
        need_x, need_scale = ctx.needs_input_grad
        grad_x = grad * scale if need_x else None
        grad_scale = (grad * x).sum(dim=(2, 3), keepdim=True) if need_scale else None
        return grad_x, grad_scale


class DropoutFn(Function):
    """Dropout keeping its keep-mask at 1 bit; draws the same random numbers stock PyTorch draws."""

    @staticmethod
    def forward(ctx, x, p):
        if x.device.type == "cpu":  # stock CPU dropout: a float noise tensor from bernoulli_
            keep = torch.empty_like(x).bernoulli_(1 - p).bool()
        else:  # stock fused dropout on accelerators
            keep = torch.native_dropout(x, p, True)[1]
        ctx.scale = 1.0 / (1.0 - p)
        ctx.save_for_backward(pack_mask(keep))
        return x * keep * ctx.scale

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (packed,) = ctx.saved_tensors
        return masked_grad(grad, packed, ctx.scale), None


def _channel_sum(t: torch.Tensor) -> torch.Tensor:
    return t.sum(dim=[d for d in range(t.dim()) if d != 1])


class GroupNormFn(Function):
    """GroupNorm keeping its input and per-group mean / 1/sigma (x_hat) only when dL/dx or dL/dgamma is needed."""

    @staticmethod
    def forward(ctx, x, weight, bias, groups, eps):
        n, c = x.shape[:2]
        hw = x.numel() // max(n * c, 1)
        y, mean, rstd = torch.native_group_norm(x, weight, bias, n, c, hw, groups, eps)
        need_x, need_w, _ = ctx.needs_input_grad[:3]
        keep = need_x or need_w
        ctx.conf = (n, c, hw, groups)
        ctx.save_for_backward(x if keep else None, mean if keep else None, rstd if keep else None,
                              weight if need_x else None)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, mean, rstd, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if not (need_x or need_w):
            return None, None, _channel_sum(grad) if need_b else None, None, None
        n, c, hw, groups = ctx.conf
        gx, gw, gb = torch.ops.aten.native_group_norm_backward(
            grad.contiguous(), x, mean, rstd, weight, n, c, hw, groups, [need_x, need_w, need_b])
        return gx, gw, gb, None, None


class BatchNormFn(Function):
    """Training-mode BatchNorm (batch statistics) keeping its input and per-channel statistics only when needed."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
        y, mean, invstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum, eps)
        need_x, need_w, _ = ctx.needs_input_grad[:3]
        keep = need_x or need_w
        ctx.eps = eps
        ctx.save_for_backward(x if keep else None, mean if keep else None, invstd if keep else None,
                              weight if need_x else None)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, mean, invstd, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if not (need_x or need_w):
            return None, None, _channel_sum(grad) if need_b else None, None, None, None, None
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
            grad.contiguous(), x, weight, None, None, mean, invstd, True, ctx.eps, [need_x, need_w, need_b])
        return gx, gw, gb, None, None, None, None


class FrozenBatchNormFn(Function):
    """BatchNorm with fixed running statistics (affine in x): dL/dx needs no activation, dL/dgamma its input."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps):
        y = F.batch_norm(x, running_mean, running_var, weight, bias, False, 0.0, eps)
        need_x, need_w, _ = ctx.needs_input_grad[:3]
        ctx.eps = eps
        keep_stats = need_x or need_w
        ctx.save_for_backward(x if need_w else None, weight if need_x else None,
                              running_mean if keep_stats else None, running_var if keep_stats else None)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight, running_mean, running_var = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if not (need_x or need_w):
            return None, None, _channel_sum(grad) if need_b else None, None, None, None
        grad = grad.contiguous()
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
            grad, x if need_w else _shape_only(grad, grad.shape), weight, running_mean, running_var, None, None,
            False, ctx.eps, [need_x, need_w, need_b])
        return gx, gw, gb, None, None, None


class AvgPool2dFn(Function):
    """2-D average pooling: its backward needs only the input's shape, so nothing is kept."""

    @staticmethod
    def forward(ctx, x, kernel, stride, padding, ceil_mode, count_include_pad, divisor):
        ctx.conf = (x.shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor)
        return F.avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad, divisor)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor = ctx.conf
        shape_only = grad.new_empty(1).expand(shape)  # the kernel reads the input's size, never its values
        grad_x = torch.ops.aten.avg_pool2d_backward(grad, shape_only, kernel, stride, padding, ceil_mode,
                                                    count_include_pad, divisor)
        return grad_x, None, None, None, None, None, None


class MaxPool2dFn(Function):
    """2-D max pooling keeping, per output, only the position of its maximum inside the window (1 byte)."""

    @staticmethod
    def forward(ctx, x, kernel, stride, padding, dilation, ceil_mode):
        y, index = F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode, return_indices=True)
        width = x.shape[-1]
        oh = torch.arange(y.shape[-2], device=x.device).view(-1, 1) * stride[0] - padding[0]
        ow = torch.arange(y.shape[-1], device=x.device).view(1, -1) * stride[1] - padding[1]
        local = (index // width - oh) // dilation[0] * kernel[1] + (index % width - ow) // dilation[1]
        ctx.conf = (x.shape, kernel, stride, padding, dilation)
        ctx.save_for_backward(local.to(torch.uint8))
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (local,) = ctx.saved_tensors
        shape, kernel, stride, padding, dilation = ctx.conf
        oh = torch.arange(grad.shape[-2], device=grad.device).view(-1, 1) * stride[0] - padding[0]
        ow = torch.arange(grad.shape[-1], device=grad.device).view(1, -1) * stride[1] - padding[1]
        local = local.long()
        index = (oh + local // kernel[1] * dilation[0]) * shape[-1] + ow + local % kernel[1] * dilation[1]
        grad_x = grad.new_zeros(shape).flatten(2)
        grad_x.scatter_add_(2, index.flatten(2), grad.flatten(2))
        return grad_x.view(shape), None, None, None, None, None


def _rng_devices(x: torch.Tensor) -> list[torch.device]:
    return [x.device] if x.device.type == "cuda" else []


class RecomputeFn(Function):
    """Runs a block keeping only its input; its backward re-runs the block's forward and back-propagates.

    The random-number state at the forward is restored for the re-run (dropout, stochastic depth draw
    the same masks), as torch.utils.checkpoint does.
    """

    @staticmethod
    def forward(ctx, run: Callable[[torch.Tensor], torch.Tensor], x, *params):
        ctx.run, ctx.params = run, params
        ctx.rng = torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in _rng_devices(x)]
        ctx.save_for_backward(x)
        return run(x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        need = ctx.needs_input_grad
        x_in = x.detach().requires_grad_(need[1])
        cpu_state, device_states = ctx.rng
        devices = _rng_devices(x)
        with torch.random.fork_rng(devices=devices), torch.enable_grad(), recomputing():
            torch.set_rng_state(cpu_state)
            for device, state in zip(devices, device_states):
                torch.cuda.set_rng_state(state, device)
            out = ctx.run(x_in)
        targets = ([x_in] if need[1] else []) + [p for p, n in zip(ctx.params, need[2:]) if n]
        grads = iter(torch.autograd.grad(out, targets, grad, allow_unused=True))
        grad_x = next(grads) if need[1] else None
        return (None, grad_x, *(next(grads) if n else None for n in need[2:]))
