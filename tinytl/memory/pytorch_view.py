"""The "pytorch" view: what stock PyTorch really keeps and peaks at in one training step, recorded, not ruled.

Per (model setting, policy) one stock step (forward, loss, backward, Adam with its state) is recorded on
the meta device at two batch sizes (`tinytl.memory.record`; the second replays the first's optimizer step,
which does not depend on the batch); every saved storage and every event's live
memory is then a line a * batch + f, so any batch is priced exactly from the cached pair. Per site (module
call, functional code charged to its enclosing module): stored bytes are what autograd saved, live bytes the
most memory live while its forward or backward ran. The peak is the step's: parameters, gradients, Adam
state, buffers, the batch, saved tensors and transients.
"""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass

import numpy as np
from torch import nn

from tinytl.errors import TinyTLError
from tinytl.memory.record import LOSS_SITE, STEP_SITE, StepRun, record_step
from tinytl.memory.report import LayerRow, MemoryReport
from tinytl.memory.views import View, register_view
from tinytl.memory.walk import ModelTrace, layer_kind

RECORD_BATCHES = (2, 4)  # batch 2: training-mode BatchNorm has two values per channel even on 1x1 maps


@dataclass(frozen=True, eq=False)
class StepLines:
    """A recorded step as lines in the batch size b: each quantity is a * b + f (bytes)."""

    rows: tuple[int, ...]  # sites shown as rows, in the order they finished their forward
    sites: tuple  # every Site of the recording
    stored: np.ndarray  # (sites, 2): saved bytes per sample, batch-independent saved bytes
    live: np.ndarray  # (events, 2): live bytes but parameters, per event
    state: np.ndarray  # (events,): gradients, optimizer state and buffers live at each event
    event_row: np.ndarray  # (events,): row index of each event's site
    forward_tmp: np.ndarray  # (rows,): per-sample transient above the live memory at the row's first event
    envelope: tuple[tuple[int, int], ...]  # the lines whose maximum is the step's live memory, for b >= 1
    param_bytes: int

    def live_at(self, batch: int) -> np.ndarray:
        return self.live[:, 0] * batch + self.live[:, 1]


def _line(v1: np.ndarray, v2: np.ndarray, b1: int, b2: int) -> np.ndarray:
    slope, rem = np.divmod(v2 - v1, b2 - b1)
    fixed = v1 - slope * b1
    if rem.any() or (slope < 0).any() or (fixed < 0).any():
        raise TinyTLError("recorded memory does not grow linearly with the batch size for this model")
    return np.stack([slope, fixed], axis=1)


def _upper_envelope(lines: np.ndarray) -> tuple[tuple[int, int], ...]:
    """The lines attaining max(a * b + f) for some b >= 1 (the rest never decide a peak)."""
    best: dict[int, int] = {}
    for a, f in lines.tolist():
        if f > best.get(a, -1):
            best[a] = f
    hull: list[tuple[int, int]] = []
    for a, f in sorted(best.items()):  # by slope; drop lines below their neighbours for every b >= 1
        while hull and hull[-1][0] + hull[-1][1] <= a + f:  # at b = 1 the steeper line is no lower
            hull.pop()
        while len(hull) >= 2:
            (a1, f1), (a2, f2) = hull[-2], hull[-1]
            if (f1 - f2) * (a - a1) >= (f1 - f) * (a2 - a1):  # middle line never strictly on top
                hull.pop()
            else:
                break
        hull.append((a, f))
    return tuple(hull)


def combine(r1: StepRun, r2: StepRun) -> StepLines:
    """Two recordings of the same step at different batch sizes as exact lines in the batch size."""
    if [s.name for s in r1.sites] != [s.name for s in r2.sites] or len(r1.live) != len(r2.live):
        raise TinyTLError("the recorded step runs different operations at different batch sizes")
    b1, b2 = r1.batch, r2.batch
    stored = _line(np.array(r1.saved, dtype=np.int64), np.array(r2.saved, dtype=np.int64), b1, b2)
    live = _line(np.array(r1.live, dtype=np.int64), np.array(r2.live, dtype=np.int64), b1, b2)
    event_site = np.array(r1.event_site, dtype=np.int64)
    active = np.zeros(len(r1.sites), dtype=bool)
    active[event_site] = True
    keep = [i for i, s in enumerate(r1.sites)
            if s.leaf or s.name in (LOSS_SITE, STEP_SITE) or stored[i].any() or active[i]]
    row_of = np.full(len(r1.sites), -1, dtype=np.int64)
    row_of[keep] = np.arange(len(keep))
    # a dropped site (a container that ran no op of its own) never owns an event or a save
    forward = np.array(r1.event_forward, dtype=bool)
    event_row = row_of[event_site]
    tmp = np.zeros(len(keep), dtype=np.int64)
    for row in range(len(keep)):
        idx = np.flatnonzero((event_row == row) & forward)
        if idx.size:
            tmp[row] = max(0, int(live[idx, 0].max() - live[idx[0], 0]))
    return StepLines(rows=tuple(keep), sites=r1.sites, stored=stored, live=live,
                     state=np.array(r1.state, dtype=np.int64), event_row=event_row, forward_tmp=tmp,
                     envelope=_upper_envelope(live), param_bytes=r1.param_bytes)


