"""Device budgets: the terms a verdict totals (activations, parameters, gradients, optimizer state, buffers, the
device's reserve), the verdicts, and the largest batch that fits, checked against a fresh analysis at that batch."""

import pytest

from tinytl.devices import (DEVICES, GIB, KIB, MIB, OPTIMIZER_MOMENTS, activation_bytes_at, budget_terms,
                            check_budget, custom_device, largest_batch, verdict)
from tinytl.errors import TinyTLError
from tinytl.memory import VIEWS, analyze
from tinytl.policies import POLICIES, trainable_names

DEVICE = {d.name: d for d in DEVICES}
PI_ZERO = DEVICE["Raspberry Pi Zero / Zero 2 W"]


def n_trainable(trace, policy: str) -> int:
    """Trainable parameters counted from the model itself, not from a report."""
    return sum(trace.param_numels[name] for name in trainable_names(trace.model, policy))


def test_verdict_thresholds():
    assert verdict(89, 100) == "fits"
    assert verdict(90, 100) == "fits"
    assert verdict(91, 100) == "tight"
    assert verdict(100, 100) == "tight"
    assert verdict(101, 100) == "does not fit"


def test_reference_devices_carry_their_stated_memory():
    budgets = {d.name: d.budget_bytes for d in DEVICES}
    assert budgets["ESP32"] == 520 * KIB
    assert budgets["STM32F746 microcontroller"] == 320 * KIB
    assert budgets["Raspberry Pi Zero / Zero 2 W"] == 512 * MIB
    assert budgets["Jetson Nano"] == 4 * 1024 * MIB


def test_every_reference_device_documents_its_reserve():
    for d in DEVICES:
        assert d.reserve_bytes >= 0 and d.reserve_note, d.name
        assert d.available_bytes == d.budget_bytes - d.reserve_bytes
        assert d.reserve_mb == pytest.approx(d.reserve_bytes / 1e6)
    # GPU split 64 MiB + Raspberry Pi OS Lite 60 MiB + Python/PyTorch 150 MiB
    assert PI_ZERO.reserve_bytes == (64 + 60 + 150) * MIB
    assert DEVICE["Raspberry Pi 1 Model B"].reserve_bytes == PI_ZERO.reserve_bytes
    assert DEVICE["ESP32"].reserve_bytes == (520 - 298) * KIB  # ESP-IDF hello_world: ~298 KB free heap
    assert DEVICE["Coral Edge TPU"].reserve_bytes == 0  # the host runs the OS and runtime
    assert DEVICE["Jetson Nano"].reserve_bytes == 1536 * MIB
    assert DEVICE["Jetson Nano 2 GB"].reserve_bytes == 1 * GIB
    assert DEVICE["Raspberry Pi 1 Model A/A+"].available_bytes < 0  # PyTorch leaves a 256 MB Pi no room


def test_custom_budget_is_decimal_mb_and_positive():
    assert custom_device(50).budget_bytes == 50_000_000
    assert custom_device(0.5).budget_mb == pytest.approx(0.5)
    assert custom_device(50).reserve_bytes == 0  # the user's budget is what the run may use
    assert custom_device(50, reserve_mb=2.5).reserve_bytes == 2_500_000
    for bad in (0, -3, float("nan"), "12", True):
        with pytest.raises(TinyTLError, match="budget"):
            custom_device(bad)
    for bad in (-1, float("nan"), "1", True):
        with pytest.raises(TinyTLError, match="reserve"):
            custom_device(50, reserve_mb=bad)


@pytest.mark.parametrize("view", ["paper", "engine"])
@pytest.mark.parametrize("policy", ["full", "bias", "lite+bias"])
def test_terms_of_a_rule_view_add_up(proxyless_trace, view, policy):
    report = analyze(proxyless_trace, policy, 8, 8, view)
    n = n_trainable(proxyless_trace, policy)
    t = budget_terms(report, PI_ZERO)
    assert (t.view, t.batch_size, t.optimizer) == (view, 8, "adam")
    assert t.activation_bytes == report.peak_activation_bytes  # kept for backward + the peak layer's transient
    assert t.activation_bytes >= report.stored_activation_bytes
    assert t.trainable_param_bytes == 4 * n
    assert t.param_bytes == report.trainable_param_bytes + report.frozen_param_bytes
    assert t.gradient_bytes == 4 * n  # one fp32 gradient per trainable parameter
    assert t.optimizer_bytes == 8 * n  # Adam: two fp32 moments per trainable parameter
    assert t.buffer_bytes == report.buffer_bytes
    assert t.reserve_bytes == PI_ZERO.reserve_bytes
    assert t.training_bytes == report.total_bytes + 12 * n + report.buffer_bytes  # the old total left these out
    assert t.total_bytes == t.training_bytes + (64 + 60 + 150) * MIB
    assert sum(b for _, b in t.items()) == t.total_bytes
    assert budget_terms(report).reserve_bytes == 0  # no device: nothing reserved


