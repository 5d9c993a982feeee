"""The "pytorch" view: what stock autograd saves and the step peaks at, recorded on the meta device,
against real CPU runs (saved-tensor hooks; a live-storage tracker over a real Adam step)."""

from collections import OrderedDict
from functools import cache

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinytl.devices import custom_device, largest_batch
from tinytl.memory import analyze, cached_trace, trace_model
from tinytl.memory.measure import LivePeakTracker, count_saved_activations
from tinytl.memory.pytorch_view import recorded_step
from tinytl.memory.record import record_step
from tinytl.models import build_model
from tinytl.models.layers import StdConv2d
from tinytl.policies import POLICIES, apply_policy, trainable_names
from tinytl.models.setting import ModelSetting

BATCH = 2
# (backbone, norm, resolution, lite): GN+WS and both BatchNorm modes on the paper's network, and
# torchvision models with squeeze-excitation + SiLU (efficientnet_b0), SE + Hardswish (mobilenet_v3_small),
# concatenation and functional ReLU (googlenet), channel shuffle (shufflenet), attention (swin_t), a
# convolutional classifier (squeezenet), a 1x1-map BatchNorm at batch 1 (inception_v3 at 75 px) and a
# builder that computes widths with tensors (regnet)
SETTINGS = [("proxylessnas_mobile", "gn", 64, True), ("proxylessnas_mobile", "bn-frozen", 64, True),
            ("proxylessnas_mobile", "bn", 64, True), ("mobilenet_v2", "gn", 64, True), ("resnet18", "bn", 64, True),
            ("efficientnet_b0", "bn", 32, False), ("mobilenet_v3_small", "gn", 32, True),
            ("googlenet", "bn", 32, False), ("shufflenet_v2_x0_5", "bn", 32, False), ("swin_t", "bn", 32, False),
            ("squeezenet1_1", "bn", 32, False), ("inception_v3", "bn", 75, False),
            ("regnet_y_400mf", "bn-frozen", 32, False)]
CLASSIC = ("full", "last", "norm+last", "bias")


def _policies(lite: bool) -> tuple[str, ...]:
    return POLICIES if lite else CLASSIC


@cache
def _measure_all_policies(backbone: str, norm: str, resolution: int, lite: bool) -> dict:
    trace = cached_trace(ModelSetting(backbone, resolution, 10, lite, norm))
    torch.manual_seed(0)
    model = build_model(backbone, 10, lite_residual=lite, norm=norm).train()
    x = torch.randn(BATCH, 3, resolution, resolution)
    out = {}
    for policy in _policies(lite):
        apply_policy(model, policy)
        counter = count_saved_activations(model, x)
        out[policy] = (counter, analyze(trace, policy, BATCH, view="pytorch"))
    return out


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("backbone,norm,resolution,lite", SETTINGS)
def test_recorded_saves_equal_stock_autograd_for_every_policy(backbone, norm, resolution, lite):
    for policy, (counter, report) in _measure_all_policies(backbone, norm, resolution, lite).items():
        assert report.stored_activation_bytes == counter.total_bytes, policy


def test_exact_per_layer_on_the_paper_network():
    measured = _measure_all_policies("proxylessnas_mobile", "gn", 64, True)
    for policy in ("full", "bias", "lite+bias"):
        counter, report = measured[policy]
        predicted = {r.name: BATCH * r.stored_bytes + r.fixed_bytes for r in report.layers
                     if r.stored_bytes or r.fixed_bytes}
        assert predicted == counter.by_layer, policy


def test_functional_code_is_charged_to_its_enclosing_module():
    # squeeze-excitation multiplies scale * input in its own forward: no leaf layer saves that input
    _, report = _measure_all_policies("mobilenet_v3_small", "gn", 32, True)["full"]
    se = [r for r in report.layers if r.type == "SqueezeExcitation"]
    assert se and all(r.stored_bytes > 0 for r in se)
    leaf_names = {layer.name for layer in cached_trace(ModelSetting("mobilenet_v3_small", 32, 10, True, "gn")).layers}
    assert leaf_names <= {r.name for r in report.layers}


def _toy(device: str = "cpu") -> nn.Module:
    with torch.device(device):
        return nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(3, 8, 3, padding=1), gn=nn.GroupNorm(2, 8), act6=nn.ReLU6(inplace=True),
            conv2=StdConv2d(8, 8, 3, padding=1, bias=False), bn=nn.BatchNorm2d(8), relu=nn.ReLU(inplace=True),
            pool=nn.AvgPool2d(2), flat=nn.Flatten(), drop=nn.Dropout(0.5), fc=nn.Linear(8 * 4 * 4, 5)))


