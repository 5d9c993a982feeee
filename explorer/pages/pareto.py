"""Pareto: predicted (and measured) accuracy of super-net sub-nets against their training memory; search; inspect."""

import json

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from explorer import charts, frames
from tinytl.devices import DEVICES
from tinytl.errors import TinyTLError
from tinytl.paths import check_app_path
from tinytl.memory import profile_memory
from tinytl.models.setting import ModelSetting
from tinytl.models.supernet import parse_subnet
from tinytl.policies import PAPER_NAMES, POLICIES
from tinytl.search.evolution import SearchSettings, pareto_front, random_points, search_subnets
from tinytl.search.memory import subnet_memory_bytes
from tinytl.search.predictor import load_predictor, quality_warning, shown_accuracy
from tinytl.search.runs import measured_accuracy
from tinytl.search.space import encode
from tinytl.train.adapt import load_adapted, subnet_test_accuracy
from tinytl.train.recipe import FinetuneSettings
from tinytl.train.runner import prepare_run, start_background
from tinytl.train.store import RunStore

SEARCH_KEY = "pareto_search_result"
MEASURED_KEY = "pareto_measured_points"
RUN_KEY = "pareto_run_id"
FRONT_SOURCE = "search front (predicted)"
PICK_KEY, CLICK_KEY, CLICKED_KEY = "pareto_pick", "pareto_last_click", "pareto_clicked"
COLORS = {"ok": "#4C78A8", "over": "#BAB0AC", "front": "#E45756", "measured": "#54A24B", "budget": "#1F2A44"}
HOVER = ("<b>%{customdata[6]}</b><br>memory %{customdata[3]:.2f} MB · accuracy %{customdata[4]:.1%}"
         "<br>resolution %{customdata[2]} px<br>depths %{customdata[5]}<br>expand %{customdata[7]}"
         "<br>kernel %{customdata[8]}<extra></extra>")


@st.cache_resource
def predictor(path: str):
    return load_predictor(path or None)


@st.cache_resource
def adapted_supernet():
    return load_adapted()


@st.cache_data
def sampled(path: str, count: int, policy: str, batch_size: int, classes: int, seed: int) -> pd.DataFrame:
    points = random_points(predictor(path), count, policy, batch_size, classes, seed=seed)
    return point_frame(points, "sampled (predicted)")


def point_frame(points: list[dict], source: str) -> pd.DataFrame:
    """One row per point, with the strings the hover shows and the JSON a click selects."""
    return pd.DataFrame([{
        "subnet": json.dumps(p["subnet"], separators=(",", ":")), "source": source, "resolution": p["resolution"],
        "memory MB": p["memory_mb"], "accuracy": p["predicted_accuracy"],
        "depths": " ".join(map(str, p["subnet"]["d"])), "label": source,
        "expand": "".join(map(str, p["subnet"]["e"])), "kernel": "".join(map(str, p["subnet"]["ks"])),
    } for p in points])


ROW_HEIGHT = 0.055  # a device label's height, as a fraction of the plot
CHARS_PER_SPAN = 140  # about how many label characters fit across the plot's width


def point_label(row: pd.Series) -> str:
    """How a point reads in the inspect box: memory, accuracy, resolution and where it comes from."""
    return f"{row['memory MB']:.2f} MB · {row['accuracy']:.1%} · {row['resolution']} px · {row['source']}"


def chart_span(points: pd.DataFrame, front: pd.DataFrame, budget: float) -> float:
    """The memory axis's extent: device lines beyond it would squash every point to the left edge."""
    return max([budget, *points["memory MB"].tolist(), *front["memory MB"].tolist()]) * 1.05


def label_rows(devices, span: float) -> list[tuple[object, int]]:
    """Device budget labels placed left to right, each in the first row where it clears the label before it."""
    ends: list[float] = []  # per row: the x where its last label ends
    placed = []
    for device in sorted(devices, key=lambda d: d.budget_mb):
        width = (len(device.name) + 2) * span / CHARS_PER_SPAN
        row = next((i for i, end in enumerate(ends) if end <= device.budget_mb), len(ends))
        ends[row:row + 1] = [device.budget_mb + width]
        placed.append((device, row))
    return placed


CUSTOM = ["subnet", "source", "resolution", "memory MB", "accuracy", "depths", "label", "expand", "kernel"]


