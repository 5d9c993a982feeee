"""Memory of one real training step, measured with the project's counters (tinytl.memory.measure)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from tinytl.memory.measure import LivePeakTracker, SavedTensorCounter


@dataclass(frozen=True)
class StepMemory:
    """Bytes of one optimisation step (forward, backward, optimizer update), whole batch."""

    peak_bytes: int  # most bytes of live storages at once: parameters, buffers, input, activations, grads, Adam
    saved_activation_bytes: int  # distinct non-parameter storages autograd kept for backward


def measure_step(model: nn.Module, step: Callable[[], torch.Tensor]) -> StepMemory:
    """Run `step` (forward + backward + update) once under a live-storage peak tracker and a saved-tensor counter."""
    with LivePeakTracker(existing=(*model.parameters(), *model.buffers())) as tracker, \
            SavedTensorCounter(model) as counter:
        step()
    return StepMemory(peak_bytes=tracker.peak, saved_activation_bytes=counter.total_bytes)
