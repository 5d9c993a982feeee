"""Measured accuracies of sub-net fine-tunes, read back from the run store for the Pareto page.

A sub-net run is an ordinary fine-tune (`FinetuneSettings(backbone="supernet", subnet=...)`, one run path);
its settings carry the sub-net, so measured accuracy can sit next to the predictor's.
"""

from __future__ import annotations

from tinytl.models.supernet import parse_subnet
from tinytl.train.store import RunStore


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
