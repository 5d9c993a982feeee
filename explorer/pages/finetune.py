"""Fine-tune: start a short real training run, watch its curves live, cancel it (it runs on in the background)."""

from itertools import accumulate

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from explorer.run_controls import running_runs_panel
from tinytl.data import DATASETS
from tinytl.errors import TinyTLError
from tinytl.paths import APP_PATHS_ENV, app_path_roots, check_app_path
from tinytl.policies import PAPER_NAMES, POLICIES
from tinytl.train.recipe import ENGINES, FinetuneSettings, realised_view
from tinytl.train.runner import prepare_run, start_background
from tinytl.train.store import RunStore
from tinytl.train.tables import realised_prediction

RUN_KEY = "ft_run_id"
WEIGHTS = ("shipped", "none", "file")
DEFAULTS = FinetuneSettings()
ENGINE_LABELS = {"auto": "auto: the engine, leanest mode for the norm", "pytorch": "stock PyTorch",
                 "tinytl": "engine, exact", "tinytl-recompute": "engine, recompute"}


def curves(run: dict, steps: list[dict]) -> go.Figure:
    """Training loss and accuracy of every step (each batch), with held-out loss and accuracy at each epoch's end."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    at = [s["step"] for s in steps]
    fig.add_scatter(x=at, y=[s["loss"] for s in steps], name="train loss (batch)", mode="lines", row=1, col=1)
    fig.add_scatter(x=at, y=[s["accuracy"] for s in steps], name="train accuracy (batch)", mode="lines",
                    row=1, col=2)
    ends = list(accumulate(e["steps"] for e in run["history"]))
    fig.add_scatter(x=ends, y=[e["test_loss"] for e in run["history"]], name="test loss", mode="lines+markers",
                    row=1, col=1)
    fig.add_scatter(x=ends, y=[e["test_accuracy"] for e in run["history"]], name="test accuracy",
                    mode="lines+markers", row=1, col=2)
    fig.update_xaxes(title_text="step", range=[0, max(run["total_steps"] or 1, 1)])
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    fig.update_layout(height=340, margin=dict(t=40, b=10), title=f"run #{run['id']}: {run['settings']['policy']}")
    return fig


st.title("Fine-tune")
st.caption("A short real training run on this machine's CPU with the TinyTL recipe (Adam, cosine LR per step, "
           "label smoothing, new classifier with dropout, augmentation). The default target is scikit-learn's "
           "handwritten digits; the shipped checkpoint was pretrained on procedurally drawn glyphs (no digits). "
           "The run goes on if you leave this page; see all runs on the Runs page.")
try:
    store: RunStore | None = RunStore()
    store_error = None
except TinyTLError as err:  # a damaged or unusable store file: said once, the form still works
    store, store_error = None, str(err)
    st.error(store_error)

with st.form("ft_form", enter_to_submit=False):  # Enter in a field does not start a run; the button does
    left, mid, right = st.columns(3)
    policy = left.selectbox("Policy", POLICIES, index=POLICIES.index(DEFAULTS.policy), key="ft_policy",
                            format_func=lambda p: f"{p} ({PAPER_NAMES[p]})")
    dataset = left.selectbox("Dataset", list(DATASETS), key="ft_dataset")
    where = (f"Opened only under {' or '.join(map(str, app_path_roots()))}; the environment variable "
             f"{APP_PATHS_ENV} adds folders")
    data_root = left.text_input("Data root (local datasets only)", key="ft_data_root", help=where)
    weights = mid.selectbox("Weights", WEIGHTS, key="ft_weights",
                            format_func={"shipped": "shipped glyph checkpoint", "none": "random init",
                                         "file": "state-dict file / torchvision name"}.get)
    weights_path = mid.text_input("Weights file or torchvision weight name", key="ft_weights_path", help=where)
    engine = mid.selectbox("Engine", ENGINES, index=ENGINES.index(DEFAULTS.engine), key="ft_engine",
                           format_func=ENGINE_LABELS.get)
    epochs = right.number_input("Epochs", 1, 200, DEFAULTS.epochs, key="ft_epochs")
    resolution = right.number_input("Resolution", 32, 512, DEFAULTS.resolution, step=8, key="ft_resolution")
    batch_size = right.number_input("Batch size", 1, 512, DEFAULTS.batch_size, key="ft_batch_size")
    started = st.form_submit_button("Start fine-tune", type="primary")

if started:
    settings = FinetuneSettings(policy=policy, dataset=dataset, data_root=data_root or None,
                                weights=weights_path if weights == "file" else weights, engine=engine,
                                epochs=int(epochs), resolution=int(resolution), batch_size=int(batch_size))
    try:
        if weights == "file" and not weights_path:
            raise TinyTLError("choose a weights file (or a torchvision weight name), or pick another weights option")
        if weights == "file":
            check_app_path(weights_path, "weights file", weight_names=True)
        if data_root:
            check_app_path(data_root, "data root")
        if store is None:
            raise TinyTLError(f"no run can be recorded: {store_error}")
        with st.spinner("Loading data and weights…"):
            prepared = prepare_run(settings)
        st.session_state[RUN_KEY], _ = start_background(prepared, store)
    except TinyTLError as err:
        st.error(str(err))

if store is None:
    st.stop()
try:
    running = store.running_runs()
except TinyTLError as err:  # damaged since the page opened it
    st.error(str(err))
    st.stop()
run_id = st.session_state.get(RUN_KEY) or (running[0]["id"] if running else None)  # else the newest still running
if run_id is None:
    st.info("Choose settings and start a run. Defaults: lite+bias on digits, about a minute on 2 CPU cores.")
    st.stop()
try:
    store.get_run(run_id)
except TinyTLError:  # deleted on the Runs page
    st.session_state.pop(RUN_KEY, None)
    st.rerun()
running_ids = [r["id"] for r in running]


@st.fragment(run_every=1.0 if running_ids else None)
def live_run() -> None:
    """Every running run with Cancel, then progress, memory and per-step curves of the watched run, refreshed
    from the store every second while anything runs."""
    try:
        now_running = store.running_runs()
        run = store.get_run(run_id)
        steps = store.get_steps(run_id)
    except TinyTLError as err:  # the store was damaged or removed while the page was open
        st.error(str(err))
        return
    if [r["id"] for r in now_running] != running_ids:
        st.rerun()  # a run started or ended since the page drew: redraw (and stop the timer when none runs)
    if now_running:
        st.subheader("Running now")
        running_runs_panel(store, now_running, "ft", watched=run_id)
    st.subheader(f"Run #{run_id}: {run['status']}")
    if run["status"] == "failed":
        st.error(f"run #{run_id} failed: {run['error']}")
    elif run["status"] == "killed":
        st.warning(f"run #{run_id}: {run['error']}")
    cols = st.columns(5)
    acc = run["final_accuracy"] if run["final_accuracy"] is not None else (
        run["history"][-1]["test_accuracy"] if run["history"] else None)
    cols[0].metric("Test accuracy", f"{acc:.1%}" if acc is not None else "–",
                   help="held-out accuracy after the last finished epoch")
    peak = run["measured_peak_bytes"]
    engine = run["settings"].get("engine", "pytorch")
    cols[1].metric(f"Measured peak (one step, {engine})", f"{peak / 1e6:.1f} MB" if peak else "–",
                   help="measured on the run's first training step")
    realised = realised_prediction(run)
    cols[2].metric("Predicted for this engine", f"{realised:.1f} MB" if realised is not None else "–",
                   delta=f"measured {peak / 1e6 / realised:.2f}x this" if realised and peak else None,
                   delta_color="off",
                   help=f"the {realised_view(engine)} view's total for the same setting: the view that models {engine}")
    stock = (run.get("predicted") or {}).get("pytorch")
    cols[3].metric("Stock PyTorch would take", f"{stock:.1f} MB" if stock is not None else "–",
                   delta=f"{stock / (peak / 1e6):.1f}x the measured peak" if stock and peak else None,
                   delta_color="off", help="the pytorch view's prediction for the same setting")
    cols[4].metric("Predicted (paper view)",
                   f"{run['predicted_memory_mb']:.1f} MB" if run["predicted_memory_mb"] is not None else "–",
                   help="the TinyTL paper's theory, which no engine fully realises under GroupNorm (see the Why page)")
    saved = run["saved_activation_bytes"]
    if saved:
        st.caption(f"Kept for the backward pass in the measured step: {saved / 1e6:.1f} MB of activations.")
    if steps:
        st.plotly_chart(curves(run, steps), key="ft_curves")
    else:
        st.caption("Curves appear after the first step.")


live_run()
