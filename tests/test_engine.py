"""The training engine: same gradients as stock PyTorch, lean saves, lossless convert / restore."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinytl.engine import functional
from tinytl.engine import ENGINE_MODES, convert_model, is_converted, pack_mask, restore_model, unpack_mask
from tinytl.errors import TinyTLError
from tinytl.models.layers import FrozenStatsBatchNorm2d
from tinytl.models import build_model
from tinytl.policies import POLICIES, apply_policy, trainable_names

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(backbone: str, norm: str) -> nn.Module:
    """A seeded model whose gradients are all non-trivial (lite scales and BN statistics off their init)."""
    torch.manual_seed(0)
    model = build_model(backbone, 10, norm=norm)
    for m in model.modules():
        if hasattr(m, "final_norm"):
            nn.init.normal_(m.final_norm.weight, 0.0, 0.5)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0.0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return model


def _step(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """Forward + backward; returns logits, parameter grads, input grad and buffers after the step."""
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    torch.manual_seed(1)  # dropout draws the same mask in both runs
    logits = model(x)
    F.cross_entropy(logits, y).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    return logits.detach(), grads, x.grad, buffers


def _assert_close(stock: torch.Tensor, engine: torch.Tensor, what: str, rel: float = 1e-5, floor: float = 1e-12
                  ) -> None:
    scale = stock.abs().max().item()
    diff = (stock - engine).abs().max().item()
    assert diff <= rel * max(scale, floor), f"{what}: max abs diff {diff:.3g} at gradient scale {scale:.3g}"


@pytest.mark.parametrize("mode", ENGINE_MODES)
@pytest.mark.parametrize("norm", ["gn", "bn", "bn-frozen"])
@pytest.mark.parametrize("backbone", ["proxylessnas_mobile", "mobilenet_v2", "resnet18"])
def test_gradients_equal_stock_for_every_policy(backbone, norm, mode):
    """In float64, to 1e-8 of each gradient's scale, the engine's math is stock's. A gradient below 1e-3 of the
    largest (some are zero analytically, e.g. a shift that the next batch-statistics BN removes) is judged at that
    floor. In float32 the engine's pointwise-conv backward, a different kernel, differs by rounding, which
    batch-statistics BN amplifies at batch 2."""
    model = _model(backbone, norm).double()
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(2, 3, 32, 32, generator=gen, dtype=torch.float64), torch.tensor([1, 7])
    for policy in POLICIES:
        apply_policy(model, policy)
        start = copy.deepcopy(model.state_dict())
        out_s, grads_s, gx_s, buf_s = _step(model, x, y)
        model.load_state_dict(start)
        convert_model(model, mode)
        out_e, grads_e, gx_e, buf_e = _step(model, x, y)
        restore_model(model)
        model.load_state_dict(start)
        assert grads_s.keys() == grads_e.keys() == trainable_names(model, policy)
        _assert_close(out_s, out_e, f"{policy} logits", 1e-8)
        floor = 1e-3 * max(g.abs().max().item() for g in grads_s.values())
        for name in grads_s:
            _assert_close(grads_s[name], grads_e[name], f"{policy} {name}", 1e-8, floor)
        _assert_close(gx_s, gx_e, f"{policy} input gradient", 1e-8)
        for name in buf_s:  # BN running statistics move exactly once per step, recompute or not
            assert torch.equal(buf_s[name], buf_e[name]), f"{policy} buffer {name}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(8,), (3, 5), (2, 16, 7, 7), (1,), (0,)])
def test_packed_mask_round_trip(device, shape):
    gen = torch.Generator().manual_seed(0)
    mask = (torch.rand(shape, generator=gen) > 0.5).to(device)
    packed = pack_mask(mask)
    assert packed.dtype == torch.uint8 and packed.device == mask.device
    assert packed.numel() == (mask.numel() + 7) // 8
    assert torch.equal(unpack_mask(packed, mask.shape).bool(), mask)


def test_packed_mask_bit_order():
    mask = torch.tensor([True, False, False, False, False, False, False, True, True])
    assert pack_mask(mask).tolist() == [1 + 128, 1]


def test_mask_computed_in_slices_equals_the_whole_tensor_mask(monkeypatch):
    """pack_mask_of works slice by slice; bytes equal packing the whole mask, also where a slice boundary falls
    inside the last partial byte and for the activations that use it (ReLU6 at 0 / 6 exactly, LeakyReLU)."""
    monkeypatch.setattr(functional, "MASK_CHUNK", 64)
    x = torch.randn(3, 5, 7, 11) * 4  # 1155 elements: 18 slices, the last one partial
    x.view(-1)[::17] = 6.0
    x.view(-1)[::19] = 0.0
    aten = torch.ops.aten
    rules = [(functional.passes(aten.hardtanh_backward.grad_input, 0.0, 6.0), (x > 0) & (x < 6)),
             (functional.passes(aten.leaky_relu_backward.grad_input, 0.0, False), x > 0),
             (functional.passes(aten.hardsigmoid_backward.grad_input), (x > -3) & (x < 3)),
             (lambda part, scratch: torch.sub(part, 1.0, out=scratch), x != 1)]
    for predicate, mask in rules:
        assert torch.equal(functional.pack_mask_of(x, predicate), pack_mask(mask))
    for stock in (nn.ReLU6(), nn.LeakyReLU(0.1), nn.Hardsigmoid()):
        engine = convert_model(nn.Sequential(copy.deepcopy(stock))).get_submodule("0")
        x_e, x_s = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        engine(x_e * 1.0).square().sum().backward()
        stock(x_s * 1.0).square().sum().backward()
        assert torch.equal(x_e.grad, x_s.grad)


def _saved_bytes(fn, module: nn.Module | None = None) -> int:
    """Bytes of distinct storages autograd keeps while `fn` runs, parameters and the module's buffers excluded."""
    seen: dict[int, int] = {}
    buffers = {b.untyped_storage().data_ptr() for b in module.buffers()} if module is not None else set()

    def pack(t):
        if not isinstance(t, nn.Parameter) and t.untyped_storage().data_ptr() not in buffers:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


