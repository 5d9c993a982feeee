"""A sub-net fine-tune recorded in the run store carries its sub-net, and its accuracy is read back for the page."""

import torch

from tinytl.models.supernet import ProxylessSuperNet, save_supernet, smallest_subnet
from tinytl.train.adapt import load_adapted, save_adapted
from tinytl.search.runs import measured_accuracy, prepare_subnet_run
from tinytl.train.runner import execute_run
from tinytl.train.store import RunStore


def test_subnet_run_is_recorded_and_read_back(tmp_path):
    torch.manual_seed(0)
    net = ProxylessSuperNet(10)
    save_supernet(net, tmp_path / "supernet.pt", {"made_by": "test"})
    save_adapted(net, tmp_path / "adapted.pt", tmp_path / "supernet.pt", {"made_by": "test"})
    stored = net.classifier[1].weight.detach().half().float()  # adapted tensors are kept in fp16
    assert torch.equal(load_adapted(tmp_path / "adapted.pt").classifier[1].weight, stored)

    config = smallest_subnet()
    run = prepare_subnet_run(config, 32, epochs=1, batch_size=128, adapted=str(tmp_path / "adapted.pt"))
    assert run.predicted["paper"] > 0 and run.settings.backbone == "supernet"
    store = RunStore(tmp_path / "runs.sqlite")
    run_id = store.create_run({**run.settings.to_dict(), "subnet": config.to_dict()}, run.total_steps)
    summary = execute_run(run, store, run_id)
    found = measured_accuracy(store)
    assert found == {(config.canonical().to_json(), 32): {"run_id": run_id, "accuracy": summary["final_accuracy"],
                                                          "policy": "lite+bias"}}
