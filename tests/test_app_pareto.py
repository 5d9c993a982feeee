"""The Pareto page through Streamlit's AppTest: chart traces, budget styling, search with progress, inspection."""

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tinytl.paths import APP_PATHS_ENV
from tinytl.search.predictor import save_predictor, train_predictor

from tests.test_predictor import synthetic_pairs

PAGE = Path(__file__).resolve().parents[1] / "explorer" / "pages" / "pareto.py"


@pytest.fixture(scope="module")
def predictor_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pareto") / "predictor.pt"
    model = train_predictor(synthetic_pairs(80, (32, 48)), epochs=60)
    save_predictor(model, path, {"classes": 10, "dataset": "synthetic", "pairs": 80})
    return str(path)


def _figure(at, key="pareto_chart"):
    charts = [c for c in at.get("plotly_chart") if c.proto.id and key in c.proto.id] or at.get("plotly_chart")
    return json.loads(charts[0].proto.spec)


def test_pareto_page_search_and_inspect(predictor_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TINYTL_HOME", str(tmp_path))
    monkeypatch.setenv(APP_PATHS_ENV, str(Path(predictor_file).parent))
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    at.run()
    at.text_input(key="pareto_predictor").set_value(predictor_file).run()
    at.number_input(key="pareto_budget").set_value(7.0).run()
    at.slider(key="pareto_samples").set_value(100).run()
    assert not at.exception and not at.error
    fig = _figure(at)
    names = [t.get("name") for t in fig["data"]]
    assert {"within budget", "over budget", "Pareto front"} <= set(names)
    within = next(t for t in fig["data"] if t["name"] == "within budget")
    over = next(t for t in fig["data"] if t["name"] == "over budget")
    assert all(x <= 7.0 for x in within["x"]) and all(x > 7.0 for x in over["x"])
    assert len(within["x"]) + len(over["x"]) == 100
    assert any(s.get("type") == "line" and s["x0"] == 7.0 for s in fig["layout"]["shapes"])  # budget line

    at.toggle(key="pareto_dominated").set_value(False).run()
    fewer = _figure(at)
    assert sum(len(t["x"]) for t in fewer["data"][:2]) < 100

    at.number_input(key="pareto_iterations").set_value(20).run()
    at.button(key="pareto_run_search").click().run()
    assert not at.exception and not at.error
    assert any("Best within 7 MB" in s.value for s in at.success)
    front = next(t for t in _figure(at)["data"] if t["name"] == "Pareto front")
    assert front["x"] and max(front["x"]) <= 7.0
    best = next(t for t in _figure(at)["data"] if t["name"] == "searched best")
    assert best["y"] == [max(front["y"])] and best["x"][0] <= 7.0

    pick = at.selectbox(key="pareto_pick")
    pick.set_value(pick.options[-1]).run()
    assert any("Training memory" in m.label for m in at.metric)
    layer_fig = json.loads(at.get("plotly_chart")[-1].proto.spec)
    assert "peak" in layer_fig["layout"]["title"]["text"]

    # "measure this point": inherited-weight test accuracy beside the prediction, as `evaluate` computes it
    at.button(key="pareto_measure").click().run()
    assert not at.exception and not at.error
    measured = next(m for m in at.metric if m.label == "Measured accuracy")
    subnet = next(c.value for c in at.code)
    from tinytl.models.supernet import parse_subnet
    from tinytl.train.adapt import load_adapted, subnet_test_accuracy

    resolution = int(at.subheader[0].value.split()[-2])
    expected = subnet_test_accuracy(load_adapted(), parse_subnet(subnet), resolution)["accuracy"]
    assert measured.value == f"{expected:.1%}"
    assert any(m.label == "Predicted accuracy" for m in at.metric)
