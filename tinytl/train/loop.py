"""A model-agnostic training loop: Adam, cosine LR per iteration, label smoothing, hooks for progress and cancel."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader

from tinytl.errors import TinyTLError
from tinytl.policies import Policy, apply_policy
from tinytl.train.step_memory import StepMemory, measure_step


@dataclass(frozen=True)
class EpochMetrics:
    """Metrics of one (possibly partial) epoch; accuracies in 0..1, test metrics on held-out data."""

    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    seconds: float
    lr: float
    steps: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StepMetrics:
    """One optimizer step: its number (from 1) of `total`, the batch's training loss and accuracy (0..1), the LR."""

    step: int
    total: int
    loss: float
    accuracy: float
    lr: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainHooks:
    """Callbacks: `before_step(step, model)` (e.g. sample a sub-net), `prepare_batch(step, x)` (e.g. resize it),
    `after_step(metrics)`, `after_measure(memory)` once the first step's memory is measured, `after_epoch(metrics)`,
    `should_stop()` polled every step (cancel)."""

    prepare_batch: Callable[[int, torch.Tensor], torch.Tensor] | None = None
    before_step: Callable[[int, nn.Module], None] | None = None
    after_step: Callable[[StepMetrics], None] | None = None
    after_measure: Callable[[StepMemory], None] | None = None
    after_epoch: Callable[[EpochMetrics], None] | None = None
    should_stop: Callable[[], bool] | None = None


@dataclass
class TrainResult:
    """What a training run produced: per-epoch history, whether it finished, and measured step memory."""

    history: list[EpochMetrics] = field(default_factory=list)
    cancelled: bool = False
    train_seconds: float = 0.0
    steps: int = 0
    step_memory: StepMemory | None = None

    @property
    def final_accuracy(self) -> float | None:
        return self.history[-1].test_accuracy if self.history else None


@torch.no_grad()
def evaluate_scores(model: nn.Module, loader: DataLoader, device: str | torch.device = "cpu") -> dict[str, float]:
    """Mean cross-entropy, top-1 accuracy and mean probability of the true class (all 0..1 but the loss) over a
    loader, in eval mode. The probability is accuracy's smooth twin: on a few hundred images it ranks models
    that differ by a few images far more reliably (docs/BENCHMARKS.md, split-half table)."""
    model.eval()
    loss_sum, correct, p_true, count = 0.0, 0, 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        p_true += logits.softmax(1).gather(1, y[:, None]).sum().item()
        count += len(y)
    if count == 0:
        raise TinyTLError("the test set is empty")
    return {"loss": loss_sum / count, "accuracy": correct / count, "p_correct": p_true / count}


def evaluate(model: nn.Module, loader: DataLoader, device: str | torch.device = "cpu") -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy (0..1) over a loader, in eval mode."""
    scores = evaluate_scores(model, loader, device)
    return scores["loss"], scores["accuracy"]


def train(model: nn.Module, train_loader: DataLoader, test_loader: DataLoader, policy: Policy, *, epochs: int,
          lr: float, label_smoothing: float = 0.1, max_steps: int | None = None, measure_memory: bool = True,
          hooks: TrainHooks | None = None, device: str | torch.device = "cpu") -> TrainResult:
    """Train the parameters `policy` selects; evaluate after every epoch; stop early when hooks say so."""
    if epochs < 1:
        raise TinyTLError(f"epochs must be >= 1, got {epochs}")
    if lr <= 0:
        raise TinyTLError(f"learning rate must be > 0, got {lr}")
    if len(train_loader) == 0:
        raise TinyTLError("the training set is empty")
    hooks = hooks or TrainHooks()
    apply_policy(model, policy)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    total = epochs * len(train_loader) if max_steps is None else min(max_steps, epochs * len(train_loader))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    result = TrainResult()
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        loss_sum, correct, count, epoch_steps = 0.0, 0, 0, 0
        for x, y in train_loader:
            if result.steps >= total or (hooks.should_stop and hooks.should_stop()):
                result.cancelled = result.steps < total
                break
            x, y = x.to(device), y.to(device)
            if hooks.before_step:
                hooks.before_step(result.steps, model)
            if hooks.prepare_batch:
                x = hooks.prepare_batch(result.steps, x)
            lr_now = optimizer.param_groups[0]["lr"]
            outputs: dict[str, torch.Tensor] = {}

            def step() -> torch.Tensor:
                logits = model(x)
                loss = loss_fn(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                outputs["logits"], outputs["loss"] = logits.detach(), loss.detach()
                return loss

            if measure_memory and result.step_memory is None:
                result.step_memory = measure_step(model, step)
                if hooks.after_measure:
                    hooks.after_measure(result.step_memory)
            else:
                step()
            schedule.step()
            result.steps += 1
            epoch_steps += 1
            loss, right = outputs["loss"].item(), (outputs["logits"].argmax(1) == y).sum().item()
            loss_sum += loss * len(y)
            correct += right
            count += len(y)
            if hooks.after_step:
                hooks.after_step(StepMetrics(result.steps, total, loss, right / len(y), lr_now))
        if result.cancelled or epoch_steps == 0:  # a cancelled partial epoch is not evaluated
            break
        test_loss, test_acc = evaluate(model, test_loader, device)
        metrics = EpochMetrics(epoch, loss_sum / count, correct / count, test_loss, test_acc,
                               time.perf_counter() - epoch_start, lr_now, epoch_steps)
        result.history.append(metrics)
        if hooks.after_epoch:
            hooks.after_epoch(metrics)
        if result.steps >= total:
            break
    result.train_seconds = time.perf_counter() - started
    return result
