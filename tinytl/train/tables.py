"""Run-store records as pandas tables: one row per run, and one row per (run, epoch) for curves."""

from __future__ import annotations

import time

import pandas as pd

from tinytl.train.recipe import realised_view

RUN_TABLE_COLUMNS = ["id", "status", "policy", "dataset", "weights", "engine", "epochs", "resolution", "batch_size",
                     "test_accuracy", "measured_peak_mb", "saved_activation_mb", "predicted_mb",
                     "predicted_realised_mb", "train_seconds", "created"]


def run_label(run: dict) -> str:
    """A short name for a run in legends: '#12 lite+bias (shipped)'."""
    s = run["settings"]
    return f"#{run['id']} {s.get('policy')} ({s.get('weights')})"


def realised_prediction(run: dict) -> float | None:
    """The prediction of the view that models the run's engine (pytorch view for stock PyTorch, else engine view)."""
    return (run.get("predicted") or {}).get(realised_view(run["settings"].get("engine", "pytorch")))


def runs_frame(runs: list[dict]) -> pd.DataFrame:
    """One row per run: settings, status, held-out accuracy and memory in decimal MB (paper view and the view
    of the engine that ran, beside the measured peak)."""
    rows = []
    for r in runs:
        s = r["settings"]
        rows.append({
            "id": r["id"], "status": r["status"], "policy": s.get("policy"), "dataset": s.get("dataset"),
            "weights": s.get("weights"), "engine": s.get("engine"), "epochs": s.get("epochs"),
            "resolution": s.get("resolution"), "batch_size": s.get("batch_size"),
            "test_accuracy": r["final_accuracy"],
            "measured_peak_mb": r["measured_peak_bytes"] / 1e6 if r["measured_peak_bytes"] else None,
            "saved_activation_mb": r["saved_activation_bytes"] / 1e6 if r["saved_activation_bytes"] else None,
            "predicted_mb": r["predicted_memory_mb"], "predicted_realised_mb": realised_prediction(r),
            "train_seconds": r["train_seconds"],
            "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["created"])),
        })
    return pd.DataFrame(rows, columns=RUN_TABLE_COLUMNS)


def history_frame(runs: list[dict]) -> pd.DataFrame:
    """One row per (run, epoch) with the run's label, for overlaid loss / accuracy curves."""
    rows = [{"run": run_label(r), "id": r["id"], **e} for r in runs for e in r["history"]]
    return pd.DataFrame(rows, columns=["run", "id", "epoch", "train_loss", "train_accuracy", "test_loss",
                                       "test_accuracy", "seconds", "lr", "steps"])
