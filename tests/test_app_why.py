"""The "why" page under AppTest: one layer's kept tensors (conv, linear, norm) and the whole-network story,
every number equal to the library's views or to an independent saved-tensor measurement."""

import pytest
import torch
from torch import nn

from tests.test_app import assert_clean, figures, open_app, report, trace_named
from tinytl.memory import cached_trace, get_view
from tinytl.memory.views import ACT_BYTES, LayerGrads, ViewContext
from tinytl.policies import POLICIES
from tinytl.models.setting import ModelSetting

WHY = "explorer/pages/why_bias.py"
CONV, NORM = "blocks.1.conv.expand.conv", "blocks.1.conv.expand.norm"


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def markdown(at) -> str:
    return "\n".join(m.value for m in at.markdown)


def layer(name: str, norm: str = "gn"):
    trace = cached_trace(ModelSetting("proxylessnas_mobile", 224, 102, True, norm))
    return next(r for r in trace.layers if r.name == name)


def test_why_layer_lesson_numbers():
    at = open_app(WHY)
    assert_clean(at)
    conv = layer(CONV)
    x_mb = ACT_BYTES * conv.input_numel * 8 / 1e6
    values = metrics(at)
    assert values["paper rule keeps"] == "0.00 MB"  # bias and x only: x need not be kept
    assert values["the formulas need (this project's engine)"] == "0.00 MB"
    assert values["stock PyTorch autograd keeps (measured)"] == f"{x_mb:.2f} MB"  # conv keeps x anyway
    at.toggle(key="why_w").set_value(True).run()
    rule = get_view("paper").cost(conv, LayerGrads(True, True, True), ViewContext(True, "gn"))
    assert rule.stored * 8 / 1e6 == pytest.approx(x_mb)
    assert metrics(at)["paper rule keeps"] == f"{x_mb:.2f} MB"
    for key in ("why_w", "why_b", "why_x"):
        at.toggle(key=key).set_value(False)
    at.run()
    assert metrics(at)["stock PyTorch autograd keeps (measured)"] == "0.00 MB"
    assert trace_named(figures(at)["layer_kept_chart"], "PyTorch keeps")["y"] == [0, 0, 0]


def test_why_conv_without_bias_points_to_the_norm_that_holds_it():
    at = open_app(WHY)
    assert layer(CONV).module.bias is None
    assert any(f"`{CONV}` has no bias" in i.value and f"`{NORM}` (GroupNorm)" in i.value for i in at.info)
    at.selectbox(key="why_layer").set_value("classifier.1").run()  # the linear head has its own bias
    assert not any("has no bias" in i.value for i in at.info)


def test_why_linear_layer_with_bias_only_keeps_no_input():
    at = open_app(WHY)
    at.selectbox(key="why_layer").set_value("classifier.1").run()
    at.toggle(key="why_x").set_value(False).run()
    assert_clean(at)
    assert metrics(at)["stock PyTorch autograd keeps (measured)"] == "0.00 MB"


