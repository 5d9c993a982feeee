"""Plotly figures of the pages, built from the tables in explorer.frames (no memory logic here)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from tinytl.policies import PAPER_NAMES

TRANSIENT_COLOR = "#BAB0AC"
RUNNING_COLOR = "#1F2A44"
PARAM_COLORS = {"trainable MB": "#F58518", "frozen MB": "#72B7B2", "buffers MB": "#BAB0AC"}
POLICY_COLORS = {"full": "#E45756", "last": "#9D755D", "norm+last": "#B279A2", "bias": "#4C78A8",
                 "lite": "#72B7B2", "lite+bias": "#54A24B", "custom": "#F58518"}
PAPER_MARKER = dict(symbol="diamond-open", size=13, line=dict(width=2.5), color="black")
LOG_TICKS = [m * 10 ** e for e in range(-1, 6) for m in (1, 2, 5)]
_LAYOUT = dict(margin=dict(l=10, r=10, t=110, b=10), hovermode="closest",
               legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0, xanchor="left"))


def _title(text: str) -> dict:
    """A left-aligned title above the legend (the legend sits between title and plot)."""
    return dict(text=text, x=0.01, xanchor="left", y=0.97, yanchor="top", yref="container")


def layer_chart(frame: pd.DataFrame, peak_index: int, color: str, title: str) -> go.Figure:
    """Per-layer bytes along depth: stored vs transient bars, running totals, the peak layer marked."""
    custom = frame[["params", "trainable params", "stored MB", "transient MB", "live MB"]].to_numpy(dtype=float)
    text = (frame["layer"] + " (" + frame["type"] + ")<br>output " + frame["output shape"]).to_numpy()
    hover = ("<b>%{text}</b><br>params %{customdata[0]:,} (trainable %{customdata[1]:,})<br>"
             "stored %{customdata[2]:.3f} MB, transient %{customdata[3]:.3f} MB<br>"
             "memory while it runs %{customdata[4]:.2f} MB<extra></extra>")
    fig = go.Figure()
    fig.add_bar(x=frame["index"], y=frame["stored MB"], name="stored for backward (this layer)",
                marker_color=color, customdata=custom, text=text, textposition="none", hovertemplate=hover)
    fig.add_bar(x=frame["index"], y=frame["transient MB"], name="transient while it runs",
                marker_color=TRANSIENT_COLOR, customdata=custom, text=text, textposition="none",
                hovertemplate=hover)
    fig.add_scatter(x=frame["index"], y=frame["live MB"], name="memory while it runs (running total)",
                    mode="lines", line=dict(color=RUNNING_COLOR, width=2), customdata=custom, text=text,
                    hovertemplate=hover)
    fig.add_scatter(x=frame["index"], y=frame["stored so far MB"], name="kept for backward so far",
                    mode="lines", line=dict(color=color, width=2, dash="dot"), hoverinfo="skip")
    peak = frame.iloc[peak_index]
    fig.add_scatter(x=[peak["index"]], y=[peak["live MB"]], name="peak", mode="markers",
                    marker=dict(symbol="star", size=16, color="#E45756", line=dict(width=1, color="white")),
                    customdata=custom[peak_index:peak_index + 1], text=text[peak_index:peak_index + 1],
                    hovertemplate=hover)
    fig.add_annotation(x=peak["index"], y=peak["live MB"], text=f"peak: {peak['layer']}<br>{peak['live MB']:.2f} MB",
                       showarrow=True, arrowhead=2, ax=40, ay=-40)
    firsts = frame.groupby("group", sort=False)["index"].min()
    fig.update_layout(title=_title(title), barmode="stack", bargap=0.05, yaxis_title="MB (whole batch)", height=460,
                      xaxis=dict(title="layer, in forward order", tickvals=list(firsts), ticktext=list(firsts.index),
                                 tickangle=-60, tickfont=dict(size=9)), **_LAYOUT)
    return fig


def param_chart(breakdown: pd.DataFrame, frozen_bits: int) -> go.Figure:
    """Parameter and buffer bytes per layer group, stacked: trainable (32-bit), frozen (N-bit), buffers."""
    labels = {"trainable MB": "trainable (32-bit)", "frozen MB": f"frozen ({frozen_bits}-bit)",
              "buffers MB": "buffers (not counted)"}
    fig = go.Figure()
    for column, label in labels.items():
        fig.add_bar(x=breakdown["group"], y=breakdown[column], name=label, marker_color=PARAM_COLORS[column],
                    hovertemplate="%{x}: %{y:.4f} MB<extra>" + label + "</extra>")
    fig.update_layout(title=_title("Parameters by stage"), barmode="stack", yaxis_title="MB", height=380,
                      xaxis=dict(tickangle=-60, tickfont=dict(size=9)), **_LAYOUT)
    return fig


def policy_bars(table: pd.DataFrame, colors: dict[str, str], titles: dict[str, str],
                reported: dict[str, float] | None) -> go.Figure:
    """Total memory per policy, one bar per view (grouped); the paper's reported values as markers."""
    fig = go.Figure()
    for key, sub in table.groupby("variant", sort=False):
        fig.add_bar(x=sub["policy"], y=sub["total MB"], name=titles[key], marker_color=colors[key],
                    text=sub["total MB"].map(lambda v: f"{v:.1f}"), textposition="outside",
                    customdata=sub[["activation MB", "param MB"]].to_numpy(),
                    hovertemplate="%{x}: %{y:.2f} MB<br>activations %{customdata[0]:.2f} MB + "
                                  "params %{customdata[1]:.2f} MB<extra>" + titles[key] + "</extra>")
    if reported:
        policies = [p for p in table["policy"].unique() if p in reported]
        fig.add_scatter(x=policies, y=[reported[p] for p in policies], mode="markers", marker=PAPER_MARKER,
                        name="paper (reported, Table 2)", hovertemplate="%{x}: paper reports %{y} MB<extra></extra>")
    fig.update_layout(title=_title("Training memory per update policy"), barmode="group", yaxis_title="MB",
                      xaxis=dict(title="", tickvals=list(table["policy"].unique()),
                                 ticktext=[f"{p}<br>{PAPER_NAMES.get(p, '')}" for p in table["policy"].unique()]),
                      height=430, **_LAYOUT)
    return fig


