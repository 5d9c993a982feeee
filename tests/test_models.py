"""Backbones build by name, with the paper's options, on meta and real devices."""

import pytest
import torch
from torch import nn

from tinytl.errors import TinyTLError
from tinytl.models import build_model, has_lite_residual, list_backbones
from tinytl.models.layers import FrozenStatsBatchNorm2d, LiteResidual, StdConv2d, group_count


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_proxyless_param_count():
    model = build_model("proxylessnas_mobile", 1000, lite_residual=False, device="meta")
    assert n_params(model) == pytest.approx(4.08e6, rel=0.005)


def test_proxyless_options():
    model = build_model("proxylessnas_mobile", 102, device="meta")
    assert has_lite_residual(model)
    assert model.classifier[1].out_features == 102
    assert isinstance(model.classifier[0], nn.Dropout) and model.classifier[0].p == 0.2
    lites = [b.lite for b in model.blocks]
    assert lites[0] is None and all(isinstance(lite, LiteResidual) for lite in lites[1:])
    assert [lite.conv1.kernel_size[0] for lite in lites[1:]] == [5] * 15 + [3] * 4
    real = build_model("proxylessnas_mobile", 102)
    assert all(float(b.lite.final_norm.weight.detach().abs().sum()) == 0 for b in real.blocks[1:])
    assert all(isinstance(m, StdConv2d) for m in model.modules() if isinstance(m, nn.Conv2d))
    gns = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert gns and all(m.num_channels // m.num_groups <= 8 for m in gns)


def test_group_count():
    assert group_count(32) == 4 and group_count(24) == 3 and group_count(144) == 18 and group_count(3) == 1


@pytest.mark.parametrize("norm,cls", [("bn", nn.BatchNorm2d), ("bn-frozen", FrozenStatsBatchNorm2d),
                                      ("gn", nn.GroupNorm)])
def test_norm_modes(norm, cls):
    model = build_model("mobilenet_v2", 10, norm=norm, device="meta")
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]
    assert norms and all(isinstance(m, cls) for m in norms)


def test_frozen_stats_bn_is_affine_in_training_mode():
    bn = FrozenStatsBatchNorm2d(4).train()
    x = torch.randn(3, 4, 5, 5)
    y = bn(x)
    assert torch.allclose(y, x / (1 + bn.eps) ** 0.5, atol=1e-6)
    assert torch.equal(bn.running_mean, torch.zeros(4))


def test_lite_residual_keeps_function_at_init():
    torch.manual_seed(0)
    block = build_model("mobilenet_v2", 10).eval().features[3]
    host = block.block
    x = torch.randn(1, host.conv[0][0].in_channels, 16, 16)
    assert torch.allclose(block(x), host(x), atol=1e-6)


@pytest.mark.parametrize("name", ["proxylessnas_mobile", "mobilenet_v2", "mobilenet_v3_large", "resnet18"])
def test_real_forward_backward(name):
    model = build_model(name, 5)
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 5)
    out.sum().backward()


def test_torchvision_names_listed():
    names = list_backbones()
    assert names[0] == "proxylessnas_mobile"
    assert {"mobilenet_v2", "mobilenet_v3_large", "resnet18", "resnet50", "inception_v3"} <= set(names)


def test_backbone_without_hosts_has_no_lite():
    assert not has_lite_residual(build_model("vgg11", 10, device="meta"))


def test_unknown_backbone_names_the_closest_and_the_listing_command():
    with pytest.raises(TinyTLError) as err:
        build_model("resnet5", 10)
    message = str(err.value)
    assert "closest: resnet50" in message and "python -m tinytl memory --list-backbones" in message
    assert "\n" not in message and len(message) < 200


def test_every_builder_runs_on_the_meta_device():
    # RegNet computes its widths with tensors: they run on the CPU, every parameter is on meta
    model = build_model("regnet_y_128gf", 100_000, device="meta")
    assert all(t.device.type == "meta" for t in (*model.parameters(), *model.buffers()))
    assert sum(p.numel() for p in model.parameters()) > 1e9


def test_a_convolutional_classifier_is_the_classifier():
    from tinytl.policies import classifier_name, trainable_names

    model = build_model("squeezenet1_1", 10, device="meta")
    assert classifier_name(model) == "classifier.1"
    assert trainable_names(model, "last") == {"classifier.1.weight", "classifier.1.bias"}
