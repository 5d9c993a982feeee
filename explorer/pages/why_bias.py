"""Why bias-only saves memory: one layer's gradients and what they need, then the whole network."""

import pandas as pd
import streamlit as st

from explorer import charts
from explorer.compute import guarded, model_trace, price, variants
from explorer.controls import sidebar_settings, url_choice
from explorer.lesson import (TENSORS, autograd_keeps, bias_owner, lesson_caption, norm_gap_text, peak_parts,
                            shared_peak_text, split_summary)
from tinytl.memory import get_view
from tinytl.memory.engine_view import affine_in_x
from tinytl.memory.report import MB
from tinytl.memory.views import ACT_BYTES, LayerGrads, ViewContext
from tinytl.policies import PAPER_NAMES, POLICIES
from tinytl.validation import check_batch_size

FORMULAS = {  # per kind: gradient -> (left side, right side, what it reads besides dL/dy)
    "conv": {
        "W": (r"\frac{\partial L}{\partial W}", r"= \frac{\partial L}{\partial y} \star x",
              "the input **x**: kept from the forward pass"),
        "b": (r"\frac{\partial L}{\partial b}", r"= \sum_{n,h,w} \frac{\partial L}{\partial y}",
              "nothing: only the incoming gradient"),
        "x": (r"\frac{\partial L}{\partial x}", r"= W^{\top} \circledast \frac{\partial L}{\partial y}",
              "the weight **W**: a parameter, in memory anyway"),
    },
    "linear": {
        "W": (r"\frac{\partial L}{\partial W}", r"= \Big(\frac{\partial L}{\partial y}\Big)^{\top} x",
              "the input **x**: kept from the forward pass"),
        "b": (r"\frac{\partial L}{\partial b}", r"= \sum_{n} \frac{\partial L}{\partial y}",
              "nothing: only the incoming gradient"),
        "x": (r"\frac{\partial L}{\partial x}", r"= \frac{\partial L}{\partial y}\, W",
              "the weight **W**: a parameter, in memory anyway"),
    },
    "norm": {
        "W": (r"\frac{\partial L}{\partial \gamma}", r"= \sum \frac{\partial L}{\partial y}\, \hat x",
              "the normalized input **x̂**: kept from the forward pass"),
        "b": (r"\frac{\partial L}{\partial \beta}", r"= \sum \frac{\partial L}{\partial y}",
              "nothing: only the incoming gradient"),
    },
}
NORM_INPUT = {  # dL/dx of a norm: affine in x (frozen running statistics) or not (per-batch / per-sample ones)
    True: (r"\frac{\partial L}{\partial x}", r"= \frac{\gamma}{\sqrt{\sigma^2_{run} + \epsilon}}"
           r"\frac{\partial L}{\partial y}", "only **γ** and the running statistics: in memory anyway"),
    False: (r"\frac{\partial L}{\partial x}", r"= \frac{\gamma}{\sigma}\big(g - \overline{g} - "
            r"\hat x\, \overline{g \hat x}\big)", "**x̂** and **1/σ** of each group, whatever trains "
            "(g = ∂L/∂y; bars: means over the group)"),
}
NAMES = {"conv": ("W (weight)", "b (bias)"), "linear": ("W (weight)", "b (bias)"),
         "norm": ("γ (scale)", "β (shift)")}
DEFAULT_LAYER = "blocks.1.conv.expand.conv"  # the peak layer of TinyTL-B/L/L+B in the paper's setting
ENGINE = get_view("engine")  # priced with no options: its exact mode

settings = sidebar_settings()
st.title("Why bias-only training saves memory")
st.caption("Training memory is dominated by activations, not parameters. What a layer must keep for the backward "
           "pass depends on which gradients it has to produce. Pick a layer of the model and tick what trains.")

trace = guarded(lambda: model_trace(settings.model_setting()))
if trace is None:
    st.stop()

st.header("1. One layer: y = W x + b, or a norm's y = γ x̂ + β")
layers = {r.name: r for r in trace.layers if r.kind in ("conv", "linear", "norm") and r.input_shape
          and getattr(r.module, "weight", None) is not None}
if st.session_state.get("why_layer") not in layers:
    st.session_state["why_layer"] = DEFAULT_LAYER if DEFAULT_LAYER in layers else next(iter(layers))
name = st.selectbox("Layer", list(layers), key="why_layer",
                    format_func=lambda n: f"{n} ({layers[n].type}, "
                                          f"input {'x'.join(map(str, layers[n].input_shape[1:]))})")
record = layers[name]
w_name, b_name = NAMES[record.kind]
t1, t2, t3 = st.columns(3)
grads = LayerGrads(weight=t1.toggle(f"{w_name} trains", value=False, key="why_w"),
                   bias=t2.toggle(f"{b_name} trains", value=True, key="why_b"),
                   input=t3.toggle("x needs a gradient (an earlier layer trains)", value=True,
                                   key="why_x"))
affine = affine_in_x(record.module)
formulas = {**FORMULAS[record.kind], **({"x": NORM_INPUT[affine]} if record.kind == "norm" else {})}
for column, (tensor, wanted) in zip(st.columns(3), (("W", grads.weight), ("b", grads.bias), ("x", grads.input))):
    with column.container(border=True):
        st.latex(formulas[tensor][0] + formulas[tensor][1])
        st.markdown(("**needed**" if wanted else "not needed") + f" · reads {formulas[tensor][2]}")