def figure(points: pd.DataFrame, front: pd.DataFrame, measured: pd.DataFrame, budget: float, devices,
           span: float, show_dominated: bool, best: pd.DataFrame | None = None) -> go.Figure:
    """Scatter of sub-nets (over-budget styled apart), the front as a line, the searched best as a star,
    measured runs, budget lines (`devices`: those within the memory axis's `span`)."""
    fig = go.Figure()
    if not show_dominated:
        points = points.iloc[pareto_front(points["memory MB"].to_numpy(), points["accuracy"].to_numpy())]
    for name, part, marker in (
            ("within budget", points[points["memory MB"] <= budget], dict(color=COLORS["ok"], size=7, opacity=.7)),
            ("over budget", points[points["memory MB"] > budget],
             dict(color=COLORS["over"], size=7, symbol="x", opacity=.6))):
        fig.add_scatter(x=part["memory MB"].tolist(), y=part["accuracy"].tolist(), mode="markers", name=name,
                        marker=marker, customdata=part[CUSTOM].values.tolist(), hovertemplate=HOVER)
    if len(front):
        fig.add_scatter(x=front["memory MB"].tolist(), y=front["accuracy"].tolist(), mode="lines+markers",
                        name="Pareto front", line=dict(color=COLORS["front"], width=2, shape="hv"), marker=dict(size=8),
                        customdata=front[CUSTOM].values.tolist(), hovertemplate=HOVER)
    if len(measured):
        fig.add_scatter(x=measured["memory MB"].tolist(), y=measured["accuracy"].tolist(), mode="markers",
                        name="measured (fine-tune run)",
                        marker=dict(color=COLORS["measured"], size=12, symbol="diamond"),
                        customdata=measured[CUSTOM].values.tolist(), hovertemplate=HOVER)
    if best is not None and len(best):
        fig.add_scatter(x=best["memory MB"].tolist(), y=best["accuracy"].tolist(), mode="markers",
                        name="searched best", marker=dict(color="#F58518", size=18, symbol="star",
                                                          line=dict(width=1, color="white")),
                        customdata=best[CUSTOM].values.tolist(), hovertemplate=HOVER)
        top = best.iloc[0]
        fig.add_annotation(x=top["memory MB"], y=top["accuracy"], text=f"searched best: {top['accuracy']:.1%} at "
                           f"{top['memory MB']:.2f} MB", showarrow=True, arrowhead=2, ax=-70, ay=50,
                           bgcolor="rgba(255,255,255,0.85)", bordercolor="#F58518", font=dict(size=12))
    fig.add_vline(x=budget, line=dict(color=COLORS["budget"], width=2), annotation_text=f"budget {budget:g} MB",
                  annotation_position="top right")
    for device, row in label_rows(devices, span):
        fig.add_vline(x=device.budget_mb, line=dict(color="#9D755D", dash="dot"))
        fig.add_annotation(x=device.budget_mb, y=ROW_HEIGHT * row, yref="paper", yanchor="bottom", xanchor="left",
                           text=device.name, showarrow=False, font=dict(size=11, color="#7A5A46"),
                           bgcolor="rgba(255,255,255,0.8)")
    fig.update_layout(xaxis_title="training memory (paper view, MB)", yaxis_title="accuracy (digits validation)",
                      yaxis_tickformat=".0%", height=520, hovermode="closest", margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0))
    return fig


st.title("Pareto: accuracy vs training memory")
predictor_path = st.text_input("Accuracy predictor file (empty: the shipped one)", key="pareto_predictor",
                               help="made by `python -m tinytl collect --train-predictor PATH`")
try:
    model = predictor(check_app_path(predictor_path, "predictor file") if predictor_path else "")
except TinyTLError as err:
    st.error(str(err))
    st.stop()
metrics, provenance = model.metrics, model.provenance
st.caption(
    "Sub-nets of the elastic super-net (depth, expand ratio and kernel per block) at the resolutions the accuracy "
    f"predictor was trained on ({', '.join(map(str, model.resolutions))} px). Memory is the paper view's training "
    "memory, computed from the configuration; accuracy is predicted by an MLP trained on "
    f"{provenance.get('pairs', '?')} measured [sub-net, resolution, accuracy] pairs on "
    f"{provenance.get('dataset', '?')}:"
    f" held-out RMSE {metrics['rmse']:.2%} (predicting the mean: {metrics['mean_rmse']:.2%}"
    + (f", each resolution's mean: {metrics['resolution_mean_rmse']:.2%}" if "resolution_mean_rmse" in metrics else "")
    + f"), Kendall tau {metrics['kendall_tau']:.2f} on {metrics['test_pairs']} held-out pairs"
    + (f", {metrics['within_resolution_kendall_tau']:.2f} within one resolution (mean over resolutions)"
       if "within_resolution_kendall_tau" in metrics else "")
    + (f"; {metrics['cross_validated']['folds']}-fold cross-validated: "
       f"{metrics['cross_validated']['within_resolution_kendall_tau']:.2f} within one resolution"
       if "cross_validated" in metrics else "")
    + (". The MLP is fitted to the mean probability of the true class (it ranks more reliably than 0/1 accuracy "
       "on a few hundred images) and mapped linearly to accuracy" if metrics.get("target") == "p_correct" else "")
    + ".")