@pytest.mark.parametrize("trains_scale", [False, True])
def test_frozen_conv_and_norm_run_as_one_function(trains_scale):
    """A frozen conv and the fixed-statistics BN after it in a Sequential run as one ConvNormFn: the norm passes
    the pair's output through, which equals stock's bit for bit; gradients equal stock's (float64) and only the
    ReLU6 mask is kept. When the norm's scale trains they run apart. Names and state dict do not change, and
    restoring drops the pairing."""
    torch.manual_seed(0)
    stock = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), FrozenStatsBatchNorm2d(6), nn.ReLU6(inplace=True)).double()
    with torch.no_grad():
        stock[1].running_mean.normal_(0.0, 0.5), stock[1].running_var.uniform_(0.5, 2.0)
        stock[1].weight.normal_(1.0, 0.5)
    stock[0].weight.requires_grad_(False)
    stock[1].weight.requires_grad_(trains_scale)
    engine = convert_model(copy.deepcopy(stock))
    assert engine.state_dict().keys() == stock.state_dict().keys()
    base, grad = torch.randn(2, 4, 8, 8, dtype=torch.float64), torch.randn(2, 6, 8, 8, dtype=torch.float64)
    x_s, x_e = base.clone().requires_grad_(True), base.clone().requires_grad_(True)
    out_s, outs = stock(x_s), []
    saved = _saved_bytes(lambda: outs.append(engine(x_e)), engine)
    out_e = outs[0]
    norm_node = type(out_e.grad_fn.next_functions[0][0]).__name__  # what the ReLU6 reads from
    assert norm_node == ("FrozenBatchNormFnBackward" if trains_scale else "ConvNormFnBackward")
    assert not hasattr(out_e, "_tinytl_folded_norm")  # the pair's output, clamped in place: the norm took the mark off
    assert torch.equal(out_s, out_e)
    out_s.backward(grad)
    out_e.backward(grad)
    grads = [(x_s.grad, x_e.grad)] + [(p.grad, q.grad) for p, q in zip(stock.parameters(), engine.parameters())
                                       if p.requires_grad]
    assert len(grads) == (4 if trains_scale else 3)
    for g_s, g_e in grads:
        assert torch.allclose(g_s, g_e, rtol=1e-10, atol=1e-12)
    kept_input = base.numel() * 6 // 4 * 8 if trains_scale else 0  # the norm's input, float64, for its scale
    assert saved == (base.numel() * 6 // 4 + 7) // 8 + kept_input
    restore_model(engine)
    assert all("_tinytl_folded_norm" not in m.__dict__ for m in engine.modules())


@pytest.mark.parametrize("trains, expect_input", [({"weight"}, True), ({"bias"}, False), (set(), False)])
def test_conv_keeps_input_only_when_weight_trains(trains, expect_input):
    conv = convert_model(nn.Sequential(nn.Conv2d(4, 6, 3, padding=1))).get_submodule("0")
    for name, p in conv.named_parameters():
        p.requires_grad_(name in trains)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    saved = _saved_bytes(lambda: conv(x))
    assert saved == (x.numel() * 4 if expect_input else 0)


@pytest.mark.parametrize("trains", [{"weight", "bias"}, {"bias"}, {"weight"}])
@pytest.mark.parametrize("stride, groups", [(1, 1), (2, 1), (1, 2)])
def test_pointwise_conv_backward_equals_stock(trains, stride, groups):
    """A frozen 1x1 conv's input gradient is a batched matmul (stride 1, one group), otherwise convolution_backward
    gives it; in float32 both equal stock PyTorch's gradients to rounding, in the input's shape."""
    stock = nn.Conv2d(8, 6, 1, stride=stride, groups=groups)
    engine = convert_model(nn.Sequential(copy.deepcopy(stock))).get_submodule("0")
    for conv in (stock, engine):
        for name, p in conv.named_parameters():
            p.requires_grad_(name in trains)
    base, grad = torch.randn(3, 8, 9, 7), torch.randn(3, 6, *stock(torch.zeros(1, 8, 9, 7)).shape[2:])
    grads = []
    for conv in (stock, engine):
        x = base.clone().requires_grad_(True)
        conv(x).backward(grad)
        grads.append([x.grad] + [p.grad for p in conv.parameters() if p.requires_grad])
    for s, e in zip(*grads):
        assert s.shape == e.shape and torch.allclose(s, e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("module", [nn.ReLU(), nn.ReLU6(), nn.ReLU6(inplace=True)])
def test_relu_keeps_one_bit_per_element(module):
    ref = copy.deepcopy(module)
    convert_model(nn.Sequential(module))
    base = torch.randn(2, 3, 5, 7) * 5
    x_e, x_s = base.clone().requires_grad_(True), base.clone().requires_grad_(True)
    saved = _saved_bytes(lambda: module(x_e * 1.0).sum().backward())
    ref(x_s * 1.0).sum().backward()
    assert saved == (base.numel() + 7) // 8
    assert torch.equal(x_e.grad, x_s.grad)


@pytest.mark.parametrize("norm, trains, expect", [
    ("gn", {"bias"}, "nothing"), ("gn", {"weight"}, "x_hat"), ("bn-frozen", {"bias"}, "nothing"),
    ("bn-frozen", {"weight"}, "x_hat"), ("bn", {"bias"}, "nothing")])
def test_norm_keeps_x_hat_only_when_needed(norm, trains, expect):
    from tinytl.models.layers import make_norm

    layer = make_norm(8, norm)
    convert_model(nn.Sequential(layer))
    for name, p in layer.named_parameters():
        p.requires_grad_(name in trains)
    x = torch.randn(2, 8, 6, 6)  # no upstream gradient: only the layer's own parameters need one
    saved = _saved_bytes(lambda: layer(x), layer)
    assert (saved >= x.numel() * 4) == (expect == "x_hat") and (saved == 0) == (expect == "nothing")


@pytest.mark.parametrize("stock", [
    nn.MaxPool2d(3, 2, 1), nn.MaxPool2d(2, 2, ceil_mode=True), nn.MaxPool2d(3, 2, 1, dilation=2),
    nn.AvgPool2d(2, 2, ceil_mode=True), nn.AvgPool2d(3, 2, 1, count_include_pad=False)])
def test_pools_match_stock_and_keep_little(stock):
    engine = convert_model(nn.Sequential(copy.deepcopy(stock)))
    base = torch.randn(2, 3, 11, 9)
    x_s, x_e = base.clone().requires_grad_(True), base.clone().requires_grad_(True)
    g = torch.randn_like(stock(base))
    stock(x_s).backward(g)
    out_e = engine(x_e * 1.0)
    saved = _saved_bytes(lambda: engine(x_e * 1.0).backward(g))
    assert torch.equal(out_e, stock(base)) and torch.equal(x_s.grad, x_e.grad)
    assert saved == (out_e.numel() if isinstance(stock, nn.MaxPool2d) else 0)


def test_dropout_and_linear_match_stock():
    torch.manual_seed(0)
    stock = nn.Sequential(nn.Dropout(0.3), nn.Linear(12, 5))
    engine = convert_model(copy.deepcopy(stock))
    base = torch.randn(4, 3, 12)
    results = []
    for model in (stock, engine):
        x = base.clone().requires_grad_(True)
        torch.manual_seed(3)
        model(x).pow(2).sum().backward()
        results.append((x.grad, model[1].weight.grad, model[1].bias.grad))
    for a, b in zip(*results):
        _assert_close(a, b, "dropout + linear")


def test_convert_restore_round_trip_keeps_parameters():
    model = _model("proxylessnas_mobile", "gn")
    apply_policy(model, "lite+bias")
    params = dict(model.named_parameters())
    state = copy.deepcopy(model.state_dict())
    classes = {n: type(m) for n, m in model.named_modules()}
    for mode in ENGINE_MODES:
        convert_model(model, mode)
        assert is_converted(model)
        assert type(model.first_conv.conv).__name__ == "EngineStdConv2d"
        assert (type(model.blocks[3]).__name__ == "RecomputeMBBlock") == (mode == "recompute")
        assert dict(model.named_parameters()) == params  # same names, same Parameter objects
        assert trainable_names(model, "lite+bias") == {n for n, p in params.items() if p.requires_grad}
        restore_model(model)
        assert not is_converted(model)
        assert {n: type(m) for n, m in model.named_modules()} == classes
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert convert_model(convert_model(model, "exact"), "recompute") is model  # converting again re-converts
    restore_model(model)
    assert {n: type(m) for n, m in model.named_modules()} == classes


def test_frozen_weights_in_8_bits():
    model = _model("proxylessnas_mobile", "bn-frozen")
    apply_policy(model, "bias")
    reference = copy.deepcopy(model)
    frozen_bytes = sum(m.weight.numel() * 4 for m in model.modules()
                       if isinstance(m, (nn.Conv2d, nn.Linear)) and not m.weight.requires_grad)
    convert_model(model, "exact", frozen_bits=8)
    codes = [b for n, b in model.named_buffers() if n.endswith("weight_codes")]
    assert codes and all(b.dtype == torch.uint8 for b in codes)
    assert sum(b.numel() for b in codes) * 4 == frozen_bytes  # 1 byte where 4 were
    assert all(m.weight.numel() == 0 for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear)) and not m.weight.requires_grad)
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([0, 1])
    F.cross_entropy(model(x), y).backward()
    assert model.classifier[1].weight.grad is not None and model.first_conv.norm.bias.grad is not None
    with torch.no_grad():
        logits_q = model.eval()(x)
    # the quantised model computes what the stock model computes with the dequantised weights
    restore_model(model)
    assert not [n for n, _ in model.named_buffers() if "weight_codes" in n]
    for (name, p), (_, p0) in zip(model.named_parameters(), reference.named_parameters()):
        assert p.shape == p0.shape, name
        step = (p0.max() - p0.min()).item() / 255
        assert (p - p0).abs().max().item() <= step / 2 + 1e-6, name
    with torch.no_grad():
        _assert_close(model(x), logits_q, "8-bit logits")


