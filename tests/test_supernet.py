"""The elastic super-net: sub-net configs, weight sharing, extraction, channel sorting, the memory CLI."""

import json
import random

import pytest
import torch

from tinytl import TinyTLError
from tinytl.cli import main
from tinytl.models import build_model
from tinytl.models.supernet import (ProxylessSuperNet, SubnetModel, largest_subnet, parse_subnet, sample_subnet,
                                    smallest_subnet)


def _with_live_lite(model):
    """Give the zero-initialised lite final norms a non-zero scale so the branches affect the output."""
    torch.manual_seed(1)
    for m in model.modules():
        if hasattr(m, "final_norm"):
            torch.nn.init.normal_(m.final_norm.weight)
    return model


@pytest.mark.parametrize("bad", [
    "not json", '{"d": [2,2,2,2,2]}', '[1, 2]',
    json.dumps({"d": [1, 2, 2, 2, 2], "e": [3] * 20, "ks": [3] * 20}),
    json.dumps({"d": [2] * 5, "e": [5] * 20, "ks": [3] * 20}),
    json.dumps({"d": [2] * 5, "e": [3] * 19, "ks": [3] * 20}),
    json.dumps({"d": [2] * 5, "e": [3] * 20, "ks": [3] * 19 + [9]}),
    json.dumps({"d": [True] * 5, "e": [3] * 20, "ks": [3] * 20}),
    json.dumps({"d": [2] * 5, "e": [3] * 20, "ks": [3] * 20, "x": 1}),
])
def test_bad_subnets_raise(bad):
    with pytest.raises(TinyTLError, match="subnet"):
        parse_subnet(bad)


def test_config_round_trip_and_canonical():
    c = sample_subnet(random.Random(3))
    assert parse_subnet(c.to_json()) == c
    assert parse_subnet(c.to_dict()) == c
    assert len(c.active_slots()) == sum(c.d)
    other = parse_subnet({**c.to_dict(), "e": [6 if i not in c.active_slots() else v for i, v in enumerate(c.e)]})
    assert other.canonical() == c.canonical()


@pytest.mark.parametrize("norm", ["gn", "bn"])
def test_extracted_subnet_equals_elastic_forward(norm):
    torch.manual_seed(0)
    net = _with_live_lite(ProxylessSuperNet(10, norm=norm)).eval()
    x = torch.randn(2, 3, 40, 40)
    rng = random.Random(0)
    for config in (largest_subnet(), smallest_subnet(), sample_subnet(rng), sample_subnet(rng)):
        net.set_active(config)
        sub = net.extract(config).eval()
        assert isinstance(sub, SubnetModel)
        assert len(sub.blocks) == 2 + sum(config.d)
        with torch.no_grad():
            torch.testing.assert_close(sub(x), net(x), rtol=0, atol=1e-5)


def test_kernel_and_width_share_weights():
    net = ProxylessSuperNet(10)
    config = sample_subnet(random.Random(5))
    sub = net.extract(config)
    slot = config.active_slots()[0]
    big, small = net.blocks[1 + slot].conv, sub.blocks[1].conv
    k, mid = config.ks[slot], small.mid_channels
    off = (7 - k) // 2
    assert torch.equal(small.depthwise.conv.weight, big.depthwise.conv.weight[:mid, :, off:off + k, off:off + k])
    assert torch.equal(small.expand.conv.weight, big.expand.conv.weight[:mid])
    assert torch.equal(small.project.conv.weight, big.project.conv.weight[:, :mid])


@pytest.mark.parametrize("norm", ["gn", "bn"])
def test_sort_channels_keeps_full_network_and_orders_importance(norm):
    torch.manual_seed(0)
    net = _with_live_lite(ProxylessSuperNet(10, norm=norm)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = net(x)
        net.sort_channels()
        after = net(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    importance = net.blocks[3].conv.project.conv.weight.abs().sum(dim=(0, 2, 3))
    if norm == "gn":
        importance = importance.view(-1, 8).sum(1)
    assert torch.all(importance[:-1] >= importance[1:])


def test_build_model_supernet_and_identity_shortcuts():
    config = parse_subnet({"d": [2, 3, 4, 2, 3], "e": [4] * 20, "ks": [5] * 20})
    model = build_model("supernet", 10, subnet=config.to_json(), device="meta")
    flags = [b.identity_shortcut for b in model.blocks]
    # block 0 (32 -> 16), then each stage's first block changes shape; the others are identity blocks
    assert flags == [False] + [j > 0 for d in config.d for j in range(d)] + [False]
    assert model.blocks[0].lite is None and all(b.lite is not None for b in model.blocks[1:])
    assert len(build_model("supernet", 10, device="meta").blocks) == 22


def test_memory_cli_subnet(capsys):
    subnet = json.dumps(smallest_subnet().to_dict())
    assert main(["memory", "--backbone", "supernet", "--subnet", subnet, "--classes", "10", "--resolution", "64",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["subnet"] == smallest_subnet().to_dict() and out["total_mb"] > 0
    assert main(["memory", "--backbone", "supernet", "--subnet", '{"d": [9]}']) == 2
    assert "subnet" in capsys.readouterr().err
    assert main(["memory", "--backbone", "proxylessnas_mobile", "--subnet", subnet]) == 2
    assert "only to the 'supernet' backbone" in capsys.readouterr().err
