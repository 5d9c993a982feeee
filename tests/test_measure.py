"""Measurement of real steps: saved-tensor counting, the live-storage peak tracker, the `measure` command."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tinytl.cli import main
from tinytl.memory import VIEWS
from tinytl.memory.measure import (LivePeakTracker, SavedTensorCounter, count_saved_activations,
                                   interleaved_times, measure_training_step)
from tinytl.models import build_model
from tinytl.policies import apply_policy
from tinytl.models.setting import ModelSetting

SMALL = dict(batch_size=2, timing_steps=0)


def test_counter_excludes_parameters_and_counts_a_storage_once():
    lin = nn.Linear(16, 4)
    lin.weight.requires_grad_(False)
    x = torch.randn(8, 16, requires_grad=True)
    with SavedTensorCounter(lin) as counter:
        lin(x)  # frozen weight, input needs a gradient: addmm keeps only the (parameter) weight
    assert counter.total_bytes == 0
    with SavedTensorCounter(lin) as counter:
        y = x * x  # mul keeps both operands: the same storage, counted once
        y[2:].sin()  # sin keeps its input, a view of y's storage: y's whole storage counts once
    assert counter.total_bytes == x.nbytes + y.nbytes
    assert counter.by_layer == {"(outside leaf layers)": x.nbytes + y.nbytes}


def test_counter_attributes_to_layers_by_walk_names():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    counter = count_saved_activations(model, torch.randn(2, 3, 8, 8))
    assert counter.by_layer == {"0": 2 * 3 * 8 * 8 * 4, "1": 2 * 4 * 6 * 6 * 4}  # conv input; relu output
    # (the linear keeps the relu output's storage, already counted)


def test_peak_tracker_follows_allocations_and_frees():
    existing = torch.empty(250)  # 1000 bytes live on entry
    with LivePeakTracker((existing,)) as tracker:
        a = torch.empty(1000)
        b = torch.empty(2000)
        view = a[10:]
        del a
        assert tracker.current == 1000 + 4000 + 8000  # the view keeps a's storage alive
        del view, b
        c = torch.empty(500)
        assert tracker.current == 1000 + 2000
        del c
    assert tracker.peak == 1000 + 4000 + 8000


def test_peak_tracker_agrees_with_pytorch_mem_tracker():
    from torch.distributed._tools.mem_tracker import MemTracker

    torch.manual_seed(0)  # MemTracker needs every parameter trainable
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.GroupNorm(2, 16), nn.ReLU6(inplace=True), nn.Conv2d(16, 16, 3),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    with LivePeakTracker((*model.parameters(), *model.buffers())) as ours:
        F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    theirs = MemTracker()
    theirs.track_external(model)
    with theirs:
        F.cross_entropy(model(x), y).backward()
    total = theirs.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]
    assert ours.peak == pytest.approx(total, rel=0.01)


def test_peak_is_at_least_params_plus_saved():
    torch.manual_seed(0)
    model = build_model("proxylessnas_mobile", 10, norm="gn").train()
    apply_policy(model, "bias")
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 10, (2,))
    with LivePeakTracker((*model.parameters(), *model.buffers(), x)) as tracker:
        with SavedTensorCounter(model) as counter:
            logits = model(x)
        F.cross_entropy(logits, y).backward()
    params = sum(p.nbytes for p in model.parameters())
    assert tracker.peak >= params + x.nbytes + counter.total_bytes
    assert tracker.current < tracker.peak


@pytest.mark.parametrize("norm,policy,mode", [("gn", "bias", "exact"), ("bn-frozen", "lite+bias", "recompute"),
                                              ("gn", "lite", "recompute")])
def test_training_step_stock_vs_engine(norm, policy, mode):
    result = measure_training_step(ModelSetting("proxylessnas_mobile", 64, 10, norm=norm), policy=policy,
                                   engine_mode=mode, **SMALL)
    stock, engine = result.pytorch, result.engine
    assert stock.saved_activation_bytes == pytest.approx(stock.predicted_saved_activation_bytes, rel=0.05)
    assert result.max_grad_abs_diff <= 1e-5 * max(result.grad_scale, 1.0)
    assert stock.loss == pytest.approx(engine.loss, rel=1e-5)
    assert engine.saved_activation_bytes < stock.saved_activation_bytes
    assert engine.peak_bytes < stock.peak_bytes
    if "engine" in VIEWS:
        assert engine.saved_activation_bytes == pytest.approx(engine.predicted_saved_activation_bytes, rel=0.05)
    ckpt = result.checkpoint  # stock layers, the recompute mode's blocks checkpointed: stock's gradients
    assert result.checkpoint_max_grad_abs_diff <= 1e-5 * max(result.grad_scale, 1.0)
    assert ckpt.loss == pytest.approx(stock.loss, rel=1e-5)
    assert ckpt.saved_activation_bytes < stock.saved_activation_bytes and ckpt.peak_bytes < stock.peak_bytes


def test_interleaved_times_rotate_contenders_and_take_medians():
    order = []
    steps = {name: (lambda n=name: order.append(n)) for name in ("a", "b", "c")}
    times = interleaved_times(steps, rounds=3, warmup=1)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]  # the first round is untimed
    assert set(times) == {"a", "b", "c"} and all(w >= 0 and c >= 0 for w, c in times.values())


def test_measure_cli_json(capsys):
    rc = main(["measure", "--policy", "lite+bias", "--resolution", "64", "--batch-size", "2", "--classes", "10",
               "--norm", "bn-frozen", "--timing-steps", "1", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    for name in ("pytorch", "checkpoint", "engine"):
        for key in ("saved_activation_bytes", "predicted_saved_activation_bytes", "peak_bytes", "step_seconds",
                    "step_cpu_seconds", "loss"):
            assert key in out[name]
        assert out[name]["saved_activation_bytes"] > 0 and out[name]["step_seconds"] > 0
    assert out["pytorch"]["saved_activation_bytes"] == pytest.approx(
        out["pytorch"]["predicted_saved_activation_bytes"], rel=0.05)
    assert out["max_grad_abs_diff"] <= 1e-5 * max(out["grad_scale"], 1.0)
    assert out["checkpoint_max_grad_abs_diff"] <= 1e-5 * max(out["grad_scale"], 1.0)
    assert (out["policy"], out["norm"], out["engine_mode"], out["device"]) == ("lite+bias", "bn-frozen", "exact", "cpu")


@pytest.mark.parametrize("args,message", [
    (["--device", "cuda"], "CUDA is not available"),
    (["--policy", "nope"], "unknown policy"),
    (["--backbone", "nope"], "unknown backbone"),
    (["--batch-size", "0"], "batch size"),
    (["--resolution", "8"], "resolution"),
    (["--engine-mode", "lazy"], "invalid choice"),
])
def test_measure_cli_bad_input_exits_2(args, message, capsys):
    if args[0] == "--device" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["measure", "--resolution", "64", "--batch-size", "2", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1