if warning := quality_warning(metrics):
    st.warning(f"This predictor: {warning}. Treat the accuracy axis accordingly.")

c1, c2, c3, c4 = st.columns(4)
policy = c1.selectbox("Policy", POLICIES, index=POLICIES.index("lite+bias"), key="pareto_policy",
                      format_func=lambda p: f"{p} ({PAPER_NAMES[p]})")
batch_size = int(c2.number_input("Batch size", 1, 256, 8, key="pareto_batch"))
classes = int(c3.number_input("Classes", 1, 1000, min(int(provenance.get("classes", 10)), 1000), key="pareto_classes"))
budget = float(c4.number_input("Memory budget (MB)", 0.1, 10000.0, 12.5, step=0.5, key="pareto_budget"))
c5, c6, c7 = st.columns([1, 1, 2])
count = int(c5.slider("Sampled sub-nets", 50, 1000, 300, step=50, key="pareto_samples"))
show_dominated = c6.toggle("Show dominated points", value=True, key="pareto_dominated")
device_names = c7.multiselect("Device budget lines", [d.name for d in DEVICES], key="pareto_devices",
                              default=[d.name for d in DEVICES if d.name == "Coral Edge TPU"])

points = sampled(predictor_path, count, policy, batch_size, classes, 0)
with st.expander("Search (evolutionary, maximising predicted accuracy within the budget)", expanded=False):
    s1, s2, s3 = st.columns(3)
    population = int(s1.number_input("Population", 4, 500, 100, key="pareto_population"))
    iterations = int(s2.number_input("Iterations", 1, 2000, 500, key="pareto_iterations"))
    if s3.button("Run search", type="primary", key="pareto_run_search"):
        bar = st.progress(0.0, text="searching…")
        try:
            found = search_subnets(
                budget, model, policy, batch_size, classes, settings=SearchSettings(population, iterations),
                progress=lambda i, n: bar.progress(i / n, text=f"iteration {i} of {n}"))
            st.session_state[SEARCH_KEY] = found
            st.session_state[PICK_KEY] = point_label(point_frame([found["best"]], FRONT_SOURCE).iloc[0])
        except TinyTLError as err:
            st.session_state.pop(SEARCH_KEY, None)
            st.error(str(err))
result = st.session_state.get(SEARCH_KEY)
if result and (result["policy"], result["batch_size"], result["classes"], result["budget_mb"]) != (
        policy, batch_size, classes, budget):
    st.caption("The search below was run for other settings; run it again to match these.")
if result:
    front = point_frame(result["front"], FRONT_SOURCE)
    best = result["best"]
    st.success(f"Best within {result['budget_mb']:g} MB: predicted accuracy {best['predicted_accuracy']:.1%} at "
               f"{best['memory_mb']:.2f} MB, {best['resolution']} px ({len(result['front'])} front points from "
               f"{result['search']['evaluated']} candidates in {result['search']['seconds']:.1f} s).")
else:
    front = points.iloc[pareto_front(points["memory MB"].to_numpy(), points["accuracy"].to_numpy())]
    front = front[front["memory MB"] <= budget]

measured_parts = []
try:
    measured_runs = measured_accuracy(RunStore())
except TinyTLError as err:  # a damaged run store: no measured points, the rest of the page as usual
    st.error(f"Measured runs are not shown: {err}")
    measured_runs = {}
for (key, res), info in measured_runs.items():
    config = parse_subnet(key)
    mem = subnet_memory_bytes(config, res, policy, batch_size, classes) / 1e6
    measured_parts.append(point_frame([{"subnet": config.to_dict(), "resolution": res, "memory_mb": mem,
                                        "predicted_accuracy": info["accuracy"]}], f"run #{info['run_id']} (measured)"))
measured = pd.concat(measured_parts) if measured_parts else pd.DataFrame(columns=CUSTOM)

best_frame = point_frame([result["best"]], "searched best (predicted)") if result else None
span = chart_span(points, front, budget)
shown_devices = [d for d in DEVICES if d.name in device_names]
drawn = [d for d in shown_devices if d.budget_mb <= span]
event = st.plotly_chart(figure(points, front, measured, budget, drawn, span, show_dominated, best_frame),
                        key="pareto_chart", on_select="rerun", selection_mode="points")
