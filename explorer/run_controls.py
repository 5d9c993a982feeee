"""The runs still running, from any session or the CLI, each with its progress and a Cancel button
(shared by the Fine-tune and Runs pages, so a run nobody watches can still be found and stopped)."""

from __future__ import annotations

import streamlit as st

from tinytl.train.store import RunStore
from tinytl.train.tables import run_label


def cancel_key(prefix: str, run_id: int) -> str:
    """The widget key of one run's Cancel button on a page."""
    return f"{prefix}_cancel_{run_id}"


def running_runs_panel(store: RunStore, running: list[dict], prefix: str, watched: int | None = None) -> None:
    """One line per running run: label, step progress, Cancel (asks the run to stop at its next step)."""
    for run in running:
        total = max(run["total_steps"] or 1, 1)
        text = f"{run_label(run)}: step {run['step']} of {total}" + (" (shown below)" if run["id"] == watched else "")
        if run["cancel_requested"]:
            text += ", cancel requested"
        left, right = st.columns([5, 1], vertical_alignment="center")
        left.progress(min(run["step"] / total, 1.0), text=text)
        if right.button("Cancel", key=cancel_key(prefix, run["id"]), disabled=run["cancel_requested"]):
            if store.request_cancel(run["id"]):
                st.toast(f"Cancel requested for run #{run['id']}: it stops at its next step.")
