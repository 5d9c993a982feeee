"""The model setting object and view-declared options: one validated, hashable key for every walk and build."""

import dataclasses

import pytest

from explorer.compute import variants
from tinytl.engine import ENGINE_MODES
from tinytl.errors import TinyTLError
from tinytl.memory import VIEWS, cached_trace, get_view, profile_memory
from tinytl.models import ModelSetting
from tinytl.models.supernet import SubnetConfig


def test_defaults_are_the_papers_setting_and_fields_are_checked():
    model = ModelSetting()
    assert (model.backbone, model.resolution, model.classes, model.lite_residual, model.norm) == \
        ("proxylessnas_mobile", 224, 102, True, "gn")
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.resolution = 64  # type: ignore[misc]
    for bad, message in ((dict(resolution=16), "resolution"), (dict(classes=0), "classes"),
                         (dict(norm="ln"), "unknown norm"), (dict(backbone="nope"), "nope"),
                         (dict(subnet='{"d": [2,2,2,2,2]}'), "only to the 'supernet' backbone")):
        with pytest.raises(TinyTLError, match=message):
            ModelSetting(**bad)


def test_equal_subnets_share_one_key_and_one_walk():
    used = SubnetConfig((2,) * 5, (3,) * 20, (3,) * 20)
    # slot 3 of every stage is unused at depth 2: a different value there is the same network
    other = SubnetConfig((2,) * 5, tuple(6 if i % 4 == 3 else 3 for i in range(20)), (3,) * 20)
    a, b = ModelSetting("supernet", 64, 10, subnet=used.to_json()), ModelSetting("supernet", 64, 10, subnet=other)
    assert a == b and hash(a) == hash(b)
    assert cached_trace(a) is cached_trace(b)
    assert profile_memory(a, policy="bias").total_bytes == profile_memory(b, policy="bias").total_bytes


def test_apis_take_the_setting_and_keywords_only():
    model = ModelSetting("proxylessnas_mobile", 64, 10)
    with pytest.raises(TypeError):
        profile_memory(model, "bias")  # policy is keyword-only: no positional order to get wrong
    assert profile_memory(model, policy="bias").num_classes == 10


def test_views_declare_their_options():
    engine = get_view("engine")
    assert engine.options == {"mode": ENGINE_MODES}
    assert engine.pick_options(mode="recompute", unrelated=1) == {"mode": "recompute"}
    assert get_view("paper").pick_options(mode="recompute") == {}
    with pytest.raises(TinyTLError, match="choose one of exact, recompute"):
        engine.pick_options(mode="fast")
    # the app's columns are every view times its declared option values
    assert len(variants()) == len(VIEWS) - 1 + len(ENGINE_MODES)
    assert {v.key for v in variants() if v.view == "engine"} == {f"engine·{m}" for m in ENGINE_MODES}
