"""The result of a memory analysis: per-layer rows, totals, and pandas / JSON exports."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    import pandas as pd

MB = 1e6  # decimal megabytes, as the paper reports


def live_lines(costs: Iterable[tuple[int, int, int, int]]) -> list[tuple[int, int]]:
    """Memory live while each layer runs, as (bytes per sample a, fixed bytes f): live(batch) = batch * a + f.

    `costs` are per layer (tmp, stored, fixed, residual) in forward order: a layer runs with its transient,
    everything stored by earlier layers, and the input of an enclosing residual block alive. The one place
    the peak arithmetic lives (every view and every batch size uses it).
    """
    lines, stored_so_far, fixed_so_far = [], 0, 0
    for tmp, stored, fixed, residual in costs:
        lines.append((tmp + stored_so_far + residual, fixed_so_far))
        stored_so_far += stored
        fixed_so_far += fixed
    return lines


@dataclass(frozen=True)
class LayerRow:
    """One leaf-layer call priced by a view. Byte columns are per sample except `live_bytes` (whole batch)."""

    index: int
    name: str
    type: str
    kind: str
    group: str  # stage / block the layer belongs to, for grouped charts
    output_shape: tuple[int, ...]
    params: int
    trainable_params: int
    stored_bytes: int
    tmp_bytes: int
    fixed_bytes: int
    residual_bytes: int
    live_bytes: int  # batch * (tmp + stored so far + residual) + fixed so far: memory while it runs


@dataclass(frozen=True)
class MemoryReport:
    """Training memory of one setting under one view (bytes; `*_mb` in decimal MB)."""

    view: str
    backbone: str
    policy: str
    resolution: int
    batch_size: int
    num_classes: int
    norm: str
    lite_residual: bool
    frozen_bits: int
    layers: tuple[LayerRow, ...]
    peak_index: int
    peak_activation_bytes: int
    trainable_param_bytes: int
    frozen_param_bytes: int
    buffer_bytes: int
    num_params: int
    num_trainable_params: int
    options: tuple[tuple[str, object], ...] = ()
    # views that simulate the whole step: gradients, optimizer state and buffers live at the peak
    state_bytes: int = 0
    # and the step's live memory but parameters as lines (bytes per sample, fixed bytes); () = from the rows
    lines: tuple[tuple[int, int], ...] = ()

    @property
    def peak_layer(self) -> str:
        return self.layers[self.peak_index].name if self.layers else ""

    @property
    def param_bytes(self) -> int:
        return self.trainable_param_bytes + self.frozen_param_bytes

    @property
    def total_bytes(self) -> int:
        return self.peak_activation_bytes + self.param_bytes + self.state_bytes

    @property
    def stored_activation_bytes(self) -> int:
        """Everything kept for backward at the end of the forward pass, whole batch."""
        return sum(r.stored_bytes for r in self.layers) * self.batch_size + sum(r.fixed_bytes for r in self.layers)

    @property
    def total_mb(self) -> float:
        return self.total_bytes / MB

    @property
    def param_mb(self) -> float:
        return self.param_bytes / MB

    @property
    def activation_mb(self) -> float:
        return self.peak_activation_bytes / MB

    def batch_lines(self) -> list[tuple[int, int]]:
        """Lines (bytes per sample, fixed bytes) whose maximum at batch b is the live memory but parameters."""
        if self.lines:
            return list(self.lines)
        return live_lines((r.tmp_bytes, r.stored_bytes, r.fixed_bytes, r.residual_bytes) for r in self.layers)

    def total_at_batch(self, batch_size: int) -> int:
        """Total training bytes of this setting at another batch size (same view, policy, model), exactly."""
        peak = max((batch_size * a + f for a, f in self.batch_lines()), default=0)
        return peak + self.param_bytes

    def to_frame(self) -> pd.DataFrame:
        """Per-layer table (one row per leaf-layer call)."""
        import pandas as pd  # imported here: the CLI's --json path stays at torch's import cost

        return pd.DataFrame([asdict(r) for r in self.layers])

    def to_dict(self, layers: bool = True) -> dict:
        """JSON-ready dict: settings, totals and (optionally) the per-layer rows."""
        out = {
            "view": self.view, "backbone": self.backbone, "policy": self.policy,
            "resolution": self.resolution, "batch_size": self.batch_size, "classes": self.num_classes,
            "norm": self.norm, "lite_residual": self.lite_residual, "frozen_bits": self.frozen_bits,
            "options": dict(self.options),
            "total_mb": self.total_mb, "param_mb": self.param_mb, "activation_mb": self.activation_mb,
            "total_bytes": self.total_bytes, "param_bytes": self.param_bytes,
            "trainable_param_bytes": self.trainable_param_bytes, "frozen_param_bytes": self.frozen_param_bytes,
            "buffer_bytes": self.buffer_bytes, "state_bytes": self.state_bytes,
            "peak_activation_bytes": self.peak_activation_bytes,
            "stored_activation_bytes": self.stored_activation_bytes, "peak_layer": self.peak_layer,
            "num_params": self.num_params, "num_trainable_params": self.num_trainable_params,
        }
        if layers:
            out["layers"] = [{**asdict(r), "output_shape": list(r.output_shape)} for r in self.layers]
        return out
