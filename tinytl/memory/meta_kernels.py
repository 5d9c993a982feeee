"""Fast, CPU-faithful meta kernels for recording a step: an op's outputs from its inputs' shapes alone.

Many of PyTorch's meta kernels are Python decompositions (GroupNorm, BatchNorm, bilinear upsampling,
hardtanh, ...) costing milliseconds per call. On the meta device an op's result depends only on its
inputs' metadata, so a functional op's outputs are memoized by (op, input shapes, strides, dtypes, other
arguments); an in-place op returns its (unchanged) self; and a few norm / upsampling kernels get their
outputs' shapes written out, as the CPU kernels allocate them (eval-mode BatchNorm keeps empty statistics
on the CPU, not per-channel ones as its meta kernel does).
"""

from __future__ import annotations

import torch
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
    return _empty((*x.shape[:2], *output_size), x)


def _upsample_backward(grad, output_size, input_size, *rest):
    return _empty(input_size, grad)


_REDUCTIONS = {aten.mean.dim, aten.sum.dim_IntList, aten.std.correction, aten.var.correction, aten.amax.default,
               aten.amin.default}
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
    shape = torch.broadcast_shapes(*(t.shape for t in tensors))
    outs = tuple(torch.empty(shape, dtype=d, device="meta") for d in kinds)
    return outs[0] if single else outs


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
    dims = {d % max(x.dim(), 1) for d in ((dims,) if isinstance(dims, int) else dims)}
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
    if torch.Tag.pointwise in func.tags:
        return _pointwise(func, args, kwargs)
    return NOT_HANDLED


# rules for contiguous inputs only: the CPU kernels then return contiguous outputs
_RULES = {aten.native_group_norm.default: _group_norm, aten.native_group_norm_backward.default: _group_norm_backward,
          aten.native_batch_norm.default: _batch_norm, aten.native_batch_norm_backward.default: _batch_norm_backward,
          aten.upsample_bilinear2d.default: _upsample, aten.upsample_bilinear2d_backward.default: _upsample_backward,
          aten.upsample_nearest2d.default: _upsample, aten.upsample_nearest2d_backward.default: _upsample_backward}
_PLAIN = (bool, int, float, str, torch.dtype, torch.device, torch.memory_format, torch.layout)
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
    if isinstance(value, torch.Tensor):
        if value.device.type != "meta":
            raise TypeError("not a meta tensor")
        return ("T", tuple(value.shape), value.stride(), value.dtype, value.storage_offset())
    if isinstance(value, (list, tuple)):
        return tuple(_key(v) for v in value)
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


def _aliases_an_input(out, args: tuple, kwargs: dict) -> bool:
    inputs = {t.untyped_storage()._cdata for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
    return any(isinstance(o, torch.Tensor) and o.untyped_storage()._cdata in inputs for o in tree_leaves(out))


def run_meta(func, args: tuple, kwargs: dict):
    """Run `func` fast when all its tensors are meta tensors; NOT_HANDLED when it must run as usual."""
    kind = _kind(func)
    if kind == "inplace":
        first = args[0] if args else None
        if isinstance(first, torch.Tensor) and first.device.type == "meta" and all(
                a.device.type == "meta" for a in args if isinstance(a, torch.Tensor)):
            return first
        return NOT_HANDLED
    if kind != "functional":
        return NOT_HANDLED
    try:
        key = (func, _key(args), _key(tuple(sorted(kwargs.items()))))
    except TypeError:
        return NOT_HANDLED
    spec = _memo.get(key)
    if spec is None:  # first call with this signature
        rule = _RULES.get(func)
        if rule is not None and not kwargs and args[0].is_contiguous():
            out = rule(*args)
        else:
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
