"""Measure real training steps: what autograd saves for backward, peak live memory, step time, gradients.

Saved activations are counted with `torch.autograd.graph.saved_tensors_hooks` (every tensor a backward
node keeps passes the pack hook), deduplicated by storage, parameters and buffers excluded, and
attributed to the leaf module running when a storage was first saved. Peak memory is tracked by a
`TorchDispatchMode` that follows every live storage on CPU, or by the CUDA allocator's statistics.
"""

from __future__ import annotations

import copy
import statistics
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from tinytl.errors import TinyTLError
from tinytl.engine import checkpoint_blocks, convert_model
from tinytl.engine.functional import is_recomputing
from tinytl.memory.analysis import analyze, cached_trace
from tinytl.memory.host import check_fits_host
from tinytl.memory.views import VIEWS
from tinytl.memory.walk import leaf_modules
from tinytl.models.setting import ModelSetting
from tinytl.policies import Policy, apply_policy

OUTSIDE_LAYERS = "(outside leaf layers)"
TORCH_DEVICES = ("cpu", "cuda")


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def _model_storages(model: nn.Module) -> set[int]:
    return {_storage_key(t) for t in (*model.parameters(), *model.buffers())}


class SavedTensorCounter:
    """Context manager counting the bytes autograd saves for backward while a model runs forward.

    Each storage counts once (a saved view, or a tensor saved by two nodes, is the same memory);
    parameters and buffers are excluded. `by_layer` charges a storage to the leaf-module call that saved
    it first ('name', 'name#2' for a second call), as the memory walk names layers.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.by_layer: dict[str, int] = {}
        self._seen: dict[int, int] = {}
        self._excluded: set[int] = set()
        self._stack: list[str] = []
        self._calls: dict[str, int] = {}
        self._handles: list = []
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    @property
    def total_bytes(self) -> int:
        return sum(self._seen.values())

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        if is_recomputing():  # a recompute block re-running inside backward: transient, not kept from forward
            return t
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if storage.nbytes() and key not in self._excluded and key not in self._seen:
            self._seen[key] = storage.nbytes()
            layer = self._stack[-1] if self._stack else OUTSIDE_LAYERS
            self.by_layer[layer] = self.by_layer.get(layer, 0) + storage.nbytes()
        return t

    def _enter_layer(self, name: str) -> None:
        count = self._calls.get(name, 0) + 1
        self._calls[name] = count
        self._stack.append(name if count == 1 else f"{name}#{count}")

    def _leave_layer(self) -> None:
        self._stack.pop()

    def __enter__(self) -> SavedTensorCounter:
        self._excluded = _model_storages(self.model)
        for name, module in leaf_modules(self.model):
            self._handles.append(module.register_forward_pre_hook(lambda m, a, n=name: self._enter_layer(n)))
            self._handles.append(module.register_forward_hook(lambda m, a, o: self._leave_layer()))
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
        for h in self._handles:
            h.remove()
        self._handles.clear()


def count_saved_activations(model: nn.Module, x: torch.Tensor) -> SavedTensorCounter:
    """Run one forward of `model` on `x` and count what autograd keeps for its backward (graph then dropped)."""
    with SavedTensorCounter(model) as counter:
        model(x)
    return counter


class LivePeakTracker(TorchDispatchMode):
    """Peak bytes of live tensor storages while active: those that existed on entry plus every storage an op
    returns, freed when its last tensor dies (CPU; works for any device but CUDA has the allocator's count)."""

    def __init__(self, existing: tuple[torch.Tensor, ...] = ()) -> None:
        super().__init__()
        self._live: dict[int, int] = {}
        self.current = 0
        self.peak = 0
        for t in existing:
            self._track(t)

    def _free(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)

    def _track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = storage._cdata
        if key in self._live or storage.device.type == "meta":
            return
        self._live[key] = storage.nbytes()
        self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._free, key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out


@dataclass(frozen=True)
class RunMeasurement:
    """One real training step of one contender (stock PyTorch, checkpointed or the engine), whole batch."""

    saved_activation_bytes: int  # measured: what autograd kept for backward at the end of the forward
    predicted_saved_activation_bytes: int | None  # the matching view's prediction (None: no view prices it)
    peak_bytes: int  # live memory peak during forward + backward (params, input, grads included)
    step_seconds: float  # median wall time of forward + backward over rounds interleaved with the other contenders
    step_cpu_seconds: float  # the same steps' median process CPU time (robust to other processes on the core)
    loss: float
    saved_by_layer: dict[str, int] = field(default_factory=dict)

    def to_dict(self, layers: bool = False) -> dict:
        out = asdict(self)
        if not layers:
            out.pop("saved_by_layer")
        return out


@dataclass(frozen=True)
class StepComparison:
    """Stock PyTorch vs the engine (and stock with checkpointed blocks) on the same weights and inputs."""

    setting: dict
    pytorch: RunMeasurement
    engine: RunMeasurement
    max_grad_abs_diff: float  # largest |stock grad - engine grad| over all parameters
    grad_scale: float  # largest |stock grad|, the scale the difference is judged against
    checkpoint: RunMeasurement | None = None  # stock layers, recompute mode's blocks under torch.utils.checkpoint
    checkpoint_max_grad_abs_diff: float | None = None

    def to_dict(self, layers: bool = False) -> dict:
        out = {**self.setting, "pytorch": self.pytorch.to_dict(layers), "engine": self.engine.to_dict(layers),
               "max_grad_abs_diff": self.max_grad_abs_diff, "grad_scale": self.grad_scale}
        if self.checkpoint is not None:
            out["checkpoint"] = self.checkpoint.to_dict(layers)
            out["checkpoint_max_grad_abs_diff"] = self.checkpoint_max_grad_abs_diff
        return out


def check_device(device: str) -> torch.device:
    """'cpu' or 'cuda' (the latter only where CUDA is available), else a TinyTLError."""
    if device not in TORCH_DEVICES:
        raise TinyTLError(f"unknown device {device!r}; choose one of {', '.join(TORCH_DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise TinyTLError("--device cuda asked for, but CUDA is not available on this machine (no GPU or "
                          "a CPU-only torch build)")
    return torch.device(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> None:
    torch.manual_seed(seed)  # dropout draws the same mask in every run
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()


def _instrumented_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                       seed: int) -> tuple[int, int, dict[str, int], float, dict[str, torch.Tensor]]:
    """Forward + backward once, counting saved tensors and the live peak; returns the grads too."""
    device = x.device
    torch.manual_seed(seed)
    model.zero_grad(set_to_none=True)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        tracker = None
    else:
        tracker = LivePeakTracker((*model.parameters(), *model.buffers(), x, y))
        tracker.__enter__()
    try:
        with SavedTensorCounter(model) as counter:  # the model's own saves; the loss's few bytes stay out
            logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
    finally:
        if tracker is not None:
            tracker.__exit__(None, None, None)
    _sync(device)
    peak = torch.cuda.max_memory_allocated(device) if tracker is None else tracker.peak
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return counter.total_bytes, peak, counter.by_layer, loss.item(), grads


def interleaved_times(steps: dict[str, Callable[[], object]], rounds: int, device: torch.device | None = None,
                      warmup: int = 1) -> dict[str, tuple[float, float]]:
    """Median (wall, process CPU) seconds of each step callable, timed round-robin over `rounds` rounds.

    Each round runs every contender once, the starting contender rotating, after `warmup` untimed rounds:
    machine load, allocator and cache state then fall on all contenders alike.
    """
    names = list(steps)
    if rounds < 1:
        return {n: (float("nan"), float("nan")) for n in names}
    walls: dict[str, list[float]] = {n: [] for n in names}
    cpus: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + rounds):
        for i in range(len(names)):
            name = names[(r + i) % len(names)]
            if device is not None:
                _sync(device)
            wall, cpu = time.perf_counter(), time.process_time()
            steps[name]()
            if device is not None:
                _sync(device)
            if r >= warmup:
                walls[name].append(time.perf_counter() - wall)
                cpus[name].append(time.process_time() - cpu)
    return {n: (statistics.median(walls[n]), statistics.median(cpus[n])) for n in names}


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """Largest absolute difference between two name -> gradient maps (a missing gradient counts as zeros)."""
    worst = 0.0
    for name in set(a) | set(b):
        ga, gb = a.get(name), b.get(name)
        ga = ga if ga is not None else torch.zeros_like(gb)
        gb = gb if gb is not None else torch.zeros_like(ga)
        worst = max(worst, float((ga.float() - gb.float()).abs().max()) if ga.numel() else 0.0)
    return worst


def compare_engines(model: ModelSetting, *, policy: Policy, batch_size: int = 8,
                    engine_modes: tuple[str, ...] = ("exact",), device: str = "cpu", seed: int = 0,
                    timing_steps: int = 5, checkpoint: bool = True) -> list[StepComparison]:
    """Stock PyTorch, stock with checkpointed blocks and the engine in each mode, from the same weights and inputs.

    Memory and gradients come from one instrumented step per contender; times from `timing_steps` rounds
    in which every contender steps once (interleaved, median), after one warm-up round.
    """
    dev = check_device(device)
    trace = cached_trace(model)
    predicted_stock = analyze(trace, policy, batch_size, view="pytorch", device=dev.type)
    copies = 1 + checkpoint + len(engine_modes)  # every contender's model lives at once; their steps run in turn
    check_fits_host(predicted_stock.total_bytes + (copies - 1) * predicted_stock.param_bytes, "this measurement",
                    dev.type)
    torch.manual_seed(seed)
    base = model.build()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, model.resolution, model.resolution, generator=gen).to(dev)
    y = torch.randint(0, model.classes, (batch_size,), generator=gen).to(dev)

    models = {"pytorch": apply_policy_copy(base, policy, dev)}
    predicted: dict[str, int | None] = {"pytorch": predicted_stock.stored_activation_bytes}
    if checkpoint:
        models["checkpoint"] = checkpoint_blocks(apply_policy_copy(base, policy, dev))
        predicted["checkpoint"] = None
    for mode in engine_modes:
        models[mode] = convert_model(apply_policy_copy(base, policy, dev), mode=mode)
        predicted[mode] = (analyze(trace, policy, batch_size, view="engine", mode=mode).stored_activation_bytes
                           if "engine" in VIEWS else None)
    memory = {name: _instrumented_step(net, x, y, seed) for name, net in models.items()}
    times = interleaved_times({name: partial(_step, net, x, y, seed) for name, net in models.items()},
                              timing_steps, dev)
    del models
    runs = {name: RunMeasurement(saved_activation_bytes=saved, predicted_saved_activation_bytes=predicted[name],
                                 peak_bytes=peak, step_seconds=times[name][0], step_cpu_seconds=times[name][1],
                                 loss=loss, saved_by_layer=by_layer)
            for name, (saved, peak, by_layer, loss, _) in memory.items()}
    grads = {name: m[4] for name, m in memory.items()}
    scale = max((float(g.abs().max()) for g in grads["pytorch"].values() if g.numel()), default=0.0)
    setting = {"backbone": model.backbone, "policy": predicted_stock.policy, "resolution": model.resolution,
               "batch_size": batch_size, "classes": model.classes, "norm": model.norm,
               "lite_residual": model.lite_residual, "device": dev.type, "timing_rounds": timing_steps,
               **({"subnet": model.subnet} if model.subnet is not None else {})}
    return [StepComparison(
        setting={**setting, "engine_mode": mode}, pytorch=runs["pytorch"], engine=runs[mode],
        max_grad_abs_diff=max_abs_diff(grads["pytorch"], grads[mode]), grad_scale=scale,
        checkpoint=runs.get("checkpoint"),
        checkpoint_max_grad_abs_diff=max_abs_diff(grads["pytorch"], grads["checkpoint"]) if checkpoint else None)
        for mode in engine_modes]


def apply_policy_copy(model: nn.Module, policy: Policy, device: torch.device) -> nn.Module:
    """A training-mode copy of `model` on `device` with the policy's requires_grad flags."""
    twin = copy.deepcopy(model).to(device).train()
    apply_policy(twin, policy)
    return twin


def measure_training_step(model: ModelSetting, *, policy: Policy, batch_size: int = 8, engine_mode: str = "exact",
                          device: str = "cpu", seed: int = 0, timing_steps: int = 5,
                          checkpoint: bool = True) -> StepComparison:
    """One real training step with stock PyTorch, checkpointed stock and the engine on the same weights and inputs."""
    return compare_engines(model, policy=policy, batch_size=batch_size, engine_modes=(engine_mode,), device=device,
                           seed=seed, timing_steps=timing_steps, checkpoint=checkpoint)[0]
