"""One fine-tune run end to end: prepare (data, model, weights, predicted memory), train, record in the store."""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from tinytl.data import DataBundle, load_dataset
from tinytl.errors import Terminated, TinyTLError
from tinytl.memory import VIEWS, profile_memory
from tinytl.memory.host import check_fits_host
from tinytl.memory.report import MB
from tinytl.policies import apply_policy
from tinytl.train.adapt import adapted_subnet
from tinytl.train.checkpoint import LoadReport, load_weights
from tinytl.train.loop import EpochMetrics, StepMetrics, TrainHooks, TrainResult, train
from tinytl.train.recipe import (FinetuneSettings, build_finetune_model, convert_for_engine, realised_view,
                                 run_engine_mode)
from tinytl.train.step_memory import StepMemory
from tinytl.train.store import RunStore

HEARTBEAT_SECONDS = 0.5

Progress = Callable[[StepMetrics], None]


@dataclass
class PreparedRun:
    """Everything a run needs, built and checked before the run is recorded (bad input fails here)."""

    settings: FinetuneSettings
    data: DataBundle
    model: nn.Module
    weights: LoadReport
    train_loader: DataLoader
    test_loader: DataLoader
    predicted: dict[str, float]

    @property
    def total_steps(self) -> int:
        total = self.settings.epochs * len(self.train_loader)
        return min(total, self.settings.max_steps) if self.settings.max_steps else total


def predicted_memory(settings: FinetuneSettings, num_classes: int) -> dict[str, float]:
    """Total training memory in MB under every memory view, for this setting (analysis only).

    The engine view is priced in the mode the run uses (recompute for `tinytl-recompute`, else exact)."""
    bits = settings.frozen_bits or 32
    model = settings.model_setting(num_classes)
    mode = run_engine_mode(settings.engine)
    return {name: profile_memory(model, policy=settings.policy, batch_size=settings.batch_size, frozen_bits=bits,
                                 view=name, **view.pick_options(mode=mode)).total_mb
            for name, view in VIEWS.items()}


def prepare_run(settings: FinetuneSettings) -> PreparedRun:
    """Validate settings, load data and weights, build the model; raises TinyTLError on bad input."""
    settings = settings.validate()
    torch.manual_seed(settings.seed)
    data = load_dataset(settings.dataset, settings.resolution, settings.data_root, settings.seed)
    predicted = predicted_memory(settings, data.num_classes)
    check_fits_host(predicted.get(realised_view(settings.engine), predicted["pytorch"]) * MB, "this fine-tune")
    if settings.subnet is not None:
        model, source = adapted_subnet(settings.subnet, settings.weights, settings.dataset, data.num_classes,
                                       settings.norm, settings.lite_residual)
        report = LoadReport(source, len(model.state_dict()), ())
    else:
        model = build_finetune_model(settings, data.num_classes)
        report = load_weights(model, settings.weights, settings.backbone)
    apply_policy(model, settings.policy)
    model = convert_for_engine(model, settings)
    generator = torch.Generator().manual_seed(settings.seed)
    drop_last = settings.norm == "bn" and len(data.train) > settings.batch_size  # BN cannot train on 1 sample
    train_loader = DataLoader(data.train, settings.batch_size, shuffle=True, generator=generator,
                              drop_last=drop_last)
    test_loader = DataLoader(data.test, max(64, settings.batch_size))
    return PreparedRun(settings, data, model, report, train_loader, test_loader, predicted)


