"""Fast, CPU-faithful meta kernels for recording a step: an op's outputs from its inputs' shapes alone.

Many of PyTorch's meta kernels are Python decompositions (GroupNorm, BatchNorm, bilinear upsampling,
hardtanh, ...) costing milliseconds per call. On the meta device an op's result depends only on its
inputs' metadata, so a functional op's outputs are memoized by (op, input shapes, strides, dtypes, other
arguments); an in-place op returns its (unchanged) self; and a few norm / upsampling kernels get their
outputs' shapes written out, as the CPU kernels allocate them (eval-mode BatchNorm keeps empty statistics
on the CPU, not per-channel ones as its meta kernel does). A shortcut that meets inputs its kernel would
reject leaves the op to the kernel, so errors stay the kernel's. `FastMetaMode` runs a whole region this way
(the walk, a model build).
"""

from __future__ import annotations

import torch
from torch._prims_common import suggest_memory_format
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

aten = torch.ops.aten
NOT_HANDLED = object()
# in-place ops that change their self's metadata, or that autograd / the tracker must see run
_METADATA_MUTATORS = {"aten::resize_", "aten::set_", "aten::as_strided_", "aten::squeeze_", "aten::unsqueeze_",
                      "aten::t_", "aten::transpose_", "aten::swapdims_", "aten::swapaxes_", "aten::resize_as_",
                      "aten::detach_", "aten::requires_grad_", "aten::_coalesced_", "aten::set_data"}


def _empty(shape, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=dtype or like.dtype, device=like.device)


def _group_norm(x, weight, bias, n, c, hxw, group, eps):
    return _empty(x.shape, x), _empty((n, group), x), _empty((n, group), x)


def _group_norm_backward(dy, x, mean, rstd, weight, n, c, hxw, group, mask):
    return (_empty(x.shape, x) if mask[0] else None, _empty((c,), x) if mask[1] else None,
            _empty((c,), x) if mask[2] else None)


def _batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps):
    stats = (x.shape[1],) if training else (0,)
    return _empty(x.shape, x), _empty(stats, x), _empty(stats, x)


def _batch_norm_backward(dy, x, weight, running_mean, running_var, save_mean, save_invstd, train, eps, mask):
    c = (x.shape[1],)
    return (_empty(x.shape, x) if mask[0] else None, _empty(c, x) if mask[1] else None,
            _empty(c, x) if mask[2] else None)


def _upsample(x, output_size, *rest):
    if x.dim() != 2 + len(output_size) or min((*x.shape[2:], *output_size), default=1) <= 0:
        return NOT_HANDLED  # the kernel's own size checks and message
    return _empty((*x.shape[:2], *output_size), x)


def _upsample_backward(grad, output_size, input_size, *rest):
    return _empty(input_size, grad)


