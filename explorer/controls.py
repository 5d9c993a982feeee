"""The shared sidebar: one Settings object per run, mirrored in the URL so a link reproduces a view.

Order of truth: the URL on a session's first run, then the user's widgets. Widget values are also
copied into plain session state, so they survive visits to pages that do not draw this sidebar.
Values are validated by the library (a TinyTLError on analysis), not here; only values that cannot
even be put into a widget (unknown backbone, text where a number belongs) are rejected at parse time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import streamlit as st

from explorer.compute import model_trace, param_groups
from tinytl.errors import TinyTLError
from tinytl.models import list_backbones
from tinytl.models.layers import NORMS
from tinytl.models.setting import ModelSetting
from tinytl.policies import CUSTOM_PREFIX, PAPER_NAMES, POLICIES, parse_policy

CUSTOM = "custom"
PARAM_KINDS = {"weight": "weights (conv / linear / norm scale)", "bias": "biases (and norm shifts)",
               "lite": "lite residual branch (all of it)"}
_STATE = "_settings"
_URL_ERRORS = "_url_errors"
_FIRST_QUERY = "_first_query"
_CHOICES = "_page_choices"


@dataclass(frozen=True)
class Settings:
    """Everything the sidebar sets; field names double as widget keys."""

    backbone: str = "proxylessnas_mobile"
    policy: str = "lite+bias"  # a canonical policy name or "custom"
    custom_groups: tuple[str, ...] = ()
    custom_kinds: tuple[str, ...] = ("bias",)
    resolution: int = 224
    batch_size: int = 8
    classes: int = 102
    frozen_bits: int = 8
    lite_residual: bool = True
    norm: str = "gn"
    budget_mb: float = 50.0

    @property
    def policy_spec(self) -> str:
        """The policy as the library takes it: a name, or custom:GLOB,... built from the ticked groups/kinds."""
        return self.policy if self.policy != CUSTOM else CUSTOM_PREFIX + ",".join(custom_patterns(
            self.custom_groups, self.custom_kinds))

    def model_setting(self) -> ModelSetting:
        """The model these settings describe (the cache key of its walk); raises TinyTLError on a bad one."""
        return ModelSetting(self.backbone, self.resolution, self.classes, self.lite_residual, self.norm)

    def to_query(self) -> dict[str, str]:
        """URL query parameters for these settings."""
        q = {"backbone": self.backbone, "policy": self.policy, "res": str(self.resolution),
             "batch": str(self.batch_size), "classes": str(self.classes), "bits": str(self.frozen_bits),
             "lite": "1" if self.lite_residual else "0", "norm": self.norm, "budget": f"{self.budget_mb:g}"}
        if self.policy == CUSTOM:
            q.update(groups=",".join(self.custom_groups), kinds=",".join(self.custom_kinds))
        return q


def custom_patterns(groups: tuple[str, ...], kinds: tuple[str, ...]) -> list[str]:
    """Parameter-name globs for the ticked layer groups x parameter kinds."""
    suffix = {"weight": "*weight", "bias": "*bias", "lite": "lite.*"}
    return [f"{g}.{suffix[k]}" for g in groups for k in kinds if k in suffix]


def _as_int(raw: str, label: str, errors: list[str]) -> int | None:
    try:
        return int(raw)
    except ValueError:
        errors.append(f"URL: {label} must be an integer, got {raw!r}")
        return None


def settings_from_query(query: dict[str, str]) -> tuple[Settings, list[str]]:
    """Settings from URL parameters plus the reasons any value was rejected (rejected ones keep defaults)."""
    errors: list[str] = []
    values: dict = {}
    if "backbone" in query:
        if query["backbone"] in list_backbones():
            values["backbone"] = query["backbone"]
        else:
            errors.append(f"URL: unknown backbone {query['backbone']!r}; showing {Settings.backbone} instead "
                          "(the sidebar lists every backbone)")
    if "policy" in query:
        raw = query["policy"]
        if raw == CUSTOM:
            values["policy"] = CUSTOM
        else:
            try:
                name, patterns = parse_policy(raw)
                values["policy"] = name if not patterns else CUSTOM
            except TinyTLError as err:
                errors.append(f"URL: {err}")
    for key, field_name in (("res", "resolution"), ("batch", "batch_size"), ("classes", "classes"),
                            ("bits", "frozen_bits")):
        if key in query and (number := _as_int(query[key], field_name.replace("_", " "), errors)) is not None:
            values[field_name] = number
    if "lite" in query:
        values["lite_residual"] = query["lite"].lower() not in ("0", "false", "no", "off")
    if "norm" in query:
        if query["norm"] in NORMS:
            values["norm"] = query["norm"]
        else:
            errors.append(f"URL: unknown norm {query['norm']!r}; choose one of {', '.join(NORMS)}")
    if "budget" in query:
        try:
            values["budget_mb"] = float(query["budget"])
        except ValueError:
            errors.append(f"URL: budget must be a number of MB, got {query['budget']!r}")
    if "groups" in query:
        values["custom_groups"] = tuple(g for g in query["groups"].split(",") if g)
    if "kinds" in query:
        kinds = tuple(k for k in query["kinds"].split(",") if k)
        values["custom_kinds"] = tuple(k for k in kinds if k in PARAM_KINDS)
        errors += [f"URL: unknown parameter kind {k!r}; choose from {', '.join(PARAM_KINDS)}"
                   for k in kinds if k not in PARAM_KINDS]
    return replace(Settings(), **values), errors


def _seed_widgets(current: Settings) -> None:
    """Put the remembered settings into the widgets' keys before they are drawn (every run, every page)."""
    for f in fields(Settings):
        value = getattr(current, f.name)
        st.session_state[f.name] = list(value) if isinstance(value, tuple) else value


