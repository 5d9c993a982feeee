"""The engine view predicts what the engine really keeps; bn-frozen exact reaches the paper's theory."""

import json

import pytest
import torch

from tinytl.cli import main
from tinytl.engine import ENGINE_MODES, convert_model, restore_model
from tinytl.errors import TinyTLError
from tinytl.memory import analyze, cached_trace, profile_memory
from tinytl.memory.measure import count_saved_activations
from tinytl.models import build_model
from tinytl.policies import POLICIES, apply_policy
from tinytl.models.setting import ModelSetting

BATCH = 2


pytestmark = pytest.mark.usefixtures("one_thread")


def _measured(model, policy: str, mode: str, resolution: int) -> int:
    apply_policy(model, policy)
    convert_model(model, mode)
    try:
        x = torch.randn(BATCH, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
        return count_saved_activations(model, x).total_bytes
    finally:
        restore_model(model)


@pytest.mark.parametrize("backbone, norm, resolution", [
    ("proxylessnas_mobile", "gn", 64), ("proxylessnas_mobile", "bn", 128), ("proxylessnas_mobile", "bn-frozen", 64),
    ("mobilenet_v2", "gn", 64), ("resnet18", "bn", 128)])
def test_view_predicts_measured_saved_bytes(backbone, norm, resolution):
    torch.manual_seed(0)
    model = build_model(backbone, 10, norm=norm)
    trace = cached_trace(ModelSetting(backbone, resolution, 10, True, norm))
    for policy in POLICIES:
        for mode in ENGINE_MODES:
            measured = _measured(model, policy, mode, resolution)
            predicted = analyze(trace, policy, BATCH, view="engine", mode=mode).stored_activation_bytes
            assert predicted == pytest.approx(measured, rel=0.05), (policy, mode)


@pytest.mark.parametrize("policy", ["bias", "lite", "lite+bias"])
def test_bn_frozen_exact_reaches_paper_theory(policy):
    # at the paper's setting (priced) and in a real run at a small one (measured)
    engine = profile_memory(ModelSetting("proxylessnas_mobile", 224, 102, norm="bn-frozen"),
                            policy=policy, batch_size=8, view="engine")
    paper = profile_memory(ModelSetting("proxylessnas_mobile", 224, 102, norm="bn-frozen"),
                           policy=policy, batch_size=8, view="paper")
    assert engine.stored_activation_bytes <= 1.05 * paper.stored_activation_bytes
    model = build_model("proxylessnas_mobile", 102, norm="bn-frozen")
    measured = _measured(model, policy, "exact", 96)
    paper_small = profile_memory(ModelSetting("proxylessnas_mobile", 96, 102, norm="bn-frozen"),
                                 policy=policy, batch_size=BATCH, view="paper")
    assert measured <= 1.05 * paper_small.stored_activation_bytes


def test_group_norm_exact_minimum_and_recompute():
    # GN's input gradient needs x_hat after the first trainable parameter: far above the paper's 0.57 MB
    exact = profile_memory(ModelSetting("proxylessnas_mobile", 224, 102), policy="bias", batch_size=1, view="engine")
    paper = profile_memory(ModelSetting("proxylessnas_mobile", 224, 102), policy="bias", batch_size=1, view="paper")
    assert paper.stored_activation_bytes / 1e6 == pytest.approx(0.57, rel=0.02)
    assert 15e6 < exact.stored_activation_bytes < 25e6  # about 20 MB per sample (reference section 2b)
    norms = [r for r in exact.layers if r.kind == "norm" and r.stored_bytes]
    assert norms and all(r.stored_bytes >= r.tmp_bytes // 2 for r in norms)  # input kept whole
    # recompute: the 20 block inputs (about 4.2 MB) plus what the stem / head keep
    recompute = profile_memory(ModelSetting("proxylessnas_mobile", 224, 102),
                               policy="bias", batch_size=1, view="engine", mode="recompute")
    assert 4.2e6 < recompute.stored_activation_bytes < 5e6
    assert sum(r.stored_bytes for r in recompute.layers if r.name.startswith("blocks.")
               and not r.name.startswith("blocks.0.")) == pytest.approx(4.2e6, rel=0.05)


def test_cli_engine_view_and_mode(capsys):
    args = ["memory", "--policy", "bias", "--resolution", "64", "--batch-size", "2", "--view", "engine", "--json"]
    assert main(args + ["--engine-mode", "recompute"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["view"] == "engine" and out["options"] == {"mode": "recompute"}
    expected = profile_memory(ModelSetting("proxylessnas_mobile", 64, 102),
                              policy="bias", batch_size=2, view="engine", mode="recompute")
    assert out["stored_activation_bytes"] == expected.stored_activation_bytes
    assert main(args + ["--engine-mode", "fast"]) == 2


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(TinyTLError, match="engine mode"):
        profile_memory(ModelSetting("proxylessnas_mobile", 64, 10),
                       policy="bias", batch_size=2, view="engine", mode="fast")
