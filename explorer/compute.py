"""The app's boundary to the library: the cached shape walk, the views on offer, and reports per view.

The walk (`cached_trace`) is the only slow step (~0.5 s); it is cached per (backbone, resolution,
classes, lite, norm) with st.cache_resource, and policy / batch / bits / view are priced from it by
`tinytl.memory.analyze` on every rerun (milliseconds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import product
from typing import TypeVar

import streamlit as st

from tinytl.errors import TinyTLError
from tinytl.memory import VIEWS, MemoryReport, ModelTrace, analyze, cached_trace
from tinytl.memory.analysis import layer_group
from tinytl.models.setting import ModelSetting

VIEW_COLORS = {"paper": "#4C78A8", "pytorch": "#E45756", "engine": "#54A24B", "engine·exact": "#54A24B",
               "engine·recompute": "#9BD48F"}
EXTRA_COLORS = ("#B279A2", "#F58518", "#72B7B2", "#EECA3B", "#FF9DA6", "#9D755D")
T = TypeVar("T")


@dataclass(frozen=True)
class Variant:
    """One priced column of the app: a view plus its options (e.g. engine in recompute mode)."""

    key: str
    view: str
    options: tuple[tuple[str, str], ...]
    title: str
    description: str
    color: str


def variants() -> list[Variant]:
    """Every registered view, once per combination of the option values it declares, in registration order."""
    out: list[Variant] = []
    for name, view in VIEWS.items():
        combos = [tuple(zip(view.options, values)) for values in product(*view.options.values())]
        for opts in combos:
            key = name + "".join(f"·{v}" for _, v in opts)
            color = VIEW_COLORS.get(key) or EXTRA_COLORS[len(out) % len(EXTRA_COLORS)]
            title = view.title + "".join(f" · {v}" for _, v in opts)
            out.append(Variant(key, name, opts, title, view.description, color))
    return out


@st.cache_resource(max_entries=64, show_spinner="Walking the model on the meta device (shapes only)…")
def model_trace(model: ModelSetting) -> ModelTrace:
    """The shape walk of a model setting, shared by every session (read-only afterwards)."""
    return cached_trace(model)


def price(trace: ModelTrace, policy: str, batch_size: int, frozen_bits: int, variant: Variant) -> MemoryReport:
    """A report for one view variant (no re-walk)."""
    return analyze(trace, policy, int(batch_size), int(frozen_bits), variant.view, **dict(variant.options))


@st.cache_resource(max_entries=256, show_spinner=False)
def full_reference(model: ModelSetting, frozen_bits: int, variant_key: str) -> MemoryReport:
    """`full` fine-tuning of a model setting at batch 1: the baseline of every saving.

    Any batch follows exactly from it with `MemoryReport.total_at_batch`."""
    variant = next(v for v in variants() if v.key == variant_key)
    return price(model_trace(model), "full", 1, frozen_bits, variant)


def param_groups(trace: ModelTrace) -> tuple[str, ...]:
    """Layer groups (stages / blocks) that own parameters, in model order."""
    return tuple(dict.fromkeys(layer_group(name) for name in trace.param_numels))


def guarded(compute: Callable[[], T]) -> T | None:
    """Run `compute`; a bad setting becomes an st.error with the library's reason (and None), not a traceback."""
    try:
        return compute()
    except TinyTLError as err:
        st.error(str(err), icon=":material/error:")
    except Exception as err:  # noqa: BLE001 - a library failure on an odd model: say what failed, keep the page alive
        st.error(f"this setting could not be analysed ({type(err).__name__}: {err})", icon=":material/error:")
    return None
