"""Why bias-only saves memory: one layer's gradients and what they need, then the whole network."""

import pandas as pd
import streamlit as st

from explorer import charts
from explorer.compute import guarded, model_trace, price, variants
from explorer.controls import sidebar_settings, url_choice
from explorer.lesson import autograd_keeps
from tinytl.memory import get_view
from tinytl.validation import check_batch_size
from tinytl.memory.report import MB
from tinytl.memory.views import ACT_BYTES, LayerGrads, ViewContext
from tinytl.policies import PAPER_NAMES, POLICIES

FORMULAS = {  # (gradient, conv formula, linear formula, what it reads besides dL/dy)
    "W": (r"\frac{\partial L}{\partial W}", r"= \frac{\partial L}{\partial y} \star x",
          r"= \Big(\frac{\partial L}{\partial y}\Big)^{\top} x", "the input **x**: kept from the forward pass"),
    "b": (r"\frac{\partial L}{\partial b}", r"= \sum_{n,h,w} \frac{\partial L}{\partial y}",
          r"= \sum_{n} \frac{\partial L}{\partial y}", "nothing: only the incoming gradient"),
    "x": (r"\frac{\partial L}{\partial x}", r"= W^{\top} \circledast \frac{\partial L}{\partial y}",
          r"= \frac{\partial L}{\partial y}\, W", "the weight **W**: a parameter, in memory anyway"),
}
DEFAULT_LAYER = "blocks.1.conv.expand.conv"  # the peak layer of TinyTL-B/L/L+B in the paper's setting

settings = sidebar_settings()
st.title("Why bias-only training saves memory")
st.caption("Training memory is dominated by activations, not parameters. What a layer must keep for the backward "
           "pass depends on which gradients it has to produce. Pick a layer of the model and tick what trains.")

trace = guarded(lambda: model_trace(*settings.model_key))
if trace is None:
    st.stop()

st.header("1. One layer: y = W x + b")
layers = {r.name: r for r in trace.layers if r.kind in ("conv", "linear") and r.input_shape}
if st.session_state.get("why_layer") not in layers:
    st.session_state["why_layer"] = DEFAULT_LAYER if DEFAULT_LAYER in layers else next(iter(layers))
name = st.selectbox("Layer", list(layers), key="why_layer",
                    format_func=lambda n: f"{n} ({layers[n].type}, "
                                          f"input {'x'.join(map(str, layers[n].input_shape[1:]))})")
record = layers[name]
t1, t2, t3 = st.columns(3)
grads = LayerGrads(weight=t1.toggle("W (weight) trains", value=False, key="why_w"),
                   bias=t2.toggle("b (bias) trains", value=True, key="why_b"),
                   input=t3.toggle("x needs a gradient (an earlier layer trains)", value=True,
                                   key="why_x"))

form = 1 if record.kind == "conv" else 2
for column, (tensor, wanted) in zip(st.columns(3), (("W", grads.weight), ("b", grads.bias), ("x", grads.input))):
    with column.container(border=True):
        st.latex(FORMULAS[tensor][0] + FORMULAS[tensor][form])
        st.markdown(("**needed**" if wanted else "not needed") + f" · reads {FORMULAS[tensor][3]}")

batch = guarded(lambda: check_batch_size(settings.batch_size))
if batch is None:
    st.stop()
x_bytes = ACT_BYTES * record.input_numel * batch
measured = autograd_keeps(record, grads.weight, grads.bias, grads.input)
rule = get_view("paper").cost(record, grads, ViewContext(any_backward=grads.any, norm=trace.norm))
w_numel = record.module.weight.numel()
kept = pd.DataFrame({
    "tensor": ["x (input activation)", "W (weight)", "b (bias)"],
    "shape": ["x".join(map(str, (batch, *record.input_shape[1:]))), "x".join(map(str, record.module.weight.shape)),
              str(record.output_shape[1])],
    "needed MB": [rule.stored * batch / MB, 0.0, 0.0],
    "PyTorch keeps MB": [measured["x"] * batch / MB, measured["W"] / MB, measured["b"] / MB],
})
left, right = st.columns([3, 2])
left.plotly_chart(charts.kept_bytes_chart(kept), key="layer_kept_chart")
with right:
    st.metric("the formulas need (paper rule)", f"{rule.stored * batch / MB:.2f} MB",
              help="The TinyTL profiler's rule for this layer: keep x only if W trains")
    st.metric("stock PyTorch autograd keeps (measured)", f"{measured['x'] * batch / MB:.2f} MB",
              help="Saved tensors of a real copy of this layer, caught with saved_tensors_hooks at batch 1, "
                   "times the batch; parameters excluded")
    st.caption(f"x is {x_bytes / MB:.2f} MB for a batch of {batch}; W is {4 * w_numel / 1e6:.3f} MB and stays in "
               "memory whatever trains. PyTorch's convolution saves x whenever any of W, b, x needs a gradient "
               "(one backward formula for all three), so bias-only training saves nothing there without a custom "
               "engine; its linear layer saves x only for the weight gradient.")
st.dataframe(kept, hide_index=True)

st.header("2. The whole network")
st.caption("The same rule at every layer: when weights are frozen, inputs need not be kept, and the activations "
           "that dominate training memory shrink towards inference memory. Parameters barely move.")
by_key = {v.key: v for v in variants()}
chosen = by_key[url_choice("Priced by", list(by_key), "why_view", format_func=lambda k: by_key[k].title)]


def split_row(policy: str) -> dict | None:
    report = guarded(lambda: price(trace, policy, settings.batch_size, settings.frozen_bits, chosen))
    if report is None:
        return None
    return {"policy": policy, "paper name": PAPER_NAMES[policy], "activations MB": report.activation_mb,
            "trainable params MB": report.trainable_param_bytes / MB,
            "frozen params MB": report.frozen_param_bytes / MB, "total MB": report.total_mb}


split = pd.DataFrame([row for row in map(split_row, POLICIES) if row])
if split.empty:
    st.stop()
st.plotly_chart(charts.network_split_chart(split), key="network_split_chart")
rows = split.set_index("policy")
if {"full", "bias"} <= set(rows.index):
    full, bias = rows.loc["full"], rows.loc["bias"]
    st.markdown(
        f"Under **full** fine-tuning, activations take **{full['activations MB']:.1f} MB** and parameters "
        f"**{full['trainable params MB'] + full['frozen params MB']:.1f} MB**. Training only the **biases** cuts "
        f"activations to **{bias['activations MB']:.1f} MB** "
        f"({full['activations MB'] / bias['activations MB']:.1f}x less) while parameters drop to "
        f"**{bias['trainable params MB'] + bias['frozen params MB']:.1f} MB** (frozen weights stored at "
        f"{settings.frozen_bits} bits). Priced by {chosen.title}.")
st.dataframe(split, hide_index=True,
             column_config={c: st.column_config.NumberColumn(format="%.2f") for c in split if "MB" in c})
