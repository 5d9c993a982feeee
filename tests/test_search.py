"""Evolutionary search: front within budget, figures equal the memory command, unreachable budgets refused."""

import json

import numpy as np
import pytest

from tinytl import TinyTLError
from tinytl.cli import main
from tinytl.search.evolution import SearchSettings, pareto_front, search_subnets
from tinytl.search.predictor import save_predictor, train_predictor

from tests.test_predictor import synthetic_pairs


@pytest.fixture(scope="module")
def predictor():
    return train_predictor(synthetic_pairs(120, (32, 48, 64)), epochs=100)


def test_pareto_front():
    memory = np.array([5.0, 4.0, 6.0, 4.0, 7.0])
    acc = np.array([0.8, 0.7, 0.75, 0.6, 0.9])
    assert list(pareto_front(memory, acc)) == [1, 0, 4]


def test_default_search_front_within_budget(predictor):
    out = search_subnets(9.0, predictor, "lite+bias", 8, 10)
    assert out["search"]["population"] == 100 and out["search"]["iterations"] == 500
    front = out["front"]
    assert front and all(p["memory_mb"] <= 9.0 for p in front)
    mem = [p["memory_mb"] for p in front]
    acc = [p["predicted_accuracy"] for p in front]
    assert mem == sorted(mem) and acc == sorted(acc)  # a front: more memory only for more accuracy
    assert out["best"] == front[-1]
    assert set(out["predictor"]) >= {"rmse", "kendall_tau"}


def test_cli_search_figure_equals_memory_command(predictor, tmp_path, capsys):
    path = tmp_path / "pred.pt"
    save_predictor(predictor, path, {"classes": 10})
    assert main(["search", "--budget-mb", "8", "--predictor", str(path), "--batch-size", "4",
                 "--resolutions", "32,64", "--iterations", "30", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["batch_size"] == 4 and out["classes"] == 10 and out["resolutions"] == [32, 64]
    for p in (out["front"][0], out["best"]):
        assert p["memory_mb"] <= 8 and p["resolution"] in (32, 64)
        assert main(["memory", "--backbone", "supernet", "--subnet", json.dumps(p["subnet"]), "--json",
                     "--resolution", str(p["resolution"]), "--batch-size", "4", "--classes", "10"]) == 0
        assert json.loads(capsys.readouterr().out)["total_mb"] == p["memory_mb"]


def test_unreachable_budget_is_refused(predictor, tmp_path, capsys):
    with pytest.raises(TinyTLError, match="smallest reachable training memory is"):
        search_subnets(0.1, predictor, settings=SearchSettings(iterations=1))
    path = tmp_path / "pred.pt"
    save_predictor(predictor, path, {"classes": 10})
    assert main(["search", "--budget-mb", "0.1", "--predictor", str(path)]) == 2
    err = capsys.readouterr().err
    assert "unreachable" in err and "MB" in err
    assert main(["search", "--budget-mb", "9", "--predictor", str(path), "--resolutions", "224"]) == 2
    assert "trained at resolutions" in capsys.readouterr().err


def test_tight_budget_terminates(predictor):
    smallest = search_subnets(100.0, predictor, settings=SearchSettings(iterations=1))["smallest_mb"]
    out = search_subnets(smallest + 1e-6, predictor, settings=SearchSettings(iterations=5))
    assert all(p["memory_mb"] <= smallest + 1e-6 for p in out["front"])
