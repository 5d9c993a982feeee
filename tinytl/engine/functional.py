"""Memory-lean autograd Functions: each saves only what the gradients it must produce need.

Rules (docs/PAPER.md: "Why bias-only saves memory", "Norm layers that are not affine"): a conv / linear keeps
its input only when its weight trains; a ReLU / ReLU6 / dropout keeps a 1-bit mask packed 8 per byte;
GroupNorm and training-mode BatchNorm keep their input and per-group statistics (i.e. x_hat) only when the
input or scale gradient is needed; frozen-statistics BatchNorm keeps its input only when its scale trains.
Gradients that are not needed are returned as None, never as materialised zeros. Parameters and buffers are
saved freely: they live anyway and are not activations. Forward values are stock's kernels' bit for bit;
backwards may use other kernels for the same math (pointwise convs as matmuls, a frozen conv + norm pair's
scale folded into the conv weight), equal to stock's gradients up to float rounding.
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
_BYTE_TABLES: dict[torch.device, torch.Tensor] = {}
_ONES: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}
MASK_CHUNK = 1 << 18  # elements per slice of a mask computation (a multiple of 8; 1 MB of float32)


def pack_mask(mask: torch.Tensor) -> torch.Tensor:
    """Pack a bool tensor into uint8, 8 elements per byte (little-endian bit order), one multiply per byte."""
    flat = mask.reshape(-1)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return (flat.view(torch.int64) * _PACK).bitwise_right_shift_(56).to(torch.uint8)


def _slice_len(x: torch.Tensor) -> int:
    """Elements per slice of a mask computation: MASK_CHUNK on CPU, the whole tensor elsewhere."""
    return MASK_CHUNK if x.device.type == "cpu" else max(x.numel(), 8)


def pack_mask_of(x: torch.Tensor, predicate: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Pack where predicate(part, scratch) is nonzero, part by part over slices of x.

    The predicate may write into `scratch` (a float buffer of part's size) and return it. All temporaries are
    slice-sized buffers reused across slices: they stay in cache, and a whole-tensor temporary would be a fresh
    mapping that page-faults on every step (on CPU that costs more than the arithmetic).
    """
    flat = x.reshape(-1)
    n, step = flat.numel(), _slice_len(x)
    out = torch.empty((n + 7) // 8, dtype=torch.uint8, device=x.device)
    size = min(n, step)
    scratch = torch.empty(size, dtype=x.dtype, device=x.device)
    bits = torch.zeros((size + 7) // 8 * 8, dtype=torch.bool, device=x.device)
    words = bits.view(torch.int64)  # packed in place: bits is rewritten by the next slice's predicate
    for start in range(0, n, step):
        part = flat[start:start + step]
        m = part.numel()
        if m == bits.numel():  # every slice but a last, shorter one: no sub-views to make
            bits.copy_(predicate(part, scratch))
            packed = words.mul_(_PACK).bitwise_right_shift_(56)
        else:  # the last slice: its padding bits stay 0
            bits.zero_()[:m].copy_(predicate(part, scratch[:m]))
            packed = words[:(m + 7) // 8].mul_(_PACK).bitwise_right_shift_(56)
        out[start // 8:start // 8 + packed.numel()].copy_(packed)
    return out


def _nonzero(part: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """Mask predicate for a ReLU's output: its nonzero entries are where the gradient passes."""
    return part


def passes(kernel: Callable[..., torch.Tensor], *args) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A mask predicate from a stock backward kernel (its `grad_input` overload): where it lets a gradient of
    ones through, so the mask follows stock PyTorch's boundary rules exactly. One float pass, no allocation."""
    def predicate(part: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
        return kernel(_one(part).expand(part.shape), part, *args, grad_input=scratch)
    return predicate


def _one(like: torch.Tensor) -> torch.Tensor:
    """A cached one-element tensor of 1 with like's dtype and device (expanded, it is a gradient of ones)."""
    key = (like.dtype, like.device)
    if key not in _ONES:
        _ONES[key] = torch.ones(1, dtype=like.dtype, device=like.device)
    return _ONES[key]


def _byte_table(device: torch.device) -> torch.Tensor:
    """(256,) int64: entry b holds 8 bytes, byte i being bit i of b. Unpacking is then a gather of 8-byte
    scalars, which is several times faster on CPU than gathering rows of 8 values."""
    if device not in _BYTE_TABLES:
        bits = torch.arange(256).unsqueeze(1).bitwise_right_shift(torch.arange(8)).bitwise_and(1)
        _BYTE_TABLES[device] = bits.to(torch.uint8).view(torch.int64).view(256).to(device)
    return _BYTE_TABLES[device]


def unpack_mask(packed: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Inverse of `pack_mask`: a bool tensor of the given shape."""
    numel = 1
    for s in shape:
        numel *= s
    spread = _byte_table(packed.device).index_select(0, packed.int()).view(torch.uint8)
    return spread[:numel].view(torch.bool).view(shape)


def masked_grad(grad: torch.Tensor, packed: torch.Tensor, on: float = 1.0, off: float = 0.0) -> torch.Tensor:
    """grad * on where the packed bit is set, grad * off elsewhere. Slice by slice: bytes of 0/1 gathered from
    the table, cast to grad's dtype in place in the output, multiplied by grad while still in cache."""
    n, step = grad.numel(), _slice_len(grad)
    g = grad.reshape(-1)
    out = torch.empty(n, dtype=grad.dtype, device=grad.device)
    table, index = _byte_table(grad.device), packed.int()
    spread = torch.empty((min(n, step) + 7) // 8, dtype=torch.int64, device=grad.device)
    factors = spread.view(torch.uint8)
    for start in range(0, n, step):
        part = out[start:start + step]
        rows = index[start // 8:start // 8 + spread.numel()]
        if rows.numel() == spread.numel():
            torch.index_select(table, 0, rows, out=spread)
        else:
            torch.index_select(table, 0, rows, out=spread[:rows.numel()])
        part.copy_(factors if part.numel() == factors.numel() else factors[:part.numel()])
        if (off, on) != (0.0, 1.0):
            part.mul_(on - off).add_(off)
        part.mul_(g[start:start + step])
    return out.view(grad.shape)


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


def _pointwise(weight: torch.Tensor, stride: Sequence[int], padding: Sequence[int], groups: int) -> bool:
    """A 1x1, stride-1, unpadded, ungrouped conv: a matrix product over channels at every pixel."""
    return weight.shape[2:] == (1, 1) and tuple(stride) == (1, 1) and tuple(padding) == (0, 0) and groups == 1


def _pointwise_input_grad(grad: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """dL/dx of a pointwise conv as one batched matmul, W^T @ grad over (N, C, H*W) views.

    On CPU this is 1.2-3x faster than convolution_backward, which takes a per-sample path for small batches on
    one thread (docs/BENCHMARKS.md); the values agree to float rounding. (The weight gradient stays with
    convolution_backward: as a batched matmul it would need an (N, C_out, C_in) transient.)
    """
    n, c_out = grad.shape[:2]
    w = weight.reshape(c_out, -1)
    return torch.matmul(w.t(), grad.reshape(n, c_out, -1)).view(n, w.shape[1], *grad.shape[2:])


def effective_weight(weight: torch.Tensor, standardize: bool,
                     dequant: Callable[[], torch.Tensor] | None) -> torch.Tensor:
    """The weight a conv multiplies by: rebuilt from its low-precision codes when held so, then standardized when
    the layer is weight-standardized."""
    w = weight if dequant is None else dequant()
    return standardize_weight(w) if standardize else w


class Conv2dFn(Function):
    """conv2d (optionally weight-standardized) that keeps its input only when the weight trains."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, standardize, dequant):
        w_eff = effective_weight(weight, standardize, dequant)
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
            w_eff = effective_weight(weight, standardize, dequant)
        if need_w:
            grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
                grad, x, w_eff, None, stride, padding, dilation, False, [0, 0], groups, [need_x, True, False])
            if standardize:  # a training weight is never held as codes, so `weight` is the raw one
                grad_w = _standardize_backward(weight, grad_w)
        elif need_x and _pointwise(w_eff, stride, padding, groups):
            grad_x = _pointwise_input_grad(grad, w_eff)
        elif need_x:
            grad_x = torch.ops.aten.convolution_backward(
                grad, _shape_only(grad, x_shape), w_eff, None, stride, padding, dilation, False, [0, 0], groups,
                [True, False, False])[0]
        if need_b:
            grad_b = grad.sum(dim=(0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None, None, None, None


class ConvNormFn(Function):
    """A conv followed by a fixed-statistics BatchNorm, both frozen (bias-only training): one Function whose
    forward runs the two stock kernels (outputs equal stock's bit for bit) and whose backward folds the norm's
    scale gamma / sqrt(var + eps) into the conv weight, which removes the norm's gradient pass. Neither layer
    keeps an activation, as when run apart; the conv bias's gradient is the norm bias's times that scale."""

    @staticmethod
    def forward(ctx, x, weight, conv_bias, norm_weight, norm_bias, running_mean, running_var, eps,
                stride, padding, dilation, groups, standardize, dequant):
        y = F.conv2d(x, effective_weight(weight, standardize, dequant), conv_bias, stride, padding, dilation, groups)
        ctx.conf = (x.shape, eps, stride, padding, dilation, groups, standardize, dequant)
        ctx.save_for_backward(weight if dequant is None else None, norm_weight, running_var)
        return F.batch_norm(y, running_mean, running_var, norm_weight, norm_bias, False, 0.0, eps)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        weight, norm_weight, running_var = ctx.saved_tensors
        x_shape, eps, stride, padding, dilation, groups, standardize, dequant = ctx.conf
        need_x, _, need_conv_bias, _, need_norm_bias = ctx.needs_input_grad[:5]
        scale = torch.rsqrt(running_var + eps)
        if norm_weight is not None:
            scale = scale * norm_weight
        grad_x = grad_conv_bias = grad_norm_bias = None
        if need_x:
            w = effective_weight(weight, standardize, dequant) * scale.view(-1, 1, 1, 1)
            if _pointwise(w, stride, padding, groups):
                grad_x = _pointwise_input_grad(grad, w)
            else:
                grad_x = torch.ops.aten.convolution_backward(
                    grad, _shape_only(grad, x_shape), w, None, stride, padding, dilation, False, [0, 0], groups,
                    [True, False, False])[0]
        if need_conv_bias or need_norm_bias:
            grad_shift = grad.sum(dim=(0, 2, 3))
            grad_norm_bias = grad_shift if need_norm_bias else None
            grad_conv_bias = grad_shift * scale if need_conv_bias else None
        return (grad_x, None, grad_conv_bias, None, grad_norm_bias) + (None,) * 9


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
    """ReLU (upper None) or ReLU6 (upper 6) keeping a 1-bit mask of where the gradient passes, or (mask False) its
    output, as stock's out-of-place kernels do, for small activations in a block's re-run, where what is kept
    lives only until the block's backward that follows. Either way it clamps in place when asked, without the
    copy of the input that stock autograd keeps for an in-place clamp.

    The mask is read off the clamped output y, as stock's backward reads it: ReLU's is y itself (nonzero where
    the gradient passes); ReLU6's is hardtanh_backward's rule 0 < y < upper, one float pass (on CPU a
    comparison producing bools costs several).
    """

    @staticmethod
    def forward(ctx, x, upper, inplace, mask):
        if inplace:
            ctx.mark_dirty(x)
        y = x.clamp_(0, upper) if inplace else x.clamp(0, upper)
        ctx.upper, ctx.mask = upper, mask
        rule = _nonzero if upper is None else passes(torch.ops.aten.hardtanh_backward.grad_input, 0.0, upper)
        ctx.save_for_backward(pack_mask_of(y, rule) if mask else y)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (kept,) = ctx.saved_tensors
        if ctx.mask:
            return masked_grad(grad, kept), None, None, None
        if ctx.upper is None:
            return torch.ops.aten.threshold_backward(grad, kept, 0.0), None, None, None
        return torch.ops.aten.hardtanh_backward(grad, kept, 0.0, ctx.upper), None, None, None


class MaskGradFn(Function):
    """Activation whose derivative takes two values (LeakyReLU 1 / slope, Hardsigmoid 1/6 / 0): a 1-bit mask."""

    @staticmethod
    def forward(ctx, x, kind, slope):
        if kind == "leaky_relu":
            packed = pack_mask_of(x, passes(torch.ops.aten.leaky_relu_backward.grad_input, 0.0, False))
            y = F.leaky_relu(x, slope)
        else:  # hardsigmoid: derivative 1/6 inside (-3, 3)
            packed, y = pack_mask_of(x, passes(torch.ops.aten.hardsigmoid_backward.grad_input)), F.hardsigmoid(x)
        ctx.values = (slope, 1.0) if kind == "leaky_relu" else (0.0, 1.0 / 6.0)
        ctx.save_for_backward(packed)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (packed,) = ctx.saved_tensors
        off, on = ctx.values
        return masked_grad(grad, packed, on, off), None, None


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
