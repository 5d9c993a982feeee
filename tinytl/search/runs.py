"""Fine-tune one sub-net (extracted from the adapted super-net) as a recorded run, and read measured accuracies back.

Runs go through the fine-tune engineer's runner and run store; the sub-net is recorded in the run's settings
(key "subnet"), so a page can put measured accuracy next to the predictor's.
"""

from __future__ import annotations

import threading

import torch
from torch.utils.data import DataLoader

from tinytl.data import load_dataset
from tinytl.memory import VIEWS, profile_memory
from tinytl.models.supernet import SubnetConfig, parse_subnet
from tinytl.policies import apply_policy
from tinytl.train.adapt import DEFAULT_ADAPTED, load_adapted
from tinytl.train.checkpoint import LoadReport
from tinytl.train.recipe import FinetuneSettings, convert_for_engine, engine_mode
from tinytl.train.runner import PreparedRun, execute_run
from tinytl.train.store import RunStore


def prepare_subnet_run(config: SubnetConfig, resolution: int, epochs: int = 2, batch_size: int = 32,
                       policy: str = "lite+bias", dataset: str = "digits", adapted: str | None = None,
                       seed: int = 0) -> PreparedRun:
    """A fine-tune of the sub-net that inherits the adapted super-net's weights, on the adaptation's dataset."""
    settings = FinetuneSettings(backbone="supernet", policy=policy, dataset=dataset,
                                weights=str(adapted or DEFAULT_ADAPTED.name), epochs=epochs, resolution=resolution,
                                batch_size=batch_size, seed=seed).validate()
    torch.manual_seed(seed)
    data = load_dataset(dataset, resolution, seed=seed)
    supernet = load_adapted(adapted)
    model = supernet.extract(config)
    apply_policy(model, policy)
    model = convert_for_engine(model, settings)
    predicted = {view: profile_memory("supernet", policy, resolution, batch_size, data.num_classes, view=view,
                                      subnet=config, **({"mode": engine_mode(settings.engine)}
                                                        if view == "engine" else {})).total_mb for view in VIEWS}
    train_loader = DataLoader(data.train, batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    return PreparedRun(settings, data, model, LoadReport(settings.weights, len(model.state_dict()), ()),
                       train_loader, DataLoader(data.test, 256), predicted)


def start_subnet_run(run: PreparedRun, config: SubnetConfig, store: RunStore) -> int:
    """Record the run (its settings carry the sub-net) and train it in a daemon thread; return its id."""
    run_id = store.create_run({**run.settings.to_dict(), "subnet": config.to_dict()}, run.total_steps)

    def work() -> None:
        try:
            execute_run(run, store, run_id)
        except Exception:  # execute_run records the failure in the store
            return

    threading.Thread(target=work, name=f"tinytl-subnet-run-{run_id}", daemon=True).start()
    return run_id


def measured_accuracy(store: RunStore) -> dict[tuple[str, int], dict]:
    """(canonical sub-net JSON, resolution) -> the latest finished run's id, accuracy and policy."""
    found: dict[tuple[str, int], dict] = {}
    for run in sorted(store.list_runs(), key=lambda r: r["id"]):
        settings = run["settings"]
        if settings.get("subnet") is None or run["status"] != "done" or run["final_accuracy"] is None:
            continue
        key = (parse_subnet(settings["subnet"]).canonical().to_json(), int(settings["resolution"]))
        found[key] = {"run_id": run["id"], "accuracy": run["final_accuracy"], "policy": settings["policy"]}
    return found