def _convolution(x, weight, bias, stride, padding, dilation, transposed, output_padding, groups):
    """A plain (not transposed) convolution: the meta kernel's contiguous output of the usual size."""
    spatial = x.dim() - 2
    if (transposed or spatial < 1 or weight.dim() != x.dim() or x.shape[1] == 0
            or weight.shape[1] * groups != x.shape[1] or not len(stride) == len(padding) == len(dilation) == spatial
            or min(stride) < 1 or min(dilation) < 1 or min(padding) < 0):
        return NOT_HANDLED
    dims = list(zip(x.shape[2:], weight.shape[2:], stride, padding, dilation))
    if any(n + 2 * p < d * (k - 1) + 1 for n, k, s, p, d in dims):
        return NOT_HANDLED  # the kernel's own size checks and message
    return _empty((x.shape[0], weight.shape[0], *((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in dims)), x)


def _convolution_backward(dy, x, weight, bias_sizes, stride, padding, dilation, transposed, output_padding, groups,
                          mask):
    """Gradients shaped as input, weight and bias, in the grad's dtype (inputs the meta kernel keeps contiguous)."""
    if suggest_memory_format(x) != torch.contiguous_format or suggest_memory_format(weight) != torch.contiguous_format:
        return NOT_HANDLED  # channels-last inputs: the meta kernel picks the gradients' layout
    if mask[2] and bias_sizes is None:
        return NOT_HANDLED
    return (_empty(x.shape, dy) if mask[0] else None, _empty(weight.shape, dy) if mask[1] else None,
            _empty(bias_sizes, dy) if mask[2] else None)


_REDUCTIONS = {aten.mean.dim, aten.sum.dim_IntList, aten.std.correction, aten.var.correction, aten.amax.default,
               aten.amin.default}
# elementwise ops without the pointwise tag (activation backwards): same output rule
_ELEMENTWISE = {aten.hardtanh_backward.default, aten.hardswish_backward.default, aten.hardsigmoid_backward.default}
_dtype_memo: dict = {}


def _contiguous_meta(args) -> bool:
    return all(a.device.type == "meta" and a.is_contiguous() for a in args if isinstance(a, torch.Tensor))


def _pointwise(func, args: tuple, kwargs: dict):
    """Pointwise op on contiguous inputs: contiguous outputs of the broadcast shape, dtypes asked once."""
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if not tensors or any(isinstance(a, (list, tuple)) for a in args) or not _contiguous_meta(args):
        return NOT_HANDLED
    key = (func, tuple((a.dtype, a.dim() == 0) if isinstance(a, torch.Tensor) else type(a) for a in args),
           _key(tuple(sorted(kwargs.items()))))
    dtypes = _dtype_memo.get(key)
    if dtypes is None:
        tiny = [torch.empty((1,) * a.dim(), dtype=a.dtype, device="meta") if isinstance(a, torch.Tensor) else a
                for a in args]
        out = func(*tiny, **kwargs)
        dtypes = (not isinstance(out, (tuple, list)),
                  tuple(o.dtype if isinstance(o, torch.Tensor) else None for o in
                        ((out,) if not isinstance(out, (tuple, list)) else out)))
        _dtype_memo[key] = dtypes
    single, kinds = dtypes
    if None in kinds:
        return NOT_HANDLED
    shape = _broadcast([t.shape for t in tensors])
    if shape is None:
        return NOT_HANDLED  # the kernel raises its own message
    outs = tuple(torch.empty(shape, dtype=d, device="meta") for d in kinds)
    return outs[0] if single else outs


def _broadcast(shapes: list) -> list[int] | None:
    """The broadcast of `shapes` (as torch.broadcast_shapes, for concrete sizes), None where they do not broadcast."""
    out = [1] * max(len(s) for s in shapes)
    for shape in shapes:
        for i, n in enumerate(shape, len(out) - len(shape)):
            if n != 1:
                if out[i] != 1 and out[i] != n:
                    return None
                out[i] = n
    return out


def _reduction(func, args: tuple, kwargs: dict):
    x = args[0]
    if not x.dtype.is_floating_point or not x.is_contiguous() or kwargs.get("dtype") not in (None, x.dtype):
        return NOT_HANDLED
    dims = args[1] if len(args) > 1 else kwargs.get("dim")
    keepdim = kwargs.get("keepdim", False)
    if func in (aten.mean.dim, aten.sum.dim_IntList, aten.amax.default, aten.amin.default) and len(args) > 2:
        keepdim = args[2]
    if dims is None or (isinstance(dims, (list, tuple)) and not dims):
        dims = range(x.dim())
    dims = (dims,) if isinstance(dims, int) else dims
    rank = max(x.dim(), 1)
    if any(not -rank <= d < rank for d in dims):
        return NOT_HANDLED  # the kernel raises its own message
    dims = {d % rank for d in dims}
    shape = [1 if i in dims else n for i, n in enumerate(x.shape) if keepdim or i not in dims]
    return torch.empty(shape, dtype=x.dtype, device="meta")


_LIKE = {aten.zeros_like.default, aten.empty_like.default, aten.ones_like.default, aten.full_like.default}


def _like(func, args: tuple, kwargs: dict):
    x = args[0]
    if not x.is_contiguous() or kwargs.get("memory_format") not in (None, torch.preserve_format,
                                                                      torch.contiguous_format):
        return NOT_HANDLED
    if kwargs.get("layout") not in (None, torch.strided) or kwargs.get("device") not in (None, x.device):
        return NOT_HANDLED
    return torch.empty(x.shape, dtype=kwargs.get("dtype") or x.dtype, device="meta")


def _fast(func, args: tuple, kwargs: dict):
    """Outputs written out without running the (Python) meta kernel, or NOT_HANDLED."""
    if func in _LIKE:
        return _like(func, args, kwargs)
    if func in _REDUCTIONS:
        return _reduction(func, args, kwargs)
    if func in _ELEMENTWISE or torch.Tag.pointwise in func.tags:
        return _pointwise(func, args, kwargs)
    return NOT_HANDLED


# rules for contiguous inputs only: the CPU kernels then return contiguous outputs
_RULES = {aten.native_group_norm.default: _group_norm, aten.native_group_norm_backward.default: _group_norm_backward,
          aten.native_batch_norm.default: _batch_norm, aten.native_batch_norm_backward.default: _batch_norm_backward,
          aten.upsample_bilinear2d.default: _upsample, aten.upsample_bilinear2d_backward.default: _upsample_backward,
          aten.upsample_nearest2d.default: _upsample, aten.upsample_nearest2d_backward.default: _upsample_backward,
          aten.convolution.default: _convolution, aten.convolution_backward.default: _convolution_backward}
_PLAIN = (bool, int, float, str, torch.dtype, torch.device, torch.memory_format, torch.layout)
_PLAIN_TYPES = frozenset((*_PLAIN, type(None)))  # exact types: a key without a call per number
_kind_cache: dict = {}
_memo: dict = {}


def _kind(func) -> str:
    """'inplace' (returns its mutated self), 'functional' (fresh outputs only) or 'other'."""
    kind = _kind_cache.get(func)
    if kind is None:
        schema = func._schema
        returns_alias = any(r.alias_info is not None for r in schema.returns)
        if not schema.is_mutable and not returns_alias:
            kind = "functional"
        elif (schema.name.endswith("_") and schema.name not in _METADATA_MUTATORS and len(schema.returns) == 1
              and schema.returns[0].alias_info is not None and schema.arguments
              and schema.arguments[0].alias_info is not None and schema.arguments[0].alias_info.is_write
              and sum(a.alias_info is not None and a.alias_info.is_write for a in schema.arguments) == 1):
            kind = "inplace"
        else:
            kind = "other"
        _kind_cache[func] = kind
    return kind


def _key(value):
    """Hashable description of an argument (tensors by metadata), or raise TypeError."""
    kind = type(value)
    if kind in _PLAIN_TYPES:
        return value
    if isinstance(value, torch.Tensor):
        if not value.is_meta:
            raise TypeError("not a meta tensor")
        return ("T", value.shape, value.stride(), value.dtype, value.storage_offset())
    if isinstance(value, (list, tuple)):
        out = []  # one level inline: an op's arguments, an int list, a tensor list
        for v in value:
            if type(v) in _PLAIN_TYPES:
                out.append(v)
            elif type(v) is torch.Tensor and v.is_meta:
                out.append(("T", v.shape, v.stride(), v.dtype, v.storage_offset()))
            else:
                out.append(_key(v))
        return tuple(out)
    if value is None or isinstance(value, _PLAIN):
        return value
    raise TypeError(f"unmemoizable argument {type(value).__name__}")


def _rebuild(spec):
    if spec is None or not isinstance(spec, tuple) or not spec or spec[0] != "T":
        return spec
    _, shape, stride, dtype = spec
    return torch.empty_strided(shape, stride, dtype=dtype, device="meta")


def _spec(value):
    if isinstance(value, torch.Tensor):
        return ("T", tuple(value.shape), value.stride(), value.dtype)
    return value


def tensors_in(value) -> list[torch.Tensor]:
    """The tensors in a nested value, in `tree_leaves` order (a tensor, or a flat tuple or list of them: no pytree)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if type(value) in (tuple, list) and all(v is None or isinstance(v, torch.Tensor) for v in value):
        return [v for v in value if v is not None]
    return [t for t in tree_leaves(value) if isinstance(t, torch.Tensor)]


def _aliases_an_input(out, args: tuple, kwargs: dict) -> bool:
    inputs = {t.untyped_storage()._cdata for t in tensors_in(args) + tensors_in(kwargs)}
    return any(o.untyped_storage()._cdata in inputs for o in tensors_in(out))


def run_meta(func, args: tuple, kwargs: dict):
    """Run `func` fast when all its tensors are meta tensors; NOT_HANDLED when it must run as usual."""
    kind = _kind_cache.get(func) or _kind(func)
    if kind == "inplace":
        first = args[0] if args else None
        if isinstance(first, torch.Tensor) and first.device.type == "meta" and all(
                a.device.type == "meta" for a in args if isinstance(a, torch.Tensor)):
            return first
        return NOT_HANDLED
    if kind != "functional":
        return NOT_HANDLED
    try:
        key = (func, _key(args), _key(tuple(sorted(kwargs.items()))) if kwargs else ())
    except TypeError:
        return NOT_HANDLED
    spec = _memo.get(key)
    if spec is None:  # first call with this signature
        rule = _RULES.get(func)
        out = rule(*args) if rule is not None and not kwargs and args[0].is_contiguous() else NOT_HANDLED
        if out is NOT_HANDLED:
            out = _fast(func, args, kwargs)
            if out is NOT_HANDLED:
                out = func(*args, **kwargs)
                if _aliases_an_input(out, args, kwargs):  # a view its schema does not declare (_unsafe_view)
                    _kind_cache[func] = "other"
                    return out
        container = None if not isinstance(out, (tuple, list)) else type(out)
        outs = (out,) if container is None else out
        if all(o.device.type == "meta" for o in outs if isinstance(o, torch.Tensor)):
            if len(_memo) > 200_000:
                _memo.clear()
            _memo[key] = (container, tuple(_spec(o) for o in outs))
        return out
    container, outs = spec
    built = [_rebuild(o) for o in outs]
    return built[0] if container is None else container(built)


def run_op(func, args: tuple, kwargs: dict):
    """`func`'s outputs: `run_meta`'s where it applies, else the op run as usual."""
    out = run_meta(func, args, kwargs)
    return func(*args, **kwargs) if out is NOT_HANDLED else out


class FastMetaMode(TorchDispatchMode):
    """Runs every op of a region through `run_op`: meta tensors get the fast kernels, other tensors the usual ones."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # nothing here is compiled: no per-op dynamo-disabling wrapper

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return run_op(func, args, kwargs or {})


def clear_memo() -> None:
    """Forget every memoized op signature (a benchmark's cold start)."""
    _memo.clear()
    _dtype_memo.clear()
