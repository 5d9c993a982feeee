"""Once-for-all style elastic training of the super-net: progressive shrinking, sandwich rule, in-place distillation.

The first phase trains the largest sub-net alone; each later phase makes one more dimension elastic (kernel,
then depth, then expand; docs/PAPER.md, super-net space). Every step draws one resolution from the search set
for the whole batch (elastic resolution) and trains the largest sub-net on the labels; in the elastic phases
the phase's smallest sub-net and `randoms` random ones then learn from its detached soft predictions (the
sandwich rule with in-place distillation), and one Adam step follows on the summed gradients. The batch is resized
on the fly (bilinear, antialiased), so one rendering serves every resolution.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from tinytl.errors import TinyTLError
from tinytl.models.supernet import (DEPTHS, EXPANDS, KERNELS, NUM_SLOTS, NUM_STAGES, ProxylessSuperNet,
                                    SubnetConfig, largest_subnet, smallest_subnet)
from tinytl.models.supernet_warmstart import proxyless_subnet
from tinytl.train.loop import evaluate
from tinytl.validation import check_int, check_lr

PHASES = ("largest", "kernel", "depth", "expand")
log = logging.getLogger(__name__)


def phase_choices(phase: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(depths, expands, kernels) a phase samples from: the dimensions made elastic so far, the rest at max."""
    if phase not in PHASES:
        raise TinyTLError(f"unknown elastic phase {phase!r}; phases are {', '.join(PHASES)}")
    upto = PHASES.index(phase)
    return (DEPTHS if upto >= 2 else (max(DEPTHS),), EXPANDS if upto >= 3 else (max(EXPANDS),),
            KERNELS if upto >= 1 else (max(KERNELS),))


def sample_in_phase(phase: str, rng: random.Random) -> SubnetConfig:
    """A uniformly random sub-net among those the phase trains."""
    depths, expands, kernels = phase_choices(phase)
    return SubnetConfig(tuple(rng.choice(depths) for _ in range(NUM_STAGES)),
                        tuple(rng.choice(expands) for _ in range(NUM_SLOTS)),
                        tuple(rng.choice(kernels) for _ in range(NUM_SLOTS)))


def smallest_in_phase(phase: str) -> SubnetConfig:
    """The smallest sub-net the phase trains."""
    depths, expands, kernels = phase_choices(phase)
    return SubnetConfig((min(depths),) * NUM_STAGES, (min(expands),) * NUM_SLOTS, (min(kernels),) * NUM_SLOTS)


def resize_batch(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """A batch at another square resolution (bilinear, antialiased); unchanged when it already is."""
    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the student against the teacher's soft predictions (in-place distillation)."""
    return -(F.softmax(teacher, dim=1) * F.log_softmax(student, dim=1)).sum(1).mean()


@dataclass(frozen=True)
class PhaseRecord:
    """What one phase did: its steps, mean losses over its last 50 steps, and its wall and CPU seconds."""

    phase: str
    steps: int
    teacher_loss: float
    student_loss: float
    seconds: float
    cpu_seconds: float


def train_phase(model: ProxylessSuperNet, loader: DataLoader, phase: str, steps: int, resolutions: Sequence[int],
                lr: float, rng: random.Random, randoms: int = 2, label_smoothing: float = 0.1) -> PhaseRecord:
    """One progressive-shrinking phase: `steps` steps with Adam and a cosine schedule."""
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    teacher_losses: list[float] = []
    student_losses: list[float] = []
    started, cpu_started = time.perf_counter(), time.process_time()
    step = 0
    while step < steps:
        for x, y in loader:
            if step >= steps:
                break
            x = resize_batch(x, rng.choice(list(resolutions)))
            optimizer.zero_grad(set_to_none=True)
            model.set_active(largest_subnet())
            teacher = model(x)
            loss = F.cross_entropy(teacher, y, label_smoothing=label_smoothing)
            loss.backward()
            teacher_losses.append(loss.item())
            soft = teacher.detach()
            students = [] if phase == PHASES[0] else \
                [smallest_in_phase(phase)] + [sample_in_phase(phase, rng) for _ in range(randoms)]
            total = 0.0
            for config in students:
                model.set_active(config)
                s_loss = distill_loss(model(x), soft)
                s_loss.backward()
                total += s_loss.item()
            student_losses.append(total / max(len(students), 1))
            optimizer.step()
            schedule.step()
            step += 1
            if step % 25 == 0 or step == steps:
                log.info("%s step %d/%d teacher %.3f students %.3f %.0fs", phase, step, steps,
                         sum(teacher_losses[-25:]) / len(teacher_losses[-25:]),
                         sum(student_losses[-25:]) / len(student_losses[-25:]), time.perf_counter() - started)
    model.set_active(largest_subnet())
    return PhaseRecord(phase, steps, sum(teacher_losses[-50:]) / len(teacher_losses[-50:]),
                       sum(student_losses[-50:]) / len(student_losses[-50:]),
                       round(time.perf_counter() - started, 1), round(time.process_time() - cpu_started, 1))


def named_subnets() -> dict[str, SubnetConfig]:
    """The sub-nets whose accuracy a super-net file records: largest, smallest and ProxylessNAS-Mobile."""
    return {"largest": largest_subnet(), "smallest": smallest_subnet(), "proxylessnas_mobile": proxyless_subnet()}


def subnet_accuracies(model: ProxylessSuperNet, test_set: Dataset, configs: dict[str, SubnetConfig] | None = None,
                      batch_size: int = 250) -> dict[str, float]:
    """Top-1 accuracy (0..1) of named sub-nets on a test set; leaves the largest active."""
    loader = DataLoader(test_set, batch_size)
    accuracy = {}
    for name, config in (configs or named_subnets()).items():
        model.set_active(config)
        accuracy[name] = evaluate(model, loader)[1]
    model.set_active(largest_subnet())
    return accuracy


def check_phase_steps(steps: Sequence[int]) -> tuple[int, ...]:
    """Steps per phase (largest, kernel, depth, expand), each >= 0 and at least one > 0."""
    if len(steps) != len(PHASES) or not any(steps):
        raise TinyTLError(f"phase steps must be {len(PHASES)} integers >= 0 ({', '.join(PHASES)}), "
                          f"not all 0; got {list(steps)}")
    return tuple(check_int("phase steps", s, 0) for s in steps)


def check_phase_lrs(lrs: Sequence[float]) -> tuple[float, ...]:
    """Peak learning rate per phase, each finite and > 0."""
    if len(lrs) != len(PHASES):
        raise TinyTLError(f"phase learning rates must be {len(PHASES)} positive finite numbers, got {list(lrs)}")
    return tuple(check_lr(lr, "phase learning rate") for lr in lrs)
