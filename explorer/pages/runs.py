"""Runs: every recorded fine-tune, overlaid curves, accuracy vs measured memory, delete, CSV export."""

import plotly.express as px
import streamlit as st

from explorer.run_controls import running_runs_panel
from tinytl.errors import TinyTLError
from tinytl.train.store import RunStore
from tinytl.train.tables import history_frame, run_label, runs_frame

st.title("Runs")
st.caption("Every fine-tune recorded in the run store (CLI and app alike). Memory is measured on one real "
           "training step; 'predicted (paper)' is the paper view's theory for the same setting, 'predicted "
           "(realised)' the view of the engine that ran (pytorch view for stock PyTorch, engine view for tinytl). "
           "A run ends done, cancelled, failed (an error, with its message) or killed (its process ended without "
           "recording an end: kill -9, out of memory, the machine stopped).")
try:
    store = RunStore()
    st.caption(f"Store: `{store.path}`")
    runs = store.list_runs()
except TinyTLError as err:  # a damaged or unusable store file: say so, the rest of the app goes on
    st.error(str(err))
    st.stop()
if not runs:
    st.info("No runs yet: start one on the Fine-tune page or with `python -m tinytl finetune`.")
    st.stop()
running_ids = [r["id"] for r in runs if r["status"] == "running"]


@st.fragment(run_every=1.0 if running_ids else None)
def running_now() -> None:
    """The runs still running (any session, the CLI too), each with Cancel, refreshed every second."""
    try:
        now = store.running_runs()
    except TinyTLError as err:
        st.error(str(err))
        return
    if [r["id"] for r in now] != running_ids:
        st.rerun()  # one started or ended: redraw the table and charts too
    if now:
        st.subheader("Running now")
        running_runs_panel(store, now, "runs")


running_now()

table = runs_frame(runs)
number, one_decimal = st.column_config.NumberColumn, "%.1f"
st.dataframe(table, hide_index=True, key="runs_table", column_config={
    "batch_size": "batch", "test_accuracy": number("test accuracy", format="%.3f"),
    "measured_peak_mb": number("measured peak MB", format=one_decimal),
    "saved_activation_mb": number("saved act. MB", format=one_decimal),
    "predicted_mb": number("predicted (paper) MB", format=one_decimal),
    "predicted_realised_mb": number("predicted (realised) MB", format=one_decimal),
    "train_seconds": number("train s", format="%.0f")})
st.download_button("Download CSV", table.to_csv(index=False), "tinytl_runs.csv", "text/csv", key="runs_csv")

by_id = {r["id"]: r for r in runs}
default = [r["id"] for r in runs if r["history"]][:4]
chosen = st.multiselect("Runs to compare", list(by_id), default=default, key="runs_selected",
                        format_func=lambda i: run_label(by_id[i]))
picked = [by_id[i] for i in chosen]
history = history_frame(picked)
if not history.empty:
    left, right = st.columns(2)
    left.plotly_chart(px.line(history, x="epoch", y="test_accuracy", color="run", markers=True,
                              title="Held-out accuracy per epoch", range_y=[0, 1]), key="runs_accuracy")
    right.plotly_chart(px.line(history, x="epoch", y="train_loss", color="run", markers=True,
                               title="Training loss per epoch"), key="runs_loss")

finished = table.dropna(subset=["test_accuracy", "measured_peak_mb"])
if not finished.empty:
    scatter = px.scatter(finished, x="measured_peak_mb", y="test_accuracy", color="policy", symbol="weights",
                         hover_data=["id", "dataset", "resolution", "batch_size", "predicted_mb", "status"],
                         title="Accuracy vs measured peak memory (one training step)", render_mode="svg")
    scatter.update_xaxes(title_text="measured peak MB")
    st.plotly_chart(scatter, key="runs_scatter")

if chosen and st.button(f"Delete {len(chosen)} selected run(s)", key="runs_delete"):
    try:
        removed = store.delete_runs(chosen)
    except TinyTLError as err:
        st.error(str(err))
    else:
        st.session_state.pop("runs_selected", None)
        st.toast(f"Deleted {removed} run(s).")
        st.rerun()
