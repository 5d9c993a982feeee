"""The "pytorch" view predicts what stock autograd really saves (counted with saved-tensor hooks)."""

from collections import OrderedDict
from functools import lru_cache

import pytest
import torch
from torch import nn

from tinytl.memory import analyze, cached_trace, trace_model
from tinytl.memory.measure import count_saved_activations
from tinytl.models import build_model
from tinytl.models.layers import StdConv2d
from tinytl.policies import POLICIES, apply_policy

BATCH = 2
# (backbone, norm, resolution): BN in training mode needs > 1 value per channel in the walk's batch of 1,
# so BN settings run where the lite branches stay above 1x1.
SETTINGS = [("proxylessnas_mobile", "gn", 64), ("proxylessnas_mobile", "bn-frozen", 64),
            ("proxylessnas_mobile", "bn", 128), ("mobilenet_v2", "gn", 64), ("resnet18", "bn", 128)]


@lru_cache(maxsize=None)
def _measure_all_policies(backbone: str, norm: str, resolution: int) -> dict[str, tuple[int, object, object]]:
    trace = cached_trace(backbone, resolution, 10, True, norm)
    torch.manual_seed(0)
    model = build_model(backbone, 10, lite_residual=True, norm=norm).train()
    x = torch.randn(BATCH, 3, resolution, resolution)
    out = {}
    for policy in POLICIES:
        apply_policy(model, policy)
        counter = count_saved_activations(model, x)
        out[policy] = (counter, analyze(trace, policy, BATCH, view="pytorch"))
    return out


@pytest.mark.parametrize("backbone,norm,resolution", SETTINGS)
def test_prediction_matches_measured_for_every_policy(backbone, norm, resolution):
    for policy, (counter, report) in _measure_all_policies(backbone, norm, resolution).items():
        assert counter.total_bytes > 0, policy
        assert report.stored_activation_bytes == pytest.approx(counter.total_bytes, rel=0.05), policy


def test_prediction_is_exact_per_layer_on_the_paper_network():
    measured = _measure_all_policies("proxylessnas_mobile", "gn", 64)
    for policy in ("full", "bias", "lite+bias"):
        counter, report = measured[policy]
        predicted = {r.name: BATCH * r.stored_bytes + r.fixed_bytes for r in report.layers
                     if r.stored_bytes or r.fixed_bytes}
        assert predicted == counter.by_layer, policy


def _toy(device: str = "cpu") -> nn.Module:
    with torch.device(device):
        return nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(3, 8, 3, padding=1), gn=nn.GroupNorm(2, 8), act6=nn.ReLU6(inplace=True),
            conv2=StdConv2d(8, 8, 3, padding=1, bias=False), bn=nn.BatchNorm2d(8), relu=nn.ReLU(inplace=True),
            pool=nn.AvgPool2d(2), flat=nn.Flatten(), drop=nn.Dropout(0.5), fc=nn.Linear(8 * 4 * 4, 5)))


@pytest.mark.parametrize("policy", ["full", "last", "bias", "custom:conv1.bias", "custom:conv2.weight",
                                    "custom:bn.*", "custom:fc.weight"])
def test_toy_network_every_rule(policy):
    trace = trace_model(_toy("meta"), 8, "toy", 5)
    model = _toy().train()
    apply_policy(model, policy)
    counter = count_saved_activations(model, torch.randn(3, 3, 8, 8))
    report = analyze(trace, policy, 3, view="pytorch")
    assert report.stored_activation_bytes == counter.total_bytes
    rows = {r.name: r for r in report.layers}
    if policy == "custom:conv1.bias":  # bias-only conv keeps its whole input: the gap TinyTL's theory ignores
        assert rows["conv1"].stored_bytes == 4 * 3 * 8 * 8
        assert analyze(trace, policy, 3, view="paper").layers[0].stored_bytes == 0
    if policy == "last":  # frozen prefix: only the classifier keeps its input
        assert counter.total_bytes == 3 * 4 * 8 * 4 * 4


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
