"""The shortcuts that make a first pytorch-view analysis fast give what the slow paths gave: the fast meta
kernels match PyTorch's meta kernels (outputs and errors), the walk through them matches the plain walk, and
a recording that replays another batch size's optimizer step matches one that simulates it."""

import contextlib

import pytest
import torch

from tinytl.errors import TinyTLError
from tinytl.memory import trace_backbone, walk
from tinytl.memory.analysis import cached_trace
from tinytl.memory.meta_kernels import FastMetaMode, clear_memo, run_op
from tinytl.memory.record import record_step
from tinytl.models.setting import ModelSetting
from tinytl.policies import trainable_names

aten = torch.ops.aten


def _meta(*shape, memory_format=torch.contiguous_format) -> torch.Tensor:
    return torch.empty(shape, device="meta", memory_format=memory_format)


def _layout(value):
    """Shapes, strides and dtypes of an op's outputs."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape), value.stride(), value.dtype
    if isinstance(value, (tuple, list)):
        return tuple(_layout(v) for v in value)
    return value


def _outcome(fn):
    try:
        return "ok", _layout(fn())
    except Exception as err:  # noqa: BLE001  (the error itself is what is compared)
        return type(err).__name__, str(err)


x_cl = _meta(2, 8, 9, 9, memory_format=torch.channels_last)
CASES = [
    (aten.convolution.default, (_meta(2, 8, 9, 9), _meta(16, 4, 3, 3), None, [2, 2], [1, 1], [1, 1], False, [0, 0], 2)),
    (aten.convolution.default, (_meta(2, 8, 9, 9), _meta(16, 8, 3, 3), _meta(16), [1, 1], [2, 2], [2, 2], False,
                                [0, 0], 1)),
    (aten.convolution.default, (_meta(2, 4, 10), _meta(6, 4, 3), None, [1], [0], [1], False, [0], 1)),
    (aten.convolution.default, (x_cl, _meta(16, 8, 1, 1), None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)),
    (aten.convolution.default, (_meta(2, 8, 9, 9), _meta(8, 4, 3, 3), None, [2, 2], [1, 1], [1, 1], True, [1, 1], 1)),
    (aten.convolution.default, (_meta(1, 3, 2, 2), _meta(4, 3, 5, 5), None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)),
    (aten.convolution.default, (_meta(1, 3, 8, 8), _meta(4, 2, 3, 3), None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)),
    (aten.convolution_backward.default, (_meta(2, 16, 5, 5), _meta(2, 8, 9, 9), _meta(16, 4, 3, 3), [16], [2, 2],
                                         [1, 1], [1, 1], False, [0, 0], 2, [True, True, True])),
    (aten.convolution_backward.default, (_meta(2, 16, 9, 9), _meta(2, 8, 9, 9), _meta(16, 8, 1, 1), None, [1, 1],
                                         [0, 0], [1, 1], False, [0, 0], 1, [False, True, False])),
    (aten.convolution_backward.default, (_meta(2, 16, 9, 9), x_cl, _meta(16, 8, 1, 1), [16], [1, 1],
                                         [0, 0], [1, 1], False, [0, 0], 1, [True, True, True])),
    (aten.hardtanh_backward.default, (_meta(2, 8, 5, 5), _meta(2, 8, 5, 5), 0.0, 6.0)),
    (aten.hardswish_backward.default, (_meta(2, 8, 5, 5), _meta(2, 8, 5, 5))),
    (aten.hardsigmoid_backward.default, (_meta(2, 8, 1, 1), _meta(2, 8, 1, 1))),
    (aten.add.Tensor, (_meta(2, 3), _meta(4, 3))),
    (aten.add.Tensor, (_meta(2, 1, 3), _meta(4, 1))),
    (aten.mean.dim, (_meta(2, 3, 4, 4), [5], True)),
    (aten.mean.dim, (_meta(2, 3, 4, 4), [-1, 2], True)),
    (aten.upsample_bilinear2d.default, (_meta(2, 3, 4, 4), [0, 8], False, None, None)),
    (aten.upsample_bilinear2d.default, (_meta(2, 3, 4, 4), [7, 8], False, None, None)),
    (aten.upsample_nearest2d.default, (_meta(2, 3, 4, 4), [8, 0], None, None)),
]


@pytest.mark.parametrize("func,args", CASES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(CASES)])
def test_fast_meta_kernels_match_the_meta_kernels(func, args):
    expected = _outcome(lambda: func(*args))
    clear_memo()  # the first call of a signature takes the shortcut, the second the memo
    assert _outcome(lambda: run_op(func, args, {})) == expected
    assert _outcome(lambda: run_op(func, args, {})) == expected


def _walked(trace) -> tuple:
    layers = tuple((r.index, r.name, r.type, r.kind, r.input_shape, r.output_shape, r.input_numel, r.output_numel,
                    r.params, r.residual_numel, r.block, r.ancestors,
                    tuple((p.name, role) for p, role in r.input_peers), r.recompute_block, r.closes_block_input_numel)
                   for r in trace.layers)
    params = tuple((n, tuple(p.shape), p.stride()) for n, p in trace.model.named_parameters())
    return layers, params, trace.param_numels, trace.buffer_numel, trace.input_shape


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("setting", [ModelSetting("proxylessnas_mobile", 64, 10, True, "gn"),
                                     ModelSetting("resnet50", 64, 10, True, "gn"),
                                     ModelSetting("mobilenet_v3_small", 32, 10, True, "bn"),
                                     ModelSetting("inception_v3", 75, 10, False, "bn"),
                                     ModelSetting("regnet_y_400mf", 32, 10, False, "bn-frozen"),
                                     ModelSetting("supernet", 64, 10, True, "gn")], ids=str)
def test_walk_with_fast_kernels_equals_the_plain_walk(setting, monkeypatch):
    fast = _walked(trace_backbone(setting))
    monkeypatch.setattr(walk, "FastMetaMode", contextlib.nullcontext)
    assert _walked(trace_backbone(setting)) == fast


def test_walk_errors_are_the_kernels(monkeypatch):
    setting = ModelSetting("inception_v3", 32, 10, False, "bn")
    with pytest.raises(TinyTLError) as fast:
        trace_backbone(setting)
    monkeypatch.setattr(walk, "FastMetaMode", contextlib.nullcontext)
    with pytest.raises(TinyTLError) as plain:
        trace_backbone(setting)
    assert str(fast.value) == str(plain.value)
    assert "Kernel size can't be greater than actual input size" in str(fast.value)


def test_fast_mode_runs_cpu_tensors_as_usual():
    a = torch.arange(6.0).reshape(2, 3)
    with FastMetaMode():
        out = (a * 2).sum(dim=1)
    assert out.tolist() == [6.0, 24.0]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("backbone,norm,resolution,lite,policy", [
    ("mobilenet_v3_small", "gn", 32, True, "full"), ("resnet18", "bn", 32, True, "bias"),
    ("proxylessnas_mobile", "bn-frozen", 64, True, "lite+bias"), ("swin_t", "bn", 32, False, "norm+last"),
    ("efficientnet_b0", "bn", 32, False, "last")])
def test_replayed_optimizer_step_equals_the_simulated_one(backbone, norm, resolution, lite, policy):
    trace = cached_trace(ModelSetting(backbone, resolution, 10, lite, norm))
    trainable = trainable_names(trace.model, policy)
    sample = trace.input_shape[1:]
    first = record_step(trace.model, trainable, 2, sample)
    simulated = record_step(trace.model, trainable, 4, sample)
    assert record_step(trace.model, trainable, 4, sample, first.step_live) == simulated
    assert simulated.step_live == first.step_live  # the step does not depend on the batch
