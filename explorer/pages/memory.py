"""Memory: what one training step of the chosen setting needs, per view, along depth, per stage, per device."""

import json

import pandas as pd
import streamlit as st

from explorer import charts, frames
from explorer.compute import full_reference, guarded, model_trace, price, variants
from explorer.controls import sidebar_settings, url_choice
from tinytl.devices import DEVICES, OPTIMIZER_MOMENTS, TIGHT_MARGIN, check_budget, custom_device

VERDICT_STYLE = {"fits": "background-color: #D8F0D2", "tight": "background-color: #FCEBC2",
                 "does not fit": "background-color: #F8D0CF"}

settings = sidebar_settings()
st.title("Training memory")
st.caption("One training step's memory, priced from a single shape-only walk of the model on PyTorch's meta "
           "device (nothing is allocated). Totals are peak activations for the whole batch plus parameters, "
           "in decimal MB. Device verdicts (below) add gradients, optimizer state, buffers and each device's "
           "reserve for its OS and runtime.")

model = guarded(settings.model_setting)
trace = None if model is None else guarded(lambda: model_trace(model))
views = variants()
reports = None if trace is None else guarded(lambda: {
    v: price(trace, settings.policy_spec, settings.batch_size, settings.frozen_bits, v) for v in views})
if not reports:
    st.info("Fix the setting in the sidebar; the page updates as soon as it can be analysed.")
    st.stop()

st.subheader(f"{settings.backbone} · {reports[views[0]].policy} · {settings.resolution} px · "
             f"batch {settings.batch_size}")
cards = dict(zip(views, st.columns(len(views))))
for v, report in reports.items():
    column = cards[v]
    full = full_reference(model, settings.frozen_bits, v.key).total_at_batch(settings.batch_size)
    column.metric(v.title, f"{report.total_mb:.2f} MB", delta=f"{(report.total_bytes / full - 1) * 100:+.1f}% vs full",
                  delta_color="inverse", help=v.description, border=True)
    column.caption(f"activations {report.activation_mb:.2f} MB (peak at `{report.peak_layer}`) + parameters "
                   f"{report.param_mb:.2f} MB. Full fine-tuning: {full / 1e6:.1f} MB, "
                   f"{full / report.total_bytes:.1f}x this.")

by_key = {v.key: v for v in views}
chosen = by_key[url_choice("View for the details below", list(by_key), "view",
                           format_func=lambda k: by_key[k].title)]
report = reports[chosen]

st.subheader("Along the network")
st.caption("Bars: what each layer keeps for the backward pass (colored) and what lives only while it runs (grey). "
           "Dark line: memory in use while that layer runs (everything kept so far + its transient + a "
           "residual block's input); its maximum is the peak. Hover a layer for its shape, parameters and bytes.")
layer_table = frames.layer_frame(report)
st.plotly_chart(charts.layer_chart(layer_table, report.peak_index, chosen.color,
                                   f"{chosen.title}: peak {report.activation_mb:.2f} MB at {report.peak_layer}"),
                key="layer_chart")

left, right = st.columns([3, 2])
with left:
    breakdown = frames.param_breakdown(trace, settings.policy_spec, report)
    st.plotly_chart(charts.param_chart(breakdown, report.frozen_bits), key="param_chart")
with right:
    st.subheader("Parameters")
    st.metric("trainable (32-bit)", f"{report.trainable_param_bytes / 1e6:.3f} MB",
              help=f"{report.num_trainable_params:,} of {report.num_params:,} parameters train")
    st.metric(f"frozen ({report.frozen_bits}-bit)", f"{report.frozen_param_bytes / 1e6:.3f} MB")
    st.metric("buffers (not counted)", f"{report.buffer_bytes / 1e6:.3f} MB",
              help="BatchNorm running statistics; the paper's profiler leaves them out")
    st.caption(f"{report.num_trainable_params:,} of {report.num_params:,} parameters train "
               f"({report.num_trainable_params / report.num_params:.2%}). Parameters are "
               f"{report.param_bytes / report.total_bytes:.0%} of this setting's total: activations dominate.")

st.subheader("Per layer")
st.dataframe(layer_table, hide_index=True, height=320,
             column_config={c: st.column_config.NumberColumn(format="%.4f") for c in layer_table if "MB" in c})
stem = (f"memory_{settings.backbone}_{report.policy.replace(':', '-')}_{chosen.key}_{settings.resolution}px"
        f"_b{settings.batch_size}")
