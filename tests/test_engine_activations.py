"""Engine activations (SiLU, Hardswish, Hardsigmoid, Sigmoid, GELU, Mish, LeakyReLU), squeeze-excitation, and
checkpointed blocks: stock PyTorch's gradients, the minimum each backward needs, the engine view exact."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops.misc import SqueezeExcitation

from tinytl.engine import ENGINE_MODES, checkpoint_blocks, convert_model, is_converted, restore_model
from tinytl.memory import analyze, cached_trace
from tinytl.memory.measure import count_saved_activations
from tinytl.models import build_model
from tinytl.policies import apply_policy
from tinytl.models.setting import ModelSetting

pytestmark = pytest.mark.usefixtures("one_thread")


def _saved_bytes(fn) -> int:
    seen: dict[int, int] = {}

    def pack(t):
        if not isinstance(t, nn.Parameter):
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def _mask(numel: int) -> int:
    return (numel + 7) // 8


@pytest.mark.parametrize("stock, kept", [
    (nn.SiLU(), "input"), (nn.SiLU(inplace=True), "input"), (nn.Hardswish(inplace=True), "input"),
    (nn.GELU(), "input"), (nn.GELU(approximate="tanh"), "input"), (nn.Mish(), "input"), (nn.Sigmoid(), "output"),
    (nn.Hardsigmoid(), "mask"), (nn.LeakyReLU(0.1), "mask"), (nn.LeakyReLU(0.2, inplace=True), "mask")])
def test_activation_matches_stock_and_keeps_the_minimum(stock, kept):
    engine = convert_model(nn.Sequential(copy.deepcopy(stock)))[0]
    assert is_converted(nn.Sequential(engine))
    base = torch.randn(2, 3, 9, 7) * 4
    base[0, 0, 0, :3] = torch.tensor([-3.0, 3.0, 0.0])  # the kinks of hardsigmoid / relu-likes
    g = torch.randn_like(base)
    x_s, x_e = base.clone().requires_grad_(True), base.clone().requires_grad_(True)
    out_s = stock(x_s * 1.0)
    out_s.backward(g)
    box = {}
    saved = _saved_bytes(lambda: box.setdefault("out", engine(x_e * 1.0)))
    box["out"].backward(g)
    assert torch.allclose(out_s, box["out"], rtol=0, atol=1e-6)
    assert torch.allclose(x_s.grad, x_e.grad, rtol=1e-6, atol=1e-7)
    expected = _mask(base.numel()) if kept == "mask" else base.numel() * 4
    assert saved == expected


def test_squeeze_excitation_keeps_input_for_the_scale_and_matches_stock():
    torch.manual_seed(0)
    stock = SqueezeExcitation(8, 4, scale_activation=nn.Hardsigmoid)
    for name, p in stock.named_parameters():
        p.requires_grad_(name.endswith("bias"))  # bias-only: the 1x1 convs keep nothing
    engine = convert_model(copy.deepcopy(stock))
    assert type(engine).__name__ == "EngineSqueezeExcitation"
    base = torch.randn(2, 8, 6, 6)
    g = torch.randn_like(base)
    results = []
    for model in (stock, engine):
        x = base.clone().requires_grad_(True)
        box = {}
        saved = _saved_bytes(lambda: box.setdefault("out", model(x * 1.0)))
        box["out"].backward(g)
        results.append((saved, x.grad, {n: p.grad for n, p in model.named_parameters() if p.requires_grad}))
    (_, gx_s, gp_s), (saved_e, gx_e, gp_e) = results
    assert torch.allclose(gx_s, gx_e, rtol=1e-5, atol=1e-7)
    for name in gp_s:
        assert torch.allclose(gp_s[name], gp_e[name], rtol=1e-5, atol=1e-7), name
    # x (for the scale's gradient), the (2, 8, 1, 1) scale (for x's), 1-bit ReLU and hardsigmoid masks
    assert saved_e == base.nbytes + 2 * 8 * 4 + _mask(2 * 4) + _mask(2 * 8)
    restore_model(engine)
    assert type(engine) is SqueezeExcitation


@pytest.mark.parametrize("backbone", ["mobilenet_v3_large", "efficientnet_b0"])
def test_se_backbones_gradients_equal_stock_and_view_equals_measurement(backbone):
    torch.manual_seed(0)
    model = build_model(backbone, 10, norm="bn-frozen")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0.0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    trace = cached_trace(ModelSetting(backbone, 64, 10, True, "bn-frozen"))
    x, y = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)), torch.tensor([1, 7])
    apply_policy(model, "bias")
    start = copy.deepcopy(model.state_dict())

    def step():
        model.zero_grad(set_to_none=True)
        torch.manual_seed(3)  # dropout and stochastic depth draw the same masks
        F.cross_entropy(model(x), y).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    stock = step()
    torch.manual_seed(3)
    stock_saved = count_saved_activations(model, x).total_bytes
    for mode in ENGINE_MODES:
        model.load_state_dict(start)
        convert_model(model, mode)
        grads = step()
        torch.manual_seed(3)
        measured = count_saved_activations(model, x).total_bytes
        restore_model(model)
        assert grads.keys() == stock.keys()
        for name, g in stock.items():
            assert torch.allclose(g, grads[name], rtol=1e-4, atol=1e-6 * g.abs().max().item()), (mode, name)
        predicted = analyze(trace, "bias", 2, view="engine", mode=mode).stored_activation_bytes
        assert predicted == measured, mode
        if mode == "recompute":
            assert stock_saved >= 10 * measured


def test_checkpoint_blocks_match_stock_keep_block_inputs_and_restore():
    torch.manual_seed(0)
    model = build_model("proxylessnas_mobile", 10, norm="bn-frozen")
    apply_policy(model, "bias")
    classes = {n: type(m) for n, m in model.named_modules()}
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([3, 4])

    def step():
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        F.cross_entropy(model(x), y).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    stock, stock_saved = step(), count_saved_activations(model, x).total_bytes
    checkpoint_blocks(model)
    assert type(model.blocks[3]).__name__ == "CheckpointMBBlock"
    assert type(model.first_conv.conv) is nn.Conv2d  # layers stay stock
    grads, saved = step(), count_saved_activations(model, x).total_bytes
    assert grads.keys() == stock.keys() and all(torch.allclose(stock[n], grads[n]) for n in stock)
    recompute = analyze(cached_trace(ModelSetting("proxylessnas_mobile", 64, 10, True, "bn-frozen")),
                        "bias", 2, view="engine",
                        mode="recompute").stored_activation_bytes
    assert recompute < saved < stock_saved / 3  # block inputs and the stock stem / head
    restore_model(model)
    assert {n: type(m) for n, m in model.named_modules()} == classes
