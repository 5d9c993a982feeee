"""Tables the pages show, reshaped from library results (MB for the whole batch unless named per sample)."""

from __future__ import annotations

from collections.abc import Sequence

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
                 others: dict[str, MemoryReport]) -> pd.DataFrame:
    """One row per device: verdict, headroom and largest fitting batch under `report`; verdicts under `others`."""
    rows = []
    for device in devices:
        check = check_budget(report, device)
        row = {"device": device.name, "memory": device.memory, "budget MB": device.budget_mb,
               "verdict": check.verdict, "headroom MB": check.headroom_mb, "largest batch": check.largest_batch}
        row.update({f"verdict · {key}": check_budget(other, device).verdict for key, other in others.items()})
        rows.append(row)
    return pd.DataFrame(rows)
