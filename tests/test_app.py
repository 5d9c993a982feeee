"""The explorer app under streamlit's AppTest: what each page shows equals the library's numbers."""

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from explorer.compute import variants
from explorer.paper_values import TABLE2_MB
from tinytl.devices import DEVICES, check_budget, custom_device
from tinytl.memory import VIEWS, analyze, cached_trace
from tinytl.policies import POLICIES
from tinytl.models.setting import ModelSetting

APP = str(Path(__file__).resolve().parents[1] / "app.py")
MEMORY, COMPARE = "explorer/pages/memory.py", "explorer/pages/compare.py"


def open_app(page: str = MEMORY, **query: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params.update(query)
    if page != MEMORY:
        at.switch_page(page)
    return at.run()


def figures(at: AppTest) -> dict[str, dict]:
    """Plotly figures on the page by their widget key (their JSON, as the browser receives it)."""
    return {el.proto.id.rsplit("-", 1)[-1]: json.loads(el.proto.spec) for el in at.get("plotly_chart")}


def decoded(value):
    """Plotly's JSON stores numpy arrays as {'dtype', 'bdata'} (base64); lists stay lists."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"])).tolist()
    return value


def trace_named(fig: dict, name: str) -> dict:
    """A figure's trace by legend name, with x/y decoded to lists."""
    found = next(t for t in fig["data"] if t.get("name") == name)
    return {**found, **{k: decoded(found[k]) for k in ("x", "y") if k in found}}


def headline(at: AppTest) -> dict[str, str]:
    titles = {v.title for v in variants()}
    return {m.label: m.value for m in at.metric if m.label in titles}


def report(policy: str, resolution: int = 224, batch: int = 8, view: str = "paper", classes: int = 102,
           lite: bool = True, bits: int = 8, **options):
    trace = cached_trace(ModelSetting("proxylessnas_mobile", resolution, classes, lite, "gn"))
    return analyze(trace, policy, batch, bits, view, **options)


def variant_report(variant, policy: str, **settings):
    return report(policy, view=variant.view, **settings, **dict(variant.options))


PAPER = VIEWS["paper"].title


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


# --- Memory page ---

def test_memory_headline_equals_library_for_every_view():
    at = open_app()
    assert_clean(at)
    shown = headline(at)
    assert set(shown) == {v.title for v in variants()} and len(shown) >= len(VIEWS)
    for v in variants():
        r, full = variant_report(v, "lite+bias"), variant_report(v, "full")
        assert shown[v.title] == f"{r.total_mb:.2f} MB"
        delta = next(m.delta for m in at.metric if m.label == v.title)
        assert delta == f"{(r.total_bytes / full.total_bytes - 1) * 100:+.1f}% vs full"
    assert shown[PAPER] == "37.07 MB"  # paper Table 2: 37.1


def test_memory_policy_batch_resolution_changes_update_numbers_and_charts():
    at = open_app()
    at.selectbox(key="policy").set_value("bias").run()
    at.number_input(key="batch_size").set_value(2).run()
    at.number_input(key="resolution").set_value(160).run()
    assert_clean(at)
    r = report("bias", resolution=160, batch=2)
    assert headline(at)[PAPER] == f"{r.total_mb:.2f} MB"
    fig = figures(at)["layer_chart"]
    frame = r.to_frame()
    assert trace_named(fig, "memory while it runs (running total)")["y"] == pytest.approx(
        list(frame["live_bytes"] / 1e6))
    assert trace_named(fig, "stored for backward (this layer)")["y"] == pytest.approx(
        list(frame["stored_bytes"] * 2 / 1e6))
    peak = trace_named(fig, "peak")
    assert peak["x"] == [r.peak_index] and peak["y"] == pytest.approx([r.activation_mb])
    assert r.peak_layer in fig["layout"]["title"]["text"]
    assert at.query_params["policy"] == "bias" and at.query_params["res"] == "160"


def test_memory_parameter_breakdown_and_tables_match_report():
    at = open_app(policy="bias")
    assert_clean(at)
    r = report("bias")
    fig = figures(at)["param_chart"]
    assert sum(trace_named(fig, "trainable (32-bit)")["y"]) == pytest.approx(r.trainable_param_bytes / 1e6)
    assert sum(trace_named(fig, "frozen (8-bit)")["y"]) == pytest.approx(r.frozen_param_bytes / 1e6)
    layers, budgets = (d.value for d in at.dataframe)
    assert list(layers["layer"]) == [row.name for row in r.layers]
    assert list(layers["live MB"]) == pytest.approx([row.live_bytes / 1e6 for row in r.layers])
    devices = [*DEVICES, custom_device(50.0)]
    assert list(budgets["device"]) == [d.name for d in devices]
    checks = [check_budget(r, d) for d in devices]
    assert list(budgets["verdict"]) == [c.verdict for c in checks]
    assert list(budgets["largest batch"]) == [c.largest_batch for c in checks]
    assert list(budgets["headroom MB"]) == pytest.approx([c.headroom_mb for c in checks])
    for v in variants()[1:]:
        other = [check_budget(variant_report(v, "bias"), d).verdict for d in devices]
        assert list(budgets[f"verdict · {v.key}"]) == other
    assert {b.label for b in at.get("download_button")} == {"Download CSV", "Download JSON"}


def test_memory_verdict_terms_per_view_and_the_view_the_verdicts_use():
    at = open_app(policy="bias", view="pytorch", optimizer="sgd-momentum")
    assert_clean(at)
    chosen = next(v for v in variants() if v.key == "pytorch")
    pi = next(d for d in DEVICES if d.name == "Raspberry Pi Zero / Zero 2 W")  # the breakdown's default device
    terms = at.table[0].value
    assert list(terms.columns) == [v.title for v in variants()]
    for v in variants():
        r = variant_report(v, "bias")
        check = check_budget(r, pi, "sgd-momentum")
        shown = terms[v.title]
        assert shown["used by the verdicts"] == ("yes" if v == chosen else "no")
        assert shown["gradients MB"] == f"{4 * r.num_trainable_params / 1e6:,.3f}"  # one fp32 gradient each
        assert shown["optimizer state (sgd-momentum) MB"] == f"{4 * r.num_trainable_params / 1e6:,.3f}"  # 1 moment
        assert shown["reserve MB"] == f"{pi.reserve_bytes / 1e6:,.3f}"
        assert shown["total MB"] == f"{check.total_mb:,.3f}"
        assert (shown["verdict"], shown["largest batch"]) == (check.verdict, str(check.largest_batch))
        training = f"{check.terms.training_bytes / 1e6:.2f} MB"
        card = [c.value for c in at.caption if "Device verdicts use" in c.value and training in c.value]
        assert len(card) == 1
        assert ("Device verdicts use this view" in card[0]) == (v == chosen)
    r = variant_report(chosen, "bias")
    check = check_budget(r, pi, "sgd-momentum")
    sentence = next(m.value for m in at.markdown if "The verdicts in the table above" in m.value)
    assert f"use the **{chosen.title}** view's total" in sentence
    assert f"= **{check.total_mb:.2f} MB** of {pi.budget_mb:.2f} MB: **{check.verdict}**" in sentence
    budgets = at.dataframe[1].value
    devices = [*DEVICES, custom_device(50.0)]
    checks = [check_budget(r, d, "sgd-momentum") for d in devices]
    assert list(budgets["reserve MB"]) == pytest.approx([d.reserve_bytes / 1e6 for d in devices])
    assert list(budgets["total MB"]) == pytest.approx([c.total_mb for c in checks])
    assert list(budgets["verdict"]) == [c.verdict for c in checks]
    assert at.query_params["optimizer"] == "sgd-momentum"


def test_memory_custom_policy_ticks_groups_and_kinds():
    at = open_app()
    at.selectbox(key="policy").set_value("custom").run()
    at.multiselect(key="custom_groups").set_value(["classifier.1"]).run()
    at.multiselect(key="custom_kinds").set_value(["weight", "bias"]).run()
    assert_clean(at)
    assert headline(at)[PAPER] == f"{report('last').total_mb:.2f} MB"  # the classifier only
    assert "blocks.19" in at.multiselect(key="custom_groups").options
    assert at.query_params["groups"] == "classifier.1"


def test_memory_url_reproduces_settings():
    at = open_app(policy="lite", res="288", batch="4", bits="4", view="paper")
    assert_clean(at)
    r = report("lite", resolution=288, batch=4, bits=4)
    assert headline(at)[PAPER] == f"{r.total_mb:.2f} MB"
    assert at.number_input(key="frozen_bits").value == 4


@pytest.mark.parametrize("query, reason", [
    ({"res": "0"}, "resolution must be an integer >= 32, got 0"),
    ({"batch": "0"}, "batch size must be an integer >= 1, got 0"),
    ({"bits": "40"}, "frozen bits must be an integer in 1..32"),
    ({"classes": "0"}, "classes must be an integer in 1..100000, got 0"),
    ({"lite": "0", "policy": "lite"}, "needs lite residual branches"),
])
def test_memory_bad_settings_show_the_reason_and_recover(query, reason):
    at = open_app(**query)
    assert not at.exception
    assert any(reason in e.value for e in at.error), [e.value for e in at.error]
    assert at.sidebar.selectbox(key="backbone").value == "proxylessnas_mobile"  # the sidebar still works
    at.query_params.clear()
    fixes = {"res": ("resolution", 224), "batch": ("batch_size", 8), "bits": ("frozen_bits", 8),
             "classes": ("classes", 102)}
    for key in query:
        if key in fixes:
            at.number_input(key=fixes[key][0]).set_value(fixes[key][1])
    if "lite" in query:
        at.toggle(key="lite_residual").set_value(True)
    at.run()
    assert_clean(at)
    assert headline(at)[PAPER] == f"{report('lite' if 'policy' in query else 'lite+bias').total_mb:.2f} MB"


def test_memory_unknown_backbone_in_url_falls_back_with_reason():
    at = open_app(backbone="not_a_net", batch="abc")
    assert not at.exception
    errors = " | ".join(e.value for e in at.error)
    assert "unknown backbone 'not_a_net'" in errors and "batch size must be an integer, got 'abc'" in errors
    assert headline(at)[PAPER] == "37.07 MB"  # the rest of the page works on the defaults


# --- Compare page ---

def test_compare_bars_equal_library_with_paper_markers():
    at = open_app(COMPARE)
    assert_clean(at)
    figs = figures(at)
    bars = figs["policy_bars"]
    for v in variants():
        bar = trace_named(bars, v.title)
        assert bar["x"] == list(POLICIES)
        assert bar["y"] == pytest.approx([variant_report(v, p).total_mb for p in POLICIES])
    marks = trace_named(bars, "paper (reported, Table 2)")
    assert dict(zip(marks["x"], marks["y"])) == TABLE2_MB
    lines = figs["resolution_lines"]
    full = trace_named(lines, "full")
    assert 224 in full["x"] and 320 in full["x"]
    assert full["y"][full["x"].index(320)] == pytest.approx(report("full", resolution=320).total_mb)
    lb320 = trace_named(lines, "lite+bias: paper (reported)")
    assert dict(zip(lb320["x"], lb320["y"])) == {224: 37.1, 320: 65.0}
    by_batch = trace_named(figs["batch_lines"], "bias")
    assert by_batch["y"][by_batch["x"].index(1)] == pytest.approx(report("bias", batch=1).total_mb)


def test_compare_off_paper_setting_has_no_markers_and_skips_lite_without_branches():
    at = open_app(COMPARE, lite="0", batch="4")
    assert not at.exception and not at.error
    assert {w.value.split(" ")[0] for w in at.warning} == {"lite", "lite+bias"}
    bars = figures(at)["policy_bars"]
    assert all("paper (reported" not in t.get("name", "") for t in bars["data"])
    assert trace_named(bars, PAPER)["x"] == ["full", "last", "norm+last", "bias"]


def test_compare_bad_resolution_shows_error():
    at = open_app(COMPARE, res="0")
    assert not at.exception
    assert any("resolution must be an integer >= 32" in e.value for e in at.error)