def test_quantized_weight_cannot_train():
    model = convert_model(nn.Sequential(nn.Conv2d(3, 4, 3).requires_grad_(False)), frozen_bits=8)
    model[0].weight.requires_grad_(True)
    with pytest.raises(TinyTLError, match="quantized"):
        model(torch.randn(1, 3, 8, 8))


def test_bad_engine_options():
    with pytest.raises(TinyTLError, match="engine mode"):
        convert_model(nn.Linear(2, 2), mode="fast")
    with pytest.raises(TinyTLError, match="frozen bits"):
        convert_model(nn.Linear(2, 2), frozen_bits=16)


def test_recompute_inside_no_grad_and_eval_runs_stock():
    model = convert_model(_model("resnet18", "bn"), "recompute")
    ref = restore_model(copy.deepcopy(model))
    model.eval()
    ref.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))


@pytest.mark.parametrize("threshold", [0, 1 << 30])
def test_recompute_masks_large_rerun_activations_and_runs_small_ones_stock(monkeypatch, threshold):
    """Inside a re-run, activations at or above RERUN_STOCK_NUMEL elements keep packed masks and smaller ones keep
    their output, as stock does; gradients equal stock's either way (proxylessnas, GN, `bias`: ReLU6 everywhere)."""
    from tinytl.engine import modules

    stock = _model("proxylessnas_mobile", "gn")
    apply_policy(stock, "bias")
    engine = convert_model(copy.deepcopy(stock), "recompute")
    x, y = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)), torch.tensor([2, 5])
    _, want, _, _ = _step(stock, x, y)
    monkeypatch.setattr(modules, "RERUN_STOCK_NUMEL", threshold)
    real, calls = functional.ClampMaskFn.apply, []
    monkeypatch.setattr(functional.ClampMaskFn, "apply",
                        staticmethod(lambda *a: calls.append((functional.is_recomputing(), a[-1])) or real(*a)))
    _, got, _, _ = _step(engine, x, y)
    assert want.keys() == got.keys()
    for name in want:
        _assert_close(want[name], got[name], name)
    rerun_masks = {mask for recomputing, mask in calls if recomputing}
    assert rerun_masks == ({True} if threshold == 0 else {False})