if record.kind == "conv" and record.module.bias is None:
    owner = bias_owner(trace, record)
    st.info(f"In this model `{name}` has no bias"
            + (f": its output goes to `{owner.name}` ({owner.type}), whose shift β is the bias that trains under "
               "`bias`" if owner else "") + ". The lesson adds one to show the formula; pick "
            + (f"`{owner.name}`" if owner else "a norm layer") + " to see what the real bias costs.")

batch = guarded(lambda: check_batch_size(settings.batch_size))
if batch is None:
    st.stop()
x_bytes = ACT_BYTES * record.input_numel * batch
measured = autograd_keeps(record, grads.weight, grads.bias, grads.input, batch)
ctx = ViewContext(any_backward=grads.any, norm=trace.norm)
rule = get_view("paper").cost(record, grads, ctx)
engine = ENGINE.cost(record, grads, ctx)
engine_bytes = engine.stored * batch + engine.fixed
weight = record.module.weight
rows = ["x (input activation)", w_name, b_name] + (["statistics (mean, 1/σ)"] if record.kind == "norm" else [])
kept = pd.DataFrame({
    "tensor": rows,
    "shape": ["x".join(map(str, (batch, *record.input_shape[1:]))), "x".join(map(str, weight.shape)),
              str(weight.shape[0])] + (["per group" if not affine else "-"] if record.kind == "norm" else []),
    "paper rule MB": [rule.stored * batch / MB] + [0.0] * (len(rows) - 1),
    "formulas need MB": ([min(engine_bytes, x_bytes) / MB, 0.0, 0.0]
                         + ([max(engine_bytes - x_bytes, 0) / MB] if record.kind == "norm" else [])),
    "PyTorch keeps MB": [measured[k] / MB for k in TENSORS][:len(rows)],
})
left, right = st.columns([3, 2])
left.plotly_chart(charts.kept_bytes_chart(kept), key="layer_kept_chart")
with right:
    st.metric("paper rule keeps", f"{rule.stored * batch / MB:.2f} MB",
              help="The TinyTL profiler's rule for this layer: keep x only if the weight (or scale) trains")
    st.metric("the formulas need (this project's engine)", f"{engine_bytes / MB:.2f} MB",
              help="What the gradients above read, as tinytl.engine's exact mode keeps it")
    st.metric("stock PyTorch autograd keeps (measured)", f"{measured['x'] / MB:.2f} MB",
              help="Saved tensors of a real copy of this layer, caught with saved_tensors_hooks at batch 1 and 2 "
                   "and extended to the batch; parameters and statistics in the table")
    st.caption(lesson_caption(record, grads.weight, grads.input, affine, batch, measured, engine_bytes))
st.dataframe(kept, hide_index=True,
             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in kept if "MB" in c})

st.header("2. The whole network")
st.caption("The same question at every layer, priced by the view you pick: which inputs must be kept for the "
           "gradients that are needed. Peak activations, trainable and frozen parameters per policy.")
by_key = {v.key: v for v in variants()}
chosen = by_key[url_choice("Priced by", list(by_key), "why_view", format_func=lambda k: by_key[k].title)]


def report_of(policy: str, variant=chosen):
    return guarded(lambda: price(trace, policy, settings.batch_size, settings.frozen_bits, variant))


reports = {p: r for p in POLICIES if (r := report_of(p)) is not None}
if not reports:
    st.stop()
split = pd.DataFrame([{
    "policy": p, "paper name": PAPER_NAMES[p], "activations MB": r.activation_mb,
    "trainable params MB": r.trainable_param_bytes / MB, "frozen params MB": r.frozen_param_bytes / MB,
    "total MB": r.total_mb, "peak layer": r.peak_layer} for p, r in reports.items()])
st.plotly_chart(charts.network_split_chart(split), key="network_split_chart")
if {"full", "bias"} <= set(reports):
    st.markdown(split_summary(reports["full"], reports["bias"], chosen.title))
st.dataframe(split, hide_index=True,
             column_config={c: st.column_config.NumberColumn(format="%.2f") for c in split if "MB" in c})

st.subheader("Where each policy peaks")
parts = {p: peak_parts(r) for p, r in reports.items()}
st.dataframe(pd.DataFrame([{
    "policy": p, "peak layer": q.layer, "that layer's transient MB": q.transient / MB,
    "shortcut input MB": q.residual / MB, "kept by earlier layers MB": q.stored / MB, "peak MB": q.total / MB,
    "kept at end of forward MB": reports[p].stored_activation_bytes / MB} for p, q in parts.items()]),
    hide_index=True, column_config={c: st.column_config.NumberColumn(format="%.2f")
                                    for c in ("that layer's transient MB", "shortcut input MB",
                                              "kept by earlier layers MB", "peak MB", "kept at end of forward MB")})
st.markdown(shared_peak_text({p: parts[p] for p in ("bias", "lite", "lite+bias") if p in parts},
                             {p: reports[p] for p in ("bias", "lite", "lite+bias") if p in reports}))

exact, recompute, paper = (report_of("bias", by_key[k]) for k in ("engine·exact", "engine·recompute", "paper"))
if exact is not None and recompute is not None and paper is not None:
    st.subheader("Exact bias-only training: the engine against the paper's rules")
    st.markdown(norm_gap_text(trace, paper, exact, recompute))