beyond = [f"{d.name} ({d.budget_mb:,.0f} MB)" for d in shown_devices if d not in drawn]
st.caption("Hover a point for its configuration; click one to inspect it below."
           + (f" Beyond this chart's memory range, so not drawn: {', '.join(beyond)}." if beyond else ""))

# One source of truth for the inspected point: the select box. A new click in the chart writes it (before the
# box is drawn), a search selects its best point, and the section below always follows the box.
options = {point_label(r): r for _, r in front.iterrows()}
clicked = [p for p in (event.selection.points if event and event.selection else []) if p.get("customdata")]
if clicked:
    row = pd.Series(dict(zip(CUSTOM, clicked[0]["customdata"])))
    click = (row["subnet"], int(row["resolution"]), row["source"])
    if st.session_state.get(CLICK_KEY) != click:  # a new click (the chart keeps reporting the last one)
        st.session_state[CLICK_KEY] = click
        same = next((label for label, r in options.items() if (r["subnet"], int(r["resolution"]), r["accuracy"])
                     == (row["subnet"], int(row["resolution"]), row["accuracy"])), None)
        if same is None:
            st.session_state[CLICKED_KEY] = row
        st.session_state[PICK_KEY] = same or point_label(row)
if (extra := st.session_state.get(CLICKED_KEY)) is not None:
    options.setdefault(point_label(extra), extra)
if not options:
    st.info("No sub-net within the budget yet: raise the budget or run the search.")
    st.stop()
if st.session_state.get(PICK_KEY) not in options:
    st.session_state[PICK_KEY] = next(iter(options))
choice = st.selectbox("Point to inspect", list(options), key=PICK_KEY,
                      help="the front's points, and the last point clicked in the chart")
point = options[choice]
subnet, resolution = point["subnet"], int(point["resolution"])

st.subheader(f"Sub-net at {resolution} px")
st.code(subnet, language="json")
report = profile_memory(ModelSetting("supernet", resolution, classes, subnet=subnet), policy=policy,
                        batch_size=batch_size)
predicted = shown_accuracy(model.predict(encode(parse_subnet(subnet), resolution, model.resolutions)[None, :])[0])
m1, m2, m3 = st.columns(3)
m1.metric("Predicted accuracy", f"{predicted:.1%}", help="the accuracy predictor's estimate for this point")
m3.metric("Training memory (layer walk of the extracted sub-net)", f"{report.total_mb:.2f} MB",
          help="The same figure the chart and the search use, recomputed here by walking the extracted sub-net.")
measured_points = st.session_state.setdefault(MEASURED_KEY, {})
if "(measured)" in point["source"]:
    m2.metric(f"Fine-tuned accuracy ({point['source'].removesuffix(' (measured)')})", f"{point['accuracy']:.1%}",
              help="test accuracy the fine-tune run recorded")
table = frames.layer_frame(report)
st.plotly_chart(charts.layer_chart(table, report.peak_index, "#54A24B",
                                   f"peak {report.activation_mb:.2f} MB at {report.peak_layer}"),
                key="pareto_layer_chart")

if st.button("Measure this point", key="pareto_measure",
             help="held-out test accuracy of this sub-net with the weights it inherits from the adapted super-net "
                  "(`python -m tinytl evaluate`; a few seconds, no training)"):
    try:
        with st.spinner("Scoring the sub-net on the held-out test split…"):
            measured_points[(subnet, resolution)] = subnet_test_accuracy(adapted_supernet(), parse_subnet(subnet),
                                                                         resolution)
    except TinyTLError as err:
        st.error(str(err))
if (subnet, resolution) in measured_points:
    got = measured_points[(subnet, resolution)]
    m2.metric("Measured accuracy", f"{got['accuracy']:.1%}", delta=f"{100 * (got['accuracy'] - predicted):+.1f} pts "
              "vs predicted", delta_color="off", help=f"on {got['test_images']} held-out {got['dataset']} images, "
                                                     "inherited weights")

f1, f2 = st.columns([1, 3])
epochs = int(f1.number_input("Fine-tune epochs", 1, 50, 2, key="pareto_ft_epochs"))
if f2.button("Fine-tune this sub-net", key="pareto_finetune"):
    try:
        with st.spinner("Loading data and the adapted super-net…"):
            run = prepare_run(FinetuneSettings(backbone="supernet", subnet=subnet, policy=policy, epochs=epochs,
                                               resolution=resolution, batch_size=batch_size))
            st.session_state[RUN_KEY] = start_background(run, RunStore())[0]
    except TinyTLError as err:
        st.error(str(err))
if st.session_state.get(RUN_KEY):
    st.info(f"Run #{st.session_state[RUN_KEY]} is training in the background; it appears on the Runs page, and its "
            "measured accuracy joins this chart (green diamond) when it finishes.")
