"""Compare: every update policy at once (the paper's Table 2 and Fig. 3), theory vs paper vs PyTorch."""

from dataclasses import replace

import pandas as pd
import streamlit as st

from explorer import charts
from explorer.compute import guarded, model_trace, price, variants
from explorer.controls import CUSTOM, sidebar_settings, url_choice
from explorer.paper_values import TABLE2_BATCH, TABLE2_MB, TABLE2_RESOLUTION, matches_paper_setting, \
    reported_by_batch, reported_by_resolution
from tinytl.errors import TinyTLError
from tinytl.models.setting import ModelSetting
from tinytl.policies import POLICIES

RESOLUTIONS = (128, 160, 192, 224, 256, 288, 320)
BATCHES = (1, 2, 4, 8, 16, 32, 64)


def _variant(key: str):
    return {v.key: v for v in variants()}[key]


def _row(model: ModelSetting, policy: str, batch: int, bits: int, variant_key: str) -> dict:
    report = price(model_trace(model), policy, batch, bits, _variant(variant_key))
    return {"policy": policy, "variant": variant_key, "resolution": model.resolution, "batch size": batch,
            "total MB": report.total_mb, "activation MB": report.activation_mb, "param MB": report.param_mb}


@st.cache_data(max_entries=256, show_spinner=False)
def policy_table(model: ModelSetting, policies: tuple, batch: int, bits: int,
                 variant_keys: tuple) -> tuple[pd.DataFrame, dict[str, str]]:
    """Totals per (policy, view) and, for policies that cannot apply, the reason."""
    rows, skipped = [], {}
    for policy in policies:
        try:
            rows += [_row(model, policy, batch, bits, key) for key in variant_keys]
        except TinyTLError as err:
            skipped[policy] = str(err)
    return pd.DataFrame(rows), skipped


@st.cache_data(max_entries=256, show_spinner="Walking the model at each resolution (shapes only)…")
def sweep(models: tuple[ModelSetting, ...], policies: tuple, batches: tuple, bits: int,
          variant_key: str) -> pd.DataFrame:
    """Totals for every (model setting, batch, policy) that can be analysed, under one view."""
    rows = []
    for model in models:
        for batch in batches:
            for policy in policies:
                try:
                    rows.append(_row(model, policy, batch, bits, variant_key))
                except TinyTLError:
                    continue  # a policy that cannot apply is reported by the bar chart above
    return pd.DataFrame(rows)


settings = sidebar_settings()
st.title("Compare update policies")
st.caption("All six policies (and your custom one) priced by every view, like the paper's Table 2 and Fig. 3. "
           "Black diamonds are the memory the TinyTL paper reports (Cai et al. 2020), shown where this "
           "setting is the paper's: proxylessnas_mobile, 102 classes, lite residuals, GroupNorm, 8-bit frozen.")

views = variants()
policies = tuple(POLICIES) + ((settings.policy_spec,) if settings.policy == CUSTOM else ())
model = guarded(settings.model_setting)
result = None if model is None else guarded(lambda: (model_trace(model), policy_table(
    model, policies, settings.batch_size, settings.frozen_bits, tuple(v.key for v in views)))[1])
if result is None:
    st.info("Fix the setting in the sidebar; the page updates as soon as it can be analysed.")
    st.stop()
table, skipped = result
for policy, reason in skipped.items():
    st.warning(f"{policy} left out: {reason}", icon=":material/info:")

paper_setting = matches_paper_setting(settings.backbone, settings.classes, settings.lite_residual, settings.norm,
                                      settings.frozen_bits)
at_table2 = paper_setting and settings.resolution == TABLE2_RESOLUTION and settings.batch_size == TABLE2_BATCH
if not table.empty:
    colors = {v.key: v.color for v in views}
    titles = {v.key: v.title for v in views}
    st.plotly_chart(charts.policy_bars(table, colors, titles, TABLE2_MB if at_table2 else None), key="policy_bars")
    pivot = table.pivot(index="policy", columns="variant", values="total MB").reindex(
        index=[p for p in policies if p in set(table["policy"])], columns=[v.key for v in views])
    if at_table2:
        pivot["paper (reported)"] = pd.Series(TABLE2_MB)
    st.dataframe(pivot, column_config={c: st.column_config.NumberColumn(format="%.2f") for c in pivot})

st.subheader("Memory vs resolution and batch size")
chosen = _variant(url_choice("Lines priced by", [v.key for v in views], "sweep_view",
                             format_func=lambda k: _variant(k).title))
log_y = st.toggle("logarithmic memory axis", value=True, key="log_y")
shown = tuple(p for p in policies if p not in skipped)
resolutions = tuple(sorted({*RESOLUTIONS, settings.resolution}))
batches = tuple(sorted({*BATCHES, settings.batch_size}))
left, right = st.columns(2)
by_res = sweep(tuple(replace(model, resolution=r) for r in resolutions), shown, (settings.batch_size,),
               settings.frozen_bits, chosen.key)
by_batch = sweep((model,), shown, batches, settings.frozen_bits, chosen.key)
reported_res = {p: reported_by_resolution(p, settings.batch_size) for p in shown} if paper_setting else {}
reported_batch = {p: reported_by_batch(p, settings.resolution) for p in shown} if paper_setting else {}
if not by_res.empty:
    left.plotly_chart(charts.sweep_lines(by_res, "resolution", f"vs resolution (batch {settings.batch_size})",
                                         reported_res, log_y), key="resolution_lines")
if not by_batch.empty:
    right.plotly_chart(charts.sweep_lines(by_batch, "batch size", f"vs batch size ({settings.resolution} px)",
                                          reported_batch, log_y), key="batch_lines")
st.caption("Activations grow with batch x pixels; parameters do not. The gap between policies is the activations "
           "each keeps for backward; the diamonds are the paper's printed values (FT-Norm+Last and FT-Full come out "
           "~5% lower from the released profiler's rules, see docs/PAPER_VIEW.md).")
