"""Update policies select exactly the parameters the paper's table names."""

import pytest

from tinytl.errors import TinyTLError
from tinytl.models import build_model
from tinytl.policies import POLICIES, apply_policy, trainable_names


@pytest.fixture(scope="module")
def model():
    return build_model("proxylessnas_mobile", 102, device="meta")


def test_policies(model):
    params = dict(model.named_parameters())
    head = {"classifier.1.weight", "classifier.1.bias"}
    assert trainable_names(model, "full") == set(params)
    assert trainable_names(model, "last") == head
    bias = trainable_names(model, "bias")
    assert head < bias and all(n in head or n.endswith(".bias") for n in bias)
    norm_last = trainable_names(model, "norm+last")
    assert "blocks.3.lite.norm1.weight" in norm_last and "blocks.3.conv.expand.norm.bias" in norm_last
    assert not any(n.endswith("conv.weight") for n in norm_last)
    lite = trainable_names(model, "lite")
    assert all(n in head or ".lite." in n for n in lite)
    assert "blocks.3.lite.final_norm.bias" in lite
    lb = trainable_names(model, "lite+bias")
    assert lb == (lite | bias) - {f"blocks.{i}.lite.final_norm.bias" for i in range(1, 21)}


def test_apply_sets_requires_grad(model):
    names = apply_policy(model, "bias")
    assert {n for n, p in model.named_parameters() if p.requires_grad} == names


def test_custom_policy(model):
    assert trainable_names(model, "custom:blocks.5.*,classifier.*") == {
        n for n, _ in model.named_parameters() if n.startswith(("blocks.5.", "classifier."))}
    with pytest.raises(TinyTLError, match="match no parameter"):
        trainable_names(model, "custom:nothing.*")
    assert trainable_names(model, ["classifier.1.bias"]) == {"classifier.1.bias"}


def test_unknown_and_inapplicable(model):
    with pytest.raises(TinyTLError, match="valid: full, last"):
        trainable_names(model, "everything")
    plain = build_model("proxylessnas_mobile", 102, lite_residual=False, device="meta")
    for policy in ("lite", "lite+bias"):
        with pytest.raises(TinyTLError, match="lite residual"):
            trainable_names(plain, policy)


@pytest.mark.parametrize("policy", POLICIES)
def test_policies_on_torchvision(policy):
    trainable_names(build_model("resnet18", 10, device="meta"), policy)