def _group_norm_saves(record, batch: int) -> tuple[int, int]:
    """Independent check: a fresh GroupNorm like the record's, bias-only, its saved tensors at `batch`."""
    m = record.module
    gn = nn.GroupNorm(m.num_groups, m.num_channels, eps=m.eps)
    gn.weight.requires_grad_(False)
    x = torch.randn(batch, *record.input_shape[1:], requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        gn(x)
    x_bytes = sum(t.untyped_storage().nbytes() for t in saved if t.untyped_storage().data_ptr() == x.data_ptr())
    other = sum(t.untyped_storage().nbytes() for t in saved if t.untyped_storage().data_ptr()
                not in (x.data_ptr(), gn.weight.data_ptr(), gn.bias.data_ptr()))
    return x_bytes, other


def test_why_norm_layer_measured_and_explained():
    at = open_app(WHY)
    at.selectbox(key="why_layer").set_value(NORM).run()
    assert_clean(at)
    norm = layer(NORM)
    x_bytes, stats = _group_norm_saves(norm, 8)
    engine = get_view("engine").cost(norm, LayerGrads(False, True, True), ViewContext(True, "gn"))
    values = metrics(at)
    assert values["paper rule keeps"] == "0.00 MB"  # the rule: nothing while the scale is frozen
    assert values["stock PyTorch autograd keeps (measured)"] == f"{x_bytes / 1e6:.2f} MB"
    assert values["the formulas need (this project's engine)"] == f"{(engine.stored * 8 + engine.fixed) / 1e6:.2f} MB"
    kept = figures(at)["layer_kept_chart"]
    assert trace_named(kept, "PyTorch keeps")["x"][-1].startswith("statistics")
    assert trace_named(kept, "PyTorch keeps")["y"][-1] == pytest.approx(stats / 1e6)
    assert any("dL/dx needs x̂ even with γ and β frozen" in c.value for c in at.caption)
    assert any(r"\gamma" in e.value for e in at.get("latex"))


def test_why_frozen_statistics_norm_is_affine():
    at = open_app(WHY, norm="bn-frozen")
    at.selectbox(key="why_layer").set_value(NORM).run()
    assert_clean(at)
    assert metrics(at)["the formulas need (this project's engine)"] == "0.00 MB"
    assert any("affine in x: dL/dx needs nothing kept" in c.value for c in at.caption)
    assert "paper's rule (keep nothing while the scale is frozen) is exact here" in markdown(at)


def test_why_network_split_equals_library():
    at = open_app(WHY)
    fig = figures(at)["network_split_chart"]
    acts = trace_named(fig, "activations")
    assert acts["x"] == list(POLICIES)
    assert acts["y"] == pytest.approx([report(p).activation_mb for p in POLICIES])
    trainable = trace_named(fig, "trainable params")
    assert trainable["y"] == pytest.approx([report(p).trainable_param_bytes / 1e6 for p in POLICIES])
    peaks = {row["policy"]: row["peak layer"] for _, row in at.dataframe[-1].value.iterrows()}
    assert peaks == {p: report(p).peak_layer for p in POLICIES}


def test_why_summary_follows_the_view():
    at = open_app(WHY)
    full, bias = report("full"), report("bias")
    text = markdown(at)
    assert f"({full.activation_mb / bias.activation_mb:.1f}x less)" in text
    assert "stores frozen weights at 8 bits" in text
    assert f"all peak at `{bias.peak_layer}`" in text and "outweigh what earlier layers have kept" in text

    at.radio(key="why_view").set_value("pytorch").run()
    assert_clean(at)
    full, bias = report("full", view="pytorch"), report("bias", view="pytorch")
    text = markdown(at)
    assert "8 bits" not in text and "keeps frozen weights at 32 bits" in text
    assert f"keeps about the same activations (**{bias.activation_mb:.1f} MB**, " \
           f"{full.activation_mb / bias.activation_mb:.2f}x)" in text


def test_why_explains_the_exact_engine_against_the_paper_under_group_norm():
    at = open_app(WHY)
    paper, exact = report("bias"), report("bias", view="engine", mode="exact")
    recompute = report("bias", view="engine", mode="recompute")
    norm_kept = sum(r.stored_bytes * 8 + r.fixed_bytes for r in exact.layers if r.kind == "norm")
    text = markdown(at)
    assert f"peak at **{paper.activation_mb:.1f} MB**" in text
    assert f"peaks at **{exact.activation_mb:.1f} MB** (`{exact.peak_layer}`)" in text
    assert f"**{norm_kept / 1e6:.1f} MB** of what the engine keeps is x̂ and 1/σ" in text
    assert f"peaks at **{recompute.activation_mb:.1f} MB**" in text
    assert norm_kept > 0.9 * (exact.stored_activation_bytes - paper.stored_activation_bytes)  # the norms are the gap


def test_why_bad_batch_shows_error():
    at = open_app(WHY, batch="0")
    assert not at.exception
    assert any("batch size must be an integer >= 1" in e.value for e in at.error)