def test_optimizer_state_per_optimizer(proxyless_trace):
    report = analyze(proxyless_trace, "lite+bias", 8, 8, "paper")
    n = n_trainable(proxyless_trace, "lite+bias")
    assert budget_terms(report, optimizer="adam").optimizer_bytes == 2 * 4 * n
    assert budget_terms(report, optimizer="sgd-momentum").optimizer_bytes == 1 * 4 * n
    assert budget_terms(report, optimizer="sgd").optimizer_bytes == 0
    assert budget_terms(report, optimizer="sgd").gradient_bytes == 4 * n  # SGD still needs the gradients
    assert OPTIMIZER_MOMENTS == {"adam": 2, "sgd-momentum": 1, "sgd": 0}
    with pytest.raises(TinyTLError, match="unknown optimizer 'lion'"):
        budget_terms(report, optimizer="lion")
    batches = [largest_batch(report, PI_ZERO, o) for o in ("adam", "sgd-momentum", "sgd")]
    assert batches == sorted(batches)  # less optimizer state, a larger batch


def test_pytorch_view_terms_take_the_recorded_state_out(proxyless_trace):
    """The recorded step already holds gradients and Adam state at its peak: counted once, as their own terms."""
    report = analyze(proxyless_trace, "bias", 8, 8, "pytorch")
    n = n_trainable(proxyless_trace, "bias")
    assert report.state_bytes > 0
    t = budget_terms(report)
    assert t.activation_bytes == report.total_bytes - report.param_bytes - report.state_bytes
    assert t.activation_bytes == report.peak_activation_bytes
    assert t.param_bytes == 4 * proxyless_trace.num_params  # stock PyTorch keeps frozen weights at 32 bits
    assert t.training_bytes == report.peak_activation_bytes + t.param_bytes + 12 * n + report.buffer_bytes


@pytest.mark.parametrize("view", list(VIEWS))
@pytest.mark.parametrize("policy", ["full", "bias", "lite+bias"])
def test_terms_at_another_batch_follow_a_fresh_analysis(proxyless_trace, view, policy):
    report = analyze(proxyless_trace, policy, 8, 8, view)
    n = n_trainable(proxyless_trace, policy)
    for batch in (1, 3, 17, 256):
        fresh = analyze(proxyless_trace, policy, batch, 8, view)
        assert report.total_at_batch(batch) == fresh.total_bytes
        scaled, direct = budget_terms(report, PI_ZERO, batch_size=batch), budget_terms(fresh, PI_ZERO)
        assert scaled.activation_bytes == activation_bytes_at(report, batch)
        # only the activations depend on the batch
        assert {k: v for k, v in vars(scaled).items() if k != "activation_bytes"} == \
            {k: v for k, v in vars(direct).items() if k != "activation_bytes"}
        if not report.state_bytes:  # rule views: exactly a fresh analysis
            assert scaled == direct
        else:  # a recorded step: its state at the peak may hold another part of the gradients at another batch
            assert scaled.activation_bytes - direct.activation_bytes == fresh.state_bytes - report.state_bytes
            assert abs(fresh.state_bytes - report.state_bytes) <= 4 * n
    with pytest.raises(TinyTLError, match="batch size"):
        budget_terms(report, batch_size=0)


@pytest.mark.parametrize("view", list(VIEWS))
@pytest.mark.parametrize("policy", POLICIES)
def test_largest_batch_is_the_boundary_of_the_full_total(proxyless_trace, view, policy):
    report = analyze(proxyless_trace, policy, 8, 8, view)
    for device in (custom_device(40), custom_device(300, reserve_mb=100), PI_ZERO, DEVICE["Jetson Nano"]):
        best = largest_batch(report, device)

        def total(batch: int) -> int:  # the total check_budget compares, at another batch
            return budget_terms(report, device, batch_size=batch).total_bytes

        def fresh_total(batch: int) -> int:
            return budget_terms(analyze(proxyless_trace, policy, batch, 8, view), device).total_bytes

        if best == 0:
            assert total(1) > device.budget_bytes
            continue
        assert total(best) <= device.budget_bytes < total(best + 1)
        if not report.state_bytes:
            assert fresh_total(best) <= device.budget_bytes < fresh_total(best + 1)
    assert largest_batch(report, 40_000_000) == largest_batch(report, custom_device(40))  # bytes: no reserve


def test_check_budget_on_paper_table2_setting(proxyless_trace):
    report = analyze(proxyless_trace, "lite+bias", 8, 8, "paper")  # 37.07 MB: activations + parameters only
    n = n_trainable(proxyless_trace, "lite+bias")
    full = report.total_bytes + 4 * n + 8 * n  # + gradients + Adam's two moments: 60.47 MB
    check = check_budget(report, custom_device(65))
    assert check.total_bytes == check.terms.total_bytes == full
    assert check.verdict == "tight"
    assert check.headroom_bytes == 65_000_000 - full
    assert check_budget(report, custom_device(100)).verdict == "fits"
    assert check_budget(report, custom_device(40)).verdict == "does not fit"  # "tight" when only 37.07 MB counted
    assert check_budget(report, custom_device(40), optimizer="sgd").verdict == "does not fit"
    esp32 = DEVICE["ESP32"]
    assert check_budget(report, esp32).verdict == "does not fit"
    assert check_budget(report, esp32).largest_batch == 0
    assert check.largest_batch == largest_batch(report, custom_device(65)) >= 8

    pi = check_budget(report, PI_ZERO)
    assert pi.terms.reserve_bytes == PI_ZERO.reserve_bytes
    assert pi.total_bytes == full + PI_ZERO.reserve_bytes
    assert pi.verdict == "fits"
    # activations + parameters alone against the whole 512 MB (the old verdict): counted in full, far fewer fit
    old = min((PI_ZERO.budget_bytes - report.param_bytes - f) // a for a, f in report.batch_lines() if a > 0)
    assert 8 <= pi.largest_batch < old // 2
