"""Training loop, recipe checks, checkpoints (save / load / corrupt / mismatched / torchvision cache), step memory."""


import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tinytl.errors import TinyTLError
from tinytl.models import build_model
from tinytl.train.checkpoint import SHIPPED, load_weights, read_state_dict, save_compact
from tinytl.train.loop import TrainHooks, train
from tinytl.train.step_memory import measure_step
from tinytl.train.recipe import FinetuneSettings


class Tiny(nn.Module):
    """A two-layer net: `body` is the feature extractor, `head` the classifier (last nn.Linear)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


def _loaders(n=48, batch=8):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    data = TensorDataset(x, y)
    return DataLoader(data, batch), DataLoader(data, 16)


def test_train_updates_only_policy_params_and_learns():
    torch.manual_seed(0)
    model = Tiny()
    body_before = model.body.weight.detach().clone()
    bias_before = model.body.bias.detach().clone()
    train_loader, test_loader = _loaders()
    steps, lrs = [], []
    hooks = TrainHooks(before_step=lambda step, m: steps.append(step),
                       after_step=lambda m: lrs.append(m.total))
    result = train(model, train_loader, test_loader, "custom:body.bias,head.*", epochs=5, lr=0.05,
                   label_smoothing=0.0, hooks=hooks)
    assert torch.equal(model.body.weight, body_before)
    assert not torch.equal(model.body.bias, bias_before)
    assert steps == list(range(30)) and set(lrs) == {30}
    assert [m.epoch for m in result.history] == [1, 2, 3, 4, 5] and result.steps == 30 and not result.cancelled
    assert result.history[-1].train_loss < result.history[0].train_loss
    assert result.history[-1].lr < 0.05 * 0.01  # cosine schedule per iteration decays to ~0
    assert 0 <= result.final_accuracy <= 1
    assert result.step_memory.peak_bytes > 0


def test_should_stop_cancels_and_keeps_earlier_epochs():
    model = Tiny()
    train_loader, test_loader = _loaders()
    seen = []
    hooks = TrainHooks(after_step=lambda m: seen.append(m.step),
                       should_stop=lambda: len(seen) >= 9)
    result = train(model, train_loader, test_loader, "full", epochs=4, lr=0.01, hooks=hooks)
    assert result.cancelled and result.steps == 9
    assert [m.epoch for m in result.history] == [1]  # the partial second epoch is not evaluated


def test_max_steps_stops_cleanly():
    result = train(Tiny(), *_loaders(), "last", epochs=3, lr=0.01, max_steps=2)
    assert result.steps == 2 and not result.cancelled and result.history[0].steps == 2


@pytest.mark.parametrize("kwargs,needle", [({"epochs": 0, "lr": 1.0}, "epochs"), ({"epochs": 1, "lr": 0}, "rate")])
def test_train_rejects_bad_settings(kwargs, needle):
    with pytest.raises(TinyTLError, match=needle):
        train(Tiny(), *_loaders(), "full", **kwargs)


@pytest.mark.parametrize("change,needle", [
    ({"epochs": 0}, "epochs"), ({"resolution": 16}, "resolution"), ({"engine": "jax"}, "engine"),
    ({"frozen_bits": 8, "engine": "pytorch"}, "--engine tinytl"), ({"policy": "nope"}, "unknown policy"),
    ({"label_smoothing": 1.0}, "label smoothing"), ({"backbone": "nope"}, "unknown backbone")])
def test_settings_validation(change, needle):
    with pytest.raises(TinyTLError, match=needle):
        FinetuneSettings(**change).validate()


@pytest.mark.slow
def test_measure_step_last_saves_less_than_full():
    model = build_model("proxylessnas_mobile", 10)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    out = {}
    for policy in ("full", "last"):
        from tinytl.policies import apply_policy

        apply_policy(model, policy)
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad])

        def step():
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss

        out[policy] = measure_step(model, step)
    assert out["last"].saved_activation_bytes < out["full"].saved_activation_bytes / 100
    params = sum(p.numel() * 4 for p in model.parameters())
    assert out["full"].peak_bytes > params + out["full"].saved_activation_bytes > out["last"].peak_bytes - params


def test_compact_checkpoint_round_trip(tmp_path):
    source = build_model("proxylessnas_mobile", 7)
    size = save_compact(source, tmp_path / "c.pt", "proxylessnas_mobile", {"note": "x"})
    state, meta = read_state_dict(tmp_path / "c.pt")
    assert meta == {"note": "x"} and all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert state["classifier.1.weight"].shape == (7, 1280)  # kept for continued pretraining, never loaded
    assert size < 0.6 * sum(p.numel() * 4 for p in source.parameters())
    target = build_model("proxylessnas_mobile", 10)
    report = load_weights(target, str(tmp_path / "c.pt"), "proxylessnas_mobile")
    assert set(report.fresh) == {"classifier.1.weight", "classifier.1.bias"}
    w = target.blocks[3].conv[0][0].weight
    assert w.dtype == torch.float32
    assert torch.allclose(w, source.blocks[3].conv[0][0].weight, atol=1e-3)


def test_plain_state_dict_file(tmp_path):
    source = build_model("proxylessnas_mobile", 10, lite_residual=False)
    torch.save(source.state_dict(), tmp_path / "plain.pth")
    target = build_model("proxylessnas_mobile", 10)  # lite branches may stay fresh
    report = load_weights(target, str(tmp_path / "plain.pth"), "proxylessnas_mobile")
    assert all(".lite." in k or k.startswith("classifier.") for k in report.fresh)
    assert torch.equal(target.first_conv[0].weight, source.first_conv[0].weight)


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(TinyTLError, match="cannot read checkpoint"):
        load_weights(build_model("proxylessnas_mobile", 10), str(bad), "proxylessnas_mobile")
    torch.save({"a": 1}, tmp_path / "nodict.pt")
    with pytest.raises(TinyTLError, match="does not hold a state dict"):
        load_weights(build_model("proxylessnas_mobile", 10), str(tmp_path / "nodict.pt"), "proxylessnas_mobile")


def test_mismatched_checkpoint(tmp_path):
    torch.save(build_model("mobilenet_v2", 10, lite_residual=False).state_dict(), tmp_path / "mbv2.pt")
    with pytest.raises(TinyTLError, match="does not fit proxylessnas_mobile.*unexpected"):
        load_weights(build_model("proxylessnas_mobile", 10), str(tmp_path / "mbv2.pt"), "proxylessnas_mobile")


def test_torchvision_weights_into_lite_wrapped_model(tmp_path, monkeypatch):
    from torchvision.models import MobileNet_V2_Weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    name = "MobileNet_V2_Weights.IMAGENET1K_V1"
    model = build_model("mobilenet_v2", 10, norm="bn")
    with pytest.raises(TinyTLError, match="not in the local torch cache"):
        load_weights(model, name, "mobilenet_v2")
    stock = build_model("mobilenet_v2", 1000, lite_residual=False, norm="bn")
    cached = tmp_path / "hub" / "checkpoints" / MobileNet_V2_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    cached.parent.mkdir(parents=True)
    torch.save(stock.state_dict(), cached)
    report = load_weights(model, name, "mobilenet_v2")
    assert torch.equal(model.features[3].block.conv[0][0].weight, stock.features[3].conv[0][0].weight)
    assert all(".lite." in k or k.startswith("classifier.") for k in report.fresh)
    with pytest.raises(TinyTLError, match="not a torchvision weight name"):
        load_weights(model, "NoSuch_Weights.X", "mobilenet_v2")


def test_shipped_checkpoint_is_small_and_loads():
    path = SHIPPED["proxylessnas_mobile"]
    assert path.stat().st_size <= 20_000_000
    state, meta = read_state_dict(path)
    assert meta["source_task"] == "glyphs" and 0 < meta["source_test_accuracy"] <= 1
    model = build_model("proxylessnas_mobile", 10)
    report = load_weights(model, "shipped", "proxylessnas_mobile")
    assert set(report.fresh) == {"classifier.1.weight", "classifier.1.bias"}


def test_pretrain_continues_on_a_larger_source_task(tmp_path):
    """A later stage may widen the source task: the old head is dropped, the features carry over, provenance chains."""
    from tinytl.train.pretrain import pretrain

    first = pretrain(tmp_path / "a.pt", resolution=32, classes=3, per_class=2)
    second = pretrain(tmp_path / "b.pt", resolution=32, lr=1e-9, classes=55, per_class=1, low_res=(8,),
                      init=tmp_path / "a.pt")
    state_a, _ = read_state_dict(tmp_path / "a.pt")
    state_b, meta = read_state_dict(tmp_path / "b.pt")
    assert state_b["classifier.1.weight"].shape == (55, 1280) and first["source_classes"] == 3
    # lr 1e-9: the stage barely moves the carried-over features (fp16 rounding aside)
    key = "blocks.5.conv.expand.conv.weight"
    assert torch.allclose(state_a[key].float(), state_b[key].float(), atol=1e-3)
    assert [s["source_classes"] for s in meta["stages"]] == [3, 55] and meta["stages"][1]["low_res"] == [8]
    assert meta["stages"][1]["continued_from"] == str(tmp_path / "a.pt") and second["source_classes"] == 55


def test_pretrain_refuses_a_foreign_init(tmp_path):
    from tinytl.train.pretrain import pretrain

    torch.save(build_model("mobilenet_v2", 10, lite_residual=False).state_dict(), tmp_path / "mbv2.pt")
    with pytest.raises(TinyTLError, match="is not a proxylessnas_mobile checkpoint"):
        pretrain(tmp_path / "out.pt", resolution=32, classes=3, per_class=1, init=tmp_path / "mbv2.pt")
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize("norm,engine", [("gn", "tinytl-recompute"), ("bn", "tinytl-recompute"),
                                         ("bn-frozen", "tinytl")])
def test_default_engine_is_the_leanest_mode_for_the_norm(norm, engine):
    assert FinetuneSettings().engine == "auto"
    assert FinetuneSettings(norm=norm).validate().engine == engine
    assert FinetuneSettings(norm=norm, engine="pytorch").validate().engine == "pytorch"  # one option away
