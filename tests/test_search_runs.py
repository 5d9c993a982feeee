"""A sub-net fine-tune is an ordinary run: it carries its sub-net in the store, honours every run setting, and
its accuracy is read back for the Pareto page."""

import json

import pytest
import torch

from tinytl.cli import main
from tinytl.errors import TinyTLError
from tinytl.models.supernet import ProxylessSuperNet, save_supernet, smallest_subnet
from tinytl.models.supernet_warmstart import proxyless_subnet
from tinytl.search.runs import measured_accuracy
from tinytl.train.adapt import load_adapted, save_adapted
from tinytl.train.recipe import FinetuneSettings
from tinytl.train.runner import execute_run, prepare_run
from tinytl.train.store import RunStore


@pytest.fixture
def adapted(tmp_path):
    torch.manual_seed(0)
    net = ProxylessSuperNet(10)
    save_supernet(net, tmp_path / "supernet.pt", {"made_by": "test"})
    save_adapted(net, tmp_path / "adapted.pt", tmp_path / "supernet.pt", {"made_by": "test", "dataset": "digits"})
    stored = net.classifier[1].weight.detach().half().float()  # adapted tensors are kept in fp16
    assert torch.equal(load_adapted(tmp_path / "adapted.pt").classifier[1].weight, stored)
    return str(tmp_path / "adapted.pt")


def test_subnet_run_is_recorded_and_read_back(tmp_path, adapted):
    config = smallest_subnet()
    run = prepare_run(FinetuneSettings(backbone="supernet", subnet=config.to_json(), weights=adapted, epochs=1,
                                       resolution=32, batch_size=128, lr=2e-3, label_smoothing=0.0))
    assert run.predicted["paper"] > 0 and run.settings.subnet == config.canonical().to_json()
    store = RunStore(tmp_path / "runs.sqlite")
    summary = execute_run(run, store)
    assert summary["lr"] == 2e-3 and summary["label_smoothing"] == 0.0  # the run's settings are honoured
    assert measured_accuracy(store) == {(config.canonical().to_json(), 32): {
        "run_id": summary["run_id"], "accuracy": summary["final_accuracy"], "policy": "lite+bias"}}


def test_subnet_runs_price_frozen_weights_as_other_runs(adapted):
    """Frozen weights are priced at 32 bits unless --frozen-bits says otherwise, as for every backbone."""
    settings = FinetuneSettings(backbone="supernet", subnet=smallest_subnet().to_json(), weights=adapted,
                                resolution=32, engine="tinytl")
    fp32, int8 = (prepare_run(FinetuneSettings.from_dict({**settings.to_dict(), "frozen_bits": bits})).predicted
                  for bits in (None, 8))
    assert int8["paper"] < fp32["paper"]


@pytest.mark.parametrize("change, message", [
    ({"norm": "bn"}, "norm"), ({"lite_residual": False}, "lite residual"), ({"dataset": "glyphs"}, "dataset"),
    ({"weights": "none"}, "inherits"), ({"subnet": None}, "needs a sub-net"),
    ({"backbone": "proxylessnas_mobile"}, "only to backbone supernet")])
def test_subnet_run_refuses_settings_it_cannot_honour(adapted, change, message):
    values = {**FinetuneSettings(backbone="supernet", subnet=smallest_subnet().to_json(), weights=adapted,
                                 resolution=32).to_dict(), **change}
    with pytest.raises(TinyTLError, match=message):
        prepare_run(FinetuneSettings.from_dict(values))


def test_subnet_finetune_engine_keeps_less_than_stock(capsys):
    """`finetune --backbone supernet --subnet ... --engine tinytl` peaks lower than the same run on stock PyTorch."""
    peaks = {}
    for engine in ("tinytl", "pytorch"):
        assert main(["finetune", "--backbone", "supernet", "--subnet", proxyless_subnet().to_json(), "--engine",
                     engine, "--policy", "bias", "--norm", "gn", "--resolution", "48", "--batch-size", "16",
                     "--epochs", "1", "--max-steps", "1", "--no-store", "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["settings"]["engine"] == engine
        peaks[engine] = summary["measured_peak_bytes"]
    assert 0 < peaks["tinytl"] < peaks["pytorch"]