def _remember(key: str) -> None:
    """on_change: copy a widget's new value into plain session state (widget state is per page)."""
    value = st.session_state[key]
    st.session_state[_STATE] = replace(st.session_state[_STATE], **{key: tuple(value) if isinstance(value, list)
                                                                     else value})


def _keyed(key: str) -> dict:
    return {"key": key, "on_change": _remember, "args": (key,)}


def _policy_label(name: str) -> str:
    return f"{name} ({PAPER_NAMES[name]})" if name in PAPER_NAMES else "custom: pick what trains"


def _custom_pickers(sb) -> None:
    """Layer-group and parameter-kind pickers of a custom policy (groups read from the model's walk)."""
    state = st.session_state
    try:
        options = list(param_groups(model_trace(ModelSetting(state["backbone"], state["resolution"], state["classes"],
                                                             state["lite_residual"], state["norm"]))))
    except Exception:  # noqa: BLE001 - the page reports a bad setting; offer what was picked before
        options = list(state["custom_groups"])
    state["custom_groups"] = [g for g in state["custom_groups"] if g in options]
    sb.subheader("Custom policy")
    sb.multiselect("Layer groups that train", options, **_keyed("custom_groups"),
                   help="Stages / blocks of the model, in forward order")
    sb.multiselect("Parameter kinds that train", list(PARAM_KINDS), **_keyed("custom_kinds"),
                   format_func=PARAM_KINDS.get, help="Within the ticked groups; kinds add up")


def sidebar_settings() -> Settings:
    """Draw the shared sidebar and return its settings (also written to the URL)."""
    if _STATE not in st.session_state:
        st.session_state[_FIRST_QUERY] = st.query_params.to_dict()
        first, errors = settings_from_query(st.session_state[_FIRST_QUERY])
        st.session_state[_STATE] = first
        st.session_state[_URL_ERRORS] = (errors, first)
    _seed_widgets(st.session_state[_STATE])
    sb = st.sidebar
    sb.header("Setting")
    backbones = list_backbones()
    sb.selectbox("Backbone", backbones, **_keyed("backbone"),
                 help="proxylessnas_mobile is the paper's; the rest are torchvision models")
    sb.selectbox("Update policy", [*POLICIES, CUSTOM], **_keyed("policy"), format_func=_policy_label,
                 help="Which parameters train (the paper's method names in brackets)")
    c1, c2 = sb.columns(2)
    c1.number_input("Resolution (px)", step=16, **_keyed("resolution"))
    c2.number_input("Batch size", step=1, **_keyed("batch_size"))
    c1.number_input("Classes", step=1, **_keyed("classes"))
    c2.number_input("Frozen bits", step=1, **_keyed("frozen_bits"), help="Bits per frozen parameter (paper: 8)")
    sb.toggle("Lite residual branches", **_keyed("lite_residual"), help="TinyTL's small side branches (paper: on)")
    sb.selectbox("Norm", NORMS, **_keyed("norm"), format_func={"gn": "GroupNorm + WS (paper)", "bn": "BatchNorm",
                                                         "bn-frozen": "BatchNorm, frozen statistics"}.get)
    sb.number_input("Your memory budget (MB)", step=1.0, **_keyed("budget_mb"),
                    help="Checked beside the reference devices on the Memory page")
    if st.session_state["policy"] == CUSTOM:
        _custom_pickers(sb)
    settings = Settings(**{f.name: (tuple(st.session_state[f.name]) if f.type.startswith("tuple")
                                    else st.session_state[f.name]) for f in fields(Settings)})
    st.session_state[_STATE] = settings
    st.query_params.from_dict(settings.to_query())
    errors, first = st.session_state[_URL_ERRORS]
    if errors and settings == first:
        for message in errors:
            st.error(message)
    return settings


def url_choice(label: str, options: list[str], key: str, format_func: Callable[[str], str] = str,
               **kwargs) -> str:
    """A horizontal radio for a page-level choice whose value also lives in the URL under `key`.

    Call it after `sidebar_settings` (which rewrites the URL). The value survives page switches.
    """
    state = st.session_state
    saved = state.setdefault(_CHOICES, {})
    if key not in saved:
        saved[key] = state.get(_FIRST_QUERY, {}).get(key)
    state[key] = saved[key] if saved[key] in options else options[0]
    value = st.radio(label, options, key=key, format_func=format_func, horizontal=True,
                     on_change=lambda: saved.update({key: state[key]}), **kwargs)
    st.query_params[key] = value
    return value