_RECORDINGS: weakref.WeakKeyDictionary[nn.Module, dict] = weakref.WeakKeyDictionary()


def recorded_step(trace: ModelTrace, trainable: frozenset[str]) -> StepLines:
    """The step of a walked model under a set of trainable parameters, recorded once and cached."""
    cache = _RECORDINGS.setdefault(trace.model, {})
    if trainable not in cache:
        sample = trace.input_shape[1:]
        first = record_step(trace.model, set(trainable), RECORD_BATCHES[0], sample)
        second = record_step(trace.model, set(trainable), RECORD_BATCHES[1], sample, first.step_live)
        cache[trainable] = combine(first, second)
    return cache[trainable]


def _row_templates(trace: ModelTrace, step: StepLines, trainable: set[str]) -> list[LayerRow]:
    """The batch-independent part of every row (live bytes filled in per batch)."""
    from tinytl.memory.analysis import layer_group

    layers = {layer.name: layer for layer in trace.layers}
    modules = dict(trace.model.named_modules())
    rows = []
    for row, site_index in enumerate(step.rows):
        site = step.sites[site_index]
        layer = layers.get(site.name)
        module = modules.get(site.module) if site.module or site.name.startswith("(model)") else None
        own = ({f"{site.module}.{n}" if site.module else n: p.numel()
                for n, p in module.named_parameters(recurse=False)} if module is not None else {})
        if layer is not None:
            own = layer.params
        rows.append(LayerRow(
            index=row, name=site.name, type=site.type,
            kind=layer.kind if layer is not None else (layer_kind(module) if site.leaf and module else "other"),
            group=layer_group(site.module) if site.module else site.name,
            output_shape=layer.output_shape[1:] if layer is not None else tuple(site.output_shape[1:]),
            params=sum(own.values()), trainable_params=sum(n for p, n in own.items() if p in trainable),
            stored_bytes=int(step.stored[site_index, 0]), tmp_bytes=int(step.forward_tmp[row]),
            fixed_bytes=int(step.stored[site_index, 1]), residual_bytes=0, live_bytes=0))
    return rows


_TEMPLATES: weakref.WeakKeyDictionary[StepLines, list[LayerRow]] = weakref.WeakKeyDictionary()


def recorded_report(trace: ModelTrace, policy, trainable: set[str], batch_size: int, frozen_bits: int,
                    label: str, options: dict) -> MemoryReport:
    """A report from the recorded step: rows per site, the simulated step's peak."""
    step = recorded_step(trace, frozenset(trainable))
    if step not in _TEMPLATES:
        _TEMPLATES[step] = _row_templates(trace, step, trainable)
    live = step.live_at(batch_size)
    row_live = np.zeros(len(step.rows), dtype=np.int64)
    np.maximum.at(row_live, step.event_row, live)
    peak_event = int(np.argmax(live))
    rows = tuple(dataclasses.replace(r, live_bytes=int(v)) for r, v in zip(_TEMPLATES[step], row_live.tolist()))
    n_train = sum(trace.param_numels[p] for p in trainable)
    state = int(step.state[peak_event])
    return MemoryReport(
        view="pytorch", backbone=trace.backbone, policy=label, resolution=trace.resolution,
        batch_size=batch_size, num_classes=trace.num_classes, norm=trace.norm,
        lite_residual=trace.lite_residual, frozen_bits=32, layers=rows, peak_index=int(step.event_row[peak_event]),
        peak_activation_bytes=int(live[peak_event]) - state, trainable_param_bytes=4 * n_train,
        frozen_param_bytes=4 * (trace.num_params - n_train), buffer_bytes=4 * trace.buffer_numel,
        num_params=trace.num_params, num_trainable_params=n_train, options=tuple(sorted(options.items())),
        state_bytes=state, lines=step.envelope)


PYTORCH = register_view(View(
    name="pytorch", title="stock PyTorch autograd", rules={}, frozen_storage_bits=lambda bits: 32,
    description="What stock PyTorch keeps and peaks at in one training step, recorded on the meta device: "
                "every tensor autograd saves (a conv keeps its input even when only its bias trains, norms "
                "their input and statistics, functional code too; shared storages once), and the step's "
                "peak with parameters, gradients and Adam state.",
    report=recorded_report))