def sweep_lines(table: pd.DataFrame, x: str, title: str, reported: dict[str, dict[int, float]],
                log_y: bool = False) -> go.Figure:
    """Total MB against `x` (resolution or batch size), a line per policy, the paper's points as markers."""
    fig = go.Figure()
    for policy, sub in table.groupby("policy", sort=False):
        color = POLICY_COLORS.get(policy, "#888888")
        fig.add_scatter(x=sub[x], y=sub["total MB"], name=policy, mode="lines+markers",
                        line=dict(color=color), marker=dict(size=6),
                        hovertemplate=f"{policy}<br>{x} %{{x}}: %{{y:.2f}} MB<extra></extra>")
        points = reported.get(policy, {})
        if points:
            fig.add_scatter(x=list(points), y=list(points.values()), mode="markers", showlegend=False,
                            marker={**PAPER_MARKER, "color": color}, name=f"{policy}: paper (reported)",
                            hovertemplate=f"{policy}: paper reports %{{y}} MB at {x} %{{x}}<extra></extra>")
    fig.update_layout(title=_title(title), xaxis_title=x, yaxis_title="MB", height=400, **_LAYOUT)
    if log_y:
        fig.update_yaxes(type="log", tickvals=LOG_TICKS, ticktext=[f"{v:g}" for v in LOG_TICKS])
    return fig


def kept_bytes_chart(table: pd.DataFrame) -> go.Figure:
    """Bytes one layer keeps for backward, per tensor: paper rule, what the exact formulas need, stock autograd."""
    fig = go.Figure()
    for column, color in (("paper rule MB", "#4C78A8"), ("formulas need MB", "#54A24B"),
                          ("PyTorch keeps MB", "#E45756")):
        fig.add_bar(x=table["tensor"], y=table[column], name=column.replace(" MB", ""), marker_color=color,
                    text=table[column].map(lambda v: f"{v:.2f}"), textposition="outside",
                    hovertemplate="%{x}: %{y:.3f} MB<extra>" + column.replace(" MB", "") + "</extra>")
    fig.update_layout(title=_title("Kept for backward by this layer"), barmode="group", yaxis_title="MB (whole batch)",
                      height=360, **_LAYOUT)
    return fig


def network_split_chart(table: pd.DataFrame) -> go.Figure:
    """Per policy: peak activations vs trainable and frozen parameter bytes, stacked."""
    fig = go.Figure()
    for column, color in (("activations MB", "#4C78A8"), ("trainable params MB", "#F58518"),
                          ("frozen params MB", "#72B7B2")):
        fig.add_bar(x=table["policy"], y=table[column], name=column.replace(" MB", ""), marker_color=color,
                    hovertemplate="%{x}: %{y:.2f} MB<extra>" + column.replace(" MB", "") + "</extra>")
    fig.update_layout(title=_title("Whole network: activations vs parameters"), barmode="stack", yaxis_title="MB",
                      height=400, **_LAYOUT)
    return fig