d1, d2, _ = st.columns([1, 1, 4])
d1.download_button("Download CSV", report.to_frame().to_csv(index=False), f"{stem}.csv", "text/csv",
                   key="download_csv", icon=":material/download:")
d2.download_button("Download JSON", json.dumps(report.to_dict(), indent=2), f"{stem}.json", "application/json",
                   key="download_json", icon=":material/download:")

st.subheader("Device budgets")
optimizer = url_choice("Optimizer (its state counts toward the verdicts)", list(OPTIMIZER_MOMENTS), "optimizer",
                       format_func=lambda k: f"{k} ({OPTIMIZER_MOMENTS[k]} moment{'s' * (OPTIMIZER_MOMENTS[k] != 1)})")
st.caption(f"Does one training step under **{chosen.title}** fit? Each device's total = this view's activations "
           "+ parameters (trainable + frozen) + one fp32 gradient per trainable parameter + the optimizer's fp32 "
           f"moments per trainable parameter ({optimizer}: {OPTIMIZER_MOMENTS[optimizer]}) + buffers + the "
           "device's reserve for its OS and runtime. "
           f"**fits**: within {1 - TIGHT_MARGIN:.0%} of the device's RAM; **tight**: within its last "
           f"{TIGHT_MARGIN:.0%}; **does not fit**: over it. Headroom = RAM - total. Largest batch: the biggest "
           "batch whose total stays within the RAM (0: not even one sample); only the activations grow with the "
           "batch. The last columns give the verdict under the other views. Device RAM is binary "
           "(1 MB = 2^20 bytes), shown in decimal MB. A phone app's limit is per app, not the phone's RAM: enter it "
           "as your budget in the sidebar (nothing is reserved from it).")
devices = list(DEVICES)
mine = guarded(lambda: custom_device(settings.budget_mb))
if mine:
    devices.append(mine)
others = {v.key: r for v, r in reports.items() if v is not chosen}
budgets = frames.budget_frame(report, devices, others, optimizer)
verdict_columns = [c for c in budgets if c.startswith("verdict")]
st.dataframe(budgets.style.map(VERDICT_STYLE.get, subset=verdict_columns)
             .format({c: "{:,.2f}" for c in budgets if "MB" in c}),
             hide_index=True, key="budget_table")

st.subheader("What a verdict counts")
names = [d.name for d in devices]
device = devices[names.index(st.selectbox(
    "Device", names, index=names.index("Raspberry Pi Zero / Zero 2 W"), key="verdict_device",
    help="The terms of its total under every view"))]
check = check_budget(report, device, optimizer)
t = check.terms
st.markdown(f"The verdicts in the table above use the **{chosen.title}** view's total (the view picked above). "
            f"On {device.name}: activations {t.activation_bytes / 1e6:.2f} MB + parameters "
            f"{t.param_bytes / 1e6:.2f} MB + gradients {t.gradient_bytes / 1e6:.2f} MB + {optimizer} state "
            f"{t.optimizer_bytes / 1e6:.2f} MB + buffers {t.buffer_bytes / 1e6:.2f} MB + reserve "
            f"{t.reserve_bytes / 1e6:.2f} MB = **{check.total_mb:.2f} MB** of {device.budget_mb:.2f} MB: "
            f"**{check.verdict}**, largest batch {check.largest_batch}.")
st.caption(f"Reserve on {device.name}: {device.reserve_note or 'none'} (see docs/MEMORY.md for the sources). "
           "Columns: the same terms under every view; a view's headline card above counts only its activations "
           "+ parameters (+ what a simulated step holds at its peak).")
terms = frames.terms_frame({v.title: r for v, r in reports.items()}, device, optimizer, chosen.title)
st.table(frames.terms_by_view(terms).style.map(VERDICT_STYLE.get, subset=pd.IndexSlice[["verdict"], :]))

for v, column in cards.items():  # each headline card says whether the verdicts use its view
    training = terms.set_index("view").loc[v.title, "training total MB"]
    if v is chosen:
        column.caption(f":material/task_alt: **Device verdicts use this view**: {training:.2f} MB with gradients, "
                       f"{optimizer} state and buffers, plus each device's reserve.")
    else:
        column.caption(f"Device verdicts use {chosen.title}, not this view (here: {training:.2f} MB with gradients, "
                       f"{optimizer} state and buffers; column `verdict · {v.key}`).")