def _real_step_peak(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Peak live bytes of a real second Adam step (state already there), as benchmarks/pytorch_step_peak.py."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    state = [t for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    with LivePeakTracker((*model.parameters(), *model.buffers(), *state, x, y)) as tracker:
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return tracker.peak


@pytest.mark.parametrize("policy", ["full", "last", "bias", "custom:conv1.bias", "custom:conv2.weight",
                                    "custom:bn.*", "custom:fc.weight"])
def test_toy_network_saves_and_peak(policy):
    trace = trace_model(_toy("meta"), 8, "toy", 5)
    torch.manual_seed(0)
    model = _toy().train()
    apply_policy(model, policy)
    x, y = torch.randn(3, 3, 8, 8), torch.randint(0, 5, (3,))
    counter = count_saved_activations(model, x)
    report = analyze(trace, policy, 3, view="pytorch")
    assert report.stored_activation_bytes == counter.total_bytes
    assert report.total_bytes == _real_step_peak(model, x, y)
    rows = {r.name: r for r in report.layers}
    if policy == "custom:conv1.bias":  # bias-only conv keeps its whole input: the gap TinyTL's theory ignores
        assert rows["conv1"].stored_bytes == 4 * 3 * 8 * 8
        assert analyze(trace, policy, 3, view="paper").layers[0].stored_bytes == 0
    if policy == "last":  # frozen prefix: only the classifier keeps its input
        assert counter.total_bytes == 3 * 4 * 8 * 4 * 4


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("backbone,norm,resolution,policy", [("mobilenet_v3_small", "gn", 32, "full"),
                                                             ("resnet18", "bn", 32, "bias")])
def test_predicted_peak_equals_a_real_cpu_step(backbone, norm, resolution, policy):
    torch.manual_seed(0)
    model = build_model(backbone, 10, lite_residual=True, norm=norm).train()
    apply_policy(model, policy)
    x, y = torch.randn(3, 3, resolution, resolution), torch.randint(0, 10, (3,))
    report = analyze(cached_trace(ModelSetting(backbone, resolution, 10, True, norm)), policy, 3, view="pytorch")
    assert report.total_bytes == _real_step_peak(model, x, y)
    assert report.state_bytes >= report.trainable_param_bytes  # gradients and Adam state at the peak


@pytest.mark.parametrize("backbone,norm,resolution", [("mobilenet_v3_small", "gn", 32), ("swin_t", "bn", 32)])
def test_batch_scales_linearly(backbone, norm, resolution):
    trace = cached_trace(ModelSetting(backbone, resolution, 10, True, norm))
    trainable = trainable_names(trace.model, "full")
    run = record_step(trace.model, trainable, 3, trace.input_shape[1:])
    report = analyze(trace, "full", 3, view="pytorch")
    assert report.stored_activation_bytes == sum(run.saved)  # the model's saves (the loss's stay out)
    assert report.total_bytes == max(run.live) + run.param_bytes
    step = recorded_step(trace, frozenset(trainable))
    assert (step.live_at(3) == torch.tensor(run.live).numpy()).all()


def test_other_batches_follow_from_the_lines(proxyless_trace):
    r2 = analyze(proxyless_trace, "bias", 2, view="pytorch")
    for batch in (1, 8, 64):
        assert r2.total_at_batch(batch) == analyze(proxyless_trace, "bias", batch, view="pytorch").total_bytes
    budget = custom_device(300)
    n = largest_batch(r2, budget.budget_bytes)
    assert r2.total_at_batch(n) <= budget.budget_bytes < r2.total_at_batch(n + 1)


def test_inplace_relu6_keeps_a_copy_and_conv_keeps_the_output(proxyless_trace):
    rows = {r.name: r for r in analyze(proxyless_trace, "bias", 1, view="pytorch").layers}
    act, conv = rows["blocks.1.conv.expand.act"], rows["blocks.1.conv.depthwise.conv"]
    assert act.stored_bytes == 4 * 48 * 112 * 112  # autograd copies the input of in-place hardtanh
    assert conv.stored_bytes == 4 * 48 * 112 * 112  # and the depthwise conv keeps the clamped tensor too


def test_stock_keeps_far_more_than_the_paper_under_bias(proxyless_trace):
    stock = analyze(proxyless_trace, "bias", 8, view="pytorch").stored_activation_bytes
    paper = analyze(proxyless_trace, "bias", 8, view="paper").stored_activation_bytes
    assert stock > 50 * paper
    assert analyze(proxyless_trace, "last", 8, view="pytorch").stored_activation_bytes == 8 * 4 * 1280


def test_view_is_listed_and_keeps_weights_at_32_bits(proxyless_trace):
    from tinytl.memory import VIEWS

    assert "pytorch" in VIEWS
    report = analyze(proxyless_trace, "bias", 8, frozen_bits=8, view="pytorch")
    assert report.frozen_bits == 32
    assert report.frozen_param_bytes == 4 * (report.num_params - report.num_trainable_params)
    assert report.total_bytes == report.peak_activation_bytes + report.param_bytes + report.state_bytes
    assert report.layers[report.peak_index].live_bytes + report.param_bytes == report.total_bytes


def test_recording_allocates_nothing_and_restores_the_model():
    trace = cached_trace(ModelSetting("resnet18", 1024, 10, True, "gn"))
    analyze(trace, "bias", 4096, view="pytorch")
    assert all(p.device.type == "meta" and p.requires_grad and p.grad is None for p in trace.model.parameters())
