"""Device budgets: verdicts, and the largest batch that fits, checked against a fresh analysis at that batch."""

import pytest

from tinytl.devices import DEVICES, KIB, MIB, check_budget, custom_device, largest_batch, verdict
from tinytl.errors import TinyTLError
from tinytl.memory import VIEWS, analyze
from tinytl.policies import POLICIES


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


def test_custom_budget_is_decimal_mb_and_positive():
    assert custom_device(50).budget_bytes == 50_000_000
    assert custom_device(0.5).budget_mb == pytest.approx(0.5)
    for bad in (0, -3, float("nan"), "12", True):
        with pytest.raises(TinyTLError, match="budget"):
            custom_device(bad)


@pytest.mark.parametrize("view", list(VIEWS))
@pytest.mark.parametrize("policy", ["full", "bias", "lite+bias"])
def test_total_at_batch_equals_a_fresh_analysis(proxyless_trace, view, policy):
    report = analyze(proxyless_trace, policy, 8, 8, view)
    assert report.total_at_batch(8) == report.total_bytes
    for batch in (1, 3, 17, 256):
        assert report.total_at_batch(batch) == analyze(proxyless_trace, policy, batch, 8, view).total_bytes


@pytest.mark.parametrize("view", list(VIEWS))
@pytest.mark.parametrize("policy", POLICIES)
def test_largest_batch_is_the_boundary(proxyless_trace, view, policy):
    report = analyze(proxyless_trace, policy, 8, 8, view)
    for budget in (40_000_000, 256 * MIB, 4 * 1024 * MIB):
        best = largest_batch(report, budget)
        if best == 0:
            assert analyze(proxyless_trace, policy, 1, 8, view).total_bytes > budget
            continue
        assert analyze(proxyless_trace, policy, best, 8, view).total_bytes <= budget
        assert analyze(proxyless_trace, policy, best + 1, 8, view).total_bytes > budget


def test_check_budget_on_paper_table2_setting(proxyless_trace):
    report = analyze(proxyless_trace, "lite+bias", 8, 8, "paper")  # 37.07 MB
    check = check_budget(report, custom_device(40))
    assert check.verdict == "tight"
    assert check.headroom_bytes == 40_000_000 - report.total_bytes
    assert check_budget(report, custom_device(100)).verdict == "fits"
    esp32 = next(d for d in DEVICES if d.name == "ESP32")
    assert check_budget(report, esp32).verdict == "does not fit"
    assert check_budget(report, esp32).largest_batch == 0
    assert check.largest_batch == largest_batch(report, 40_000_000) >= 8
