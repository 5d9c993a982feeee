"""Super-net warm start, progressive-shrinking phases, adaptation with a random sub-net and resolution per step."""

import json
import random

import pytest
import torch

from tinytl import TinyTLError
from tinytl.cli import main
from tinytl.models.proxylessnas import ProxylessNASMobile
from tinytl.models.supernet import (KERNELS, ProxylessSuperNet, SubnetConfig, largest_subnet, load_supernet,
                                    save_supernet, smallest_subnet)
from tinytl.models.supernet_warmstart import proxyless_subnet, warm_start
from tinytl.policies import trainable_names
from tinytl.train.checkpoint import save_compact
from tinytl.train.elastic import (PHASES, check_phase_steps, distill_loss, resize_batch, sample_in_phase,
                                  smallest_in_phase)


def _trained_looking_fixed(classes=10):
    """A ProxylessNAS-Mobile with random weights and live lite branches (non-zero final norms)."""
    torch.manual_seed(0)
    fixed = ProxylessNASMobile(classes)
    for m in fixed.modules():
        if hasattr(m, "final_norm"):
            torch.nn.init.normal_(m.final_norm.weight)
            torch.nn.init.normal_(m.final_norm.bias)
    return fixed.eval()


def test_proxyless_subnet_matches_the_fixed_layout():
    config = proxyless_subnet()
    assert config.d == (2, 4, 4, 4, 4)
    assert [config.e[s] for s in config.active_slots()][:4] == [3, 3, 3, 3]
    assert [config.ks[s] for s in config.active_slots()][:3] == [5, 3, 7]


def test_warm_start_makes_the_proxyless_subnet_the_fixed_network():
    fixed = _trained_looking_fixed()
    supernet = ProxylessSuperNet(10)
    info = warm_start(supernet, fixed.state_dict())
    supernet.eval()
    assert info["identity_slots"] == [2, 3] and info["fresh_tensors"] == []
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = fixed(x)
        supernet.set_active(proxyless_subnet())
        torch.testing.assert_close(supernet(x), expected, rtol=0, atol=1e-4)
        torch.testing.assert_close(supernet.extract(proxyless_subnet()).eval()(x), expected, rtol=0, atol=1e-4)
        # the first stage's extra slots start as identities: depth 4 there computes the same function
        c = proxyless_subnet()
        supernet.set_active(SubnetConfig((4,) + c.d[1:], c.e, c.ks))
        torch.testing.assert_close(supernet(x), expected, rtol=0, atol=1e-4)
        # repeated channels: the widest block computes nearly the fixed block's function
        supernet.set_active(largest_subnet())
        assert not torch.allclose(supernet(x), expected, atol=1e-4)


def test_warm_start_refuses_a_foreign_state():
    fixed = ProxylessNASMobile(10, lite_residual=False)
    with pytest.raises(TinyTLError, match="lite residual"):
        warm_start(ProxylessSuperNet(10), fixed.state_dict())


def test_phases_open_one_dimension_at_a_time():
    rng = random.Random(0)
    assert [sample_in_phase("largest", rng) for _ in range(3)] == [largest_subnet()] * 3
    kernel = [sample_in_phase("kernel", rng) for _ in range(20)]
    assert all(c.d == largest_subnet().d and c.e == largest_subnet().e for c in kernel)
    assert {k for c in kernel for k in c.ks} == set(KERNELS)
    depth = [sample_in_phase("depth", rng) for _ in range(20)]
    assert len({c.d for c in depth}) > 1 and all(set(c.e) == {6} for c in depth)
    assert smallest_in_phase("expand") == smallest_subnet()
    assert smallest_in_phase("depth").e == largest_subnet().e
    with pytest.raises(TinyTLError, match="phase steps"):
        check_phase_steps([1, 2, 3])
    with pytest.raises(TinyTLError, match="unknown elastic phase"):
        sample_in_phase("width", rng)


def test_resize_and_distillation_loss():
    x = torch.rand(2, 3, 64, 64)
    assert resize_batch(x, 64) is x and resize_batch(x, 48).shape == (2, 3, 48, 48)
    logits = torch.randn(4, 10)
    assert distill_loss(logits, logits) == pytest.approx(-(logits.softmax(1) * logits.log_softmax(1)).sum(1).mean())
    assert distill_loss(logits, logits) < distill_loss(-logits, logits)


def test_pretrain_supernet_runs_every_phase_and_records_accuracies(tmp_path):
    from tinytl.train.supernet_pretrain import pretrain_supernet

    save_compact(_trained_looking_fixed(3), tmp_path / "fixed.pt", "proxylessnas_mobile", {})
    meta = pretrain_supernet(tmp_path / "sn.pt", tmp_path / "fixed.pt", phase_steps=(1, 1, 1, 1),
                             resolutions=(32, 40), batch_size=2, classes=3, per_class=2, test_per_class=1)
    assert [p["phase"] for p in meta["phases"]] == list(PHASES)
    assert set(meta["source_test_accuracy"]) == {"32", "40"}
    assert set(meta["source_test_accuracy"]["32"]) == {"largest", "smallest", "proxylessnas_mobile"}
    assert load_supernet(tmp_path / "sn.pt").provenance["phase_steps"]["expand"] == 1


def test_adaptation_trains_only_its_policy_with_random_resolutions(tmp_path, monkeypatch, capsys):
    from tinytl.train import adapt as adapt_module

    seen = []
    resize = adapt_module.resize_batch
    monkeypatch.setattr(adapt_module, "resize_batch", lambda x, r: seen.append(r) or resize(x, r))
    torch.manual_seed(0)
    supernet = ProxylessSuperNet(10)
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    meta = adapt_module.adapt_supernet(supernet, [32, 40], epochs=1, batch_size=128, val_images=1000)
    assert meta["train_images"] == 347 and meta["steps"] == 3 and set(seen) <= {32, 40} and len(seen) == 3
    trained = trainable_names(supernet, "lite+bias")
    changed = {k for k, v in supernet.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and changed <= trained
    fit, val = adapt_module.validation_split(1347, 300, seed=0)
    assert len(val) == 300 and not set(fit) & set(val) and len(fit) + len(val) == 1347
    save_supernet(supernet, tmp_path / "supernet.pt", {"made_by": "test"})
    adapt_module.save_adapted(supernet, tmp_path / "fa.pt", tmp_path / "supernet.pt", meta)
    loaded = adapt_module.load_adapted(tmp_path / "fa.pt")
    assert loaded.provenance["adaptation"]["policy"] == "lite+bias"
    result = adapt_module.subnet_test_accuracy(loaded, smallest_subnet(), 32)
    assert 0 <= result["accuracy"] <= 1 and result["test_images"] == 450
    assert main(["evaluate", "--adapted", str(tmp_path / "fa.pt"), "--subnet", smallest_subnet().to_json(),
                 "--resolution", "32", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["accuracy"] == result["accuracy"] and out["adaptation"] == "lite+bias"
    assert main(["evaluate", "--adapted", str(tmp_path / "fa.pt"), "--resolution", "8"]) == 2


def test_an_adaptation_naming_a_path_as_its_base_is_refused(tmp_path):
    from tinytl.storage import save_file
    from tinytl.train.adapt import load_adapted

    save_file({"state_dict": {}, "base": "../../../../etc/passwd", "num_classes": 10, "provenance": {}},
              tmp_path / "fa.pt")
    with pytest.raises(TinyTLError, match="expected a file name"):
        load_adapted(tmp_path / "fa.pt")