def execute_run(run: PreparedRun, store: RunStore | None = None, run_id: int | None = None,
                progress: Progress | None = None) -> dict:
    """Train a prepared run, recording progress, epochs and the outcome in the store; returns the summary."""
    s = run.settings
    if store is not None and run_id is None:
        run_id = store.create_run(s.to_dict(), run.total_steps)
    last_beat, unsent = [0.0], []  # per-step rows go to the store with the next heartbeat (one transaction)

    def flush() -> None:
        if store is not None and unsent:
            store.heartbeat(run_id, unsent[-1]["step"], unsent[-1]["total"], unsent)
            last_beat[0] = time.monotonic()
            unsent.clear()

    def after_step(m: StepMetrics) -> None:
        if progress:
            progress(m)
        if store is None:
            return
        unsent.append(m.to_dict())
        if time.monotonic() - last_beat[0] > HEARTBEAT_SECONDS or m.step == m.total:
            flush()

    def after_measure(memory: StepMemory) -> None:  # shown while the run goes on, not only at its end
        if store is not None:
            store.set_fields(run_id, measured_peak_bytes=memory.peak_bytes,
                             saved_activation_bytes=memory.saved_activation_bytes)

    def after_epoch(metrics: EpochMetrics) -> None:
        if store is not None:
            flush()  # the epoch's last steps are on record before its metrics
            store.add_epoch(run_id, metrics.to_dict())

    def should_stop() -> bool:
        return store is not None and store.cancel_requested(run_id)

    hooks = TrainHooks(after_step=after_step, after_measure=after_measure, after_epoch=after_epoch,
                       should_stop=should_stop)
    lr = s.lr if s.lr is not None else run.data.spec.lr
    smoothing = s.label_smoothing if s.label_smoothing is not None else run.data.spec.label_smoothing
    try:
        if store is not None:
            store.set_fields(run_id, predicted_memory_mb=run.predicted["paper"], predicted=run.predicted)
        result = train(run.model, run.train_loader, run.test_loader, s.policy, epochs=s.epochs, lr=lr,
                       label_smoothing=smoothing, max_steps=s.max_steps, hooks=hooks)
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: stopped as a cancel would; finished epochs stay recorded
        if store is not None:
            flush()
            store.finish(run_id, "cancelled", error="terminated (SIGTERM)" if isinstance(err, Terminated)
                         else "interrupted (Ctrl-C)")
        raise
    except BaseException as err:
        if store is not None:
            flush()
            message = str(err) if isinstance(err, TinyTLError) else traceback.format_exception_only(err)[-1].strip()
            store.finish(run_id, "failed", error=message)
        raise
    summary = summarize(run, result, run_id, lr, smoothing)
    if store is not None:
        flush()
        store.finish(run_id, "cancelled" if result.cancelled else "done",
                     final_accuracy=summary["final_accuracy"], train_seconds=summary["train_seconds"],
                     measured_peak_bytes=summary["measured_peak_bytes"],
                     saved_activation_bytes=summary["saved_activation_bytes"])
    return summary


def summarize(run: PreparedRun, result: TrainResult, run_id: int | None, lr: float, smoothing: float) -> dict:
    """The JSON-ready outcome of a run."""
    mem = result.step_memory
    return {
        "run_id": run_id, "status": "cancelled" if result.cancelled else "done",
        "settings": run.settings.to_dict(), "lr": lr, "label_smoothing": smoothing,
        "weights": run.weights.source, "classes": run.data.num_classes,
        "train_images": len(run.data.train), "test_images": len(run.data.test),
        "final_accuracy": result.final_accuracy, "history": [m.to_dict() for m in result.history],
        "steps": result.steps, "train_seconds": round(result.train_seconds, 3),
        "measured_peak_bytes": mem.peak_bytes if mem else None,
        "saved_activation_bytes": mem.saved_activation_bytes if mem else None,
        "predicted_memory_mb": run.predicted["paper"], "predicted_memory_mb_by_view": run.predicted,
    }


def start_background(run: PreparedRun, store: RunStore) -> tuple[int, threading.Thread]:
    """Record the run now and train it in a daemon thread (its state lives in the store, not the caller)."""
    run_id = store.create_run(run.settings.to_dict(), run.total_steps)

    def work() -> None:
        try:
            execute_run(run, store, run_id)
        except Exception:  # noqa: BLE001 - recorded as failed in the store by execute_run; nothing else to tell
            return

    thread = threading.Thread(target=work, name=f"tinytl-run-{run_id}", daemon=True)
    thread.start()
    return run_id, thread
