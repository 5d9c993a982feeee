"""Tables the pages show, reshaped from library results (MB for the whole batch unless named per sample)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from tinytl.devices import Device, check_budget
from tinytl.memory import MemoryReport, ModelTrace
from tinytl.memory.analysis import layer_group
from tinytl.memory.report import MB
from tinytl.policies import trainable_names


def layer_frame(report: MemoryReport) -> pd.DataFrame:
    """Per-layer rows for the depth chart and the table: bytes of the whole batch, in MB."""
    rows, b = report.layers, report.batch_size
    out = pd.DataFrame({
        "index": [r.index for r in rows], "layer": [r.name for r in rows], "type": [r.type for r in rows],
        "group": [r.group for r in rows], "output shape": ["x".join(map(str, r.output_shape)) for r in rows],
        "params": [r.params for r in rows], "trainable params": [r.trainable_params for r in rows],
        "stored MB": [r.stored_bytes * b / MB for r in rows], "transient MB": [r.tmp_bytes * b / MB for r in rows],
        "live MB": [r.live_bytes / MB for r in rows],
    })
    out["stored so far MB"] = pd.Series([r.stored_bytes * b + r.fixed_bytes for r in rows]).cumsum() / MB
    return out


def param_breakdown(trace: ModelTrace, policy: str, report: MemoryReport) -> pd.DataFrame:
    """Parameter and buffer bytes per layer group: trainable at 32 bits, frozen at the report's bits."""
    trainable = trainable_names(trace.model, policy)
    rows: dict[str, dict[str, float]] = {}
    for name, n in trace.param_numels.items():
        row = rows.setdefault(layer_group(name), {"trainable MB": 0.0, "frozen MB": 0.0, "buffers MB": 0.0})
        if name in trainable:
            row["trainable MB"] += 4 * n / MB
        else:
            row["frozen MB"] += n * report.frozen_bits / 8 / MB
    for name, buf in trace.model.named_buffers():
        row = rows.setdefault(layer_group(name), {"trainable MB": 0.0, "frozen MB": 0.0, "buffers MB": 0.0})
        row["buffers MB"] += 4 * buf.numel() / MB
    return pd.DataFrame([{"group": g, **r} for g, r in rows.items()])


def budget_frame(report: MemoryReport, devices: Sequence[Device],
                 others: dict[str, MemoryReport], optimizer: str = "adam") -> pd.DataFrame:
    """One row per device: reserve, compared total, verdict, headroom and largest fitting batch under `report`;
    verdicts under `others`."""
    rows = []
    for device in devices:
        check = check_budget(report, device, optimizer)
        row = {"device": device.name, "memory": device.memory, "budget MB": device.budget_mb,
               "reserve MB": device.reserve_mb, "total MB": check.total_mb, "verdict": check.verdict,
               "headroom MB": check.headroom_mb, "largest batch": check.largest_batch}
        row.update({f"verdict · {key}": check_budget(other, device, optimizer).verdict
                    for key, other in others.items()})
        row["reserve for"] = device.reserve_note
        rows.append(row)
    return pd.DataFrame(rows)


def terms_frame(reports: Mapping[str, MemoryReport], device: Device, optimizer: str = "adam",
                verdict_view: str | None = None) -> pd.DataFrame:
    """One row per view (keyed by its title): the terms its device total adds up from, in MB, and the verdict."""
    rows = []
    for title, report in reports.items():
        check = check_budget(report, device, optimizer)
        t = check.terms
        rows.append({"view": title, "used by the verdicts": "yes" if title == verdict_view else "no",
                     "activations MB": t.activation_bytes / MB, "trainable params MB": t.trainable_param_bytes / MB,
                     "frozen params MB": t.frozen_param_bytes / MB, "gradients MB": t.gradient_bytes / MB,
                     f"optimizer state ({optimizer}) MB": t.optimizer_bytes / MB, "buffers MB": t.buffer_bytes / MB,
                     "training total MB": t.training_bytes / MB, "reserve MB": t.reserve_bytes / MB,
                     "total MB": t.total_bytes / MB, "budget MB": device.budget_mb, "headroom MB": check.headroom_mb,
                     "verdict": check.verdict, "largest batch": check.largest_batch})
    return pd.DataFrame(rows)


def terms_by_view(terms: pd.DataFrame) -> pd.DataFrame:
    """`terms_frame` for display: one column per view, one row per term, as text (MB to 3 decimals)."""
    table = terms.set_index("view")
    text = pd.DataFrame({c: table[c].map("{:,.3f}".format if c.endswith(" MB") else str) for c in table},
                        index=table.index)
    return text.T
