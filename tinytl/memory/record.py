"""Record one stock training step on the meta device: what autograd saves, and every live storage over time.

A step is forward, cross-entropy loss, backward and an Adam step with its state already there (a training
loop's steady state). Nothing real is allocated: the model's parameters are meta tensors, and a
`TorchDispatchMode` follows every storage an op returns until its last tensor dies, as PyTorch's
MemTracker does in fake mode. `torch.autograd.graph.saved_tensors_hooks` sees each tensor a backward
node keeps (deduplicated by storage, parameters and buffers excluded). Both are charged to the innermost
module running, forward (module hooks) or backward (the autograd node being run, labelled with the module
whose forward created it), so functional code counts towards its enclosing module. The optimizer step
touches parameter-sized tensors only, so a recording at a second batch size can replay the first's step
(`StepRun.step_live`) instead of simulating it again.
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tinytl.errors import TinyTLError
from tinytl.memory.meta_kernels import FastMetaMode, run_op, tensors_in

ROOT_SITE = "(model)"  # functional code of the top-level module's forward
LOSS_SITE = "(loss)"
STEP_SITE = "(optimizer step)"


@dataclass(frozen=True)
class Site:
    """A module call (or the loss, or the optimizer step), the unit saved bytes and live memory are charged to."""

    name: str  # module name, '#k' for the k-th call of a module called more than once
    module: str  # module name without the call count ('' for the pseudo-sites)
    type: str
    leaf: bool
    output_shape: tuple[int, ...]


@dataclass(frozen=True)
class StepRun:
    """One recorded step at one batch size (bytes for the whole batch)."""

    batch: int
    sites: tuple[Site, ...]
    saved: tuple[int, ...]  # per site: bytes of the storages it was first to save
    live: tuple[int, ...]  # per event (op or free), live bytes of every storage but the parameters
    event_site: tuple[int, ...]  # per event, the site it ran in
    event_forward: tuple[bool, ...]  # per event, whether it ran during the forward (incl. the loss)
    state: tuple[int, ...]  # per event, live bytes of gradients, optimizer state and buffers
    param_bytes: int
    step_live: tuple[int, ...]  # per optimizer-step event, live bytes above those when the step began


class _StorageTracker(FastMetaMode):
    """Live bytes of every storage created while active (plus the given ones), one event per op."""

    def __init__(self, site: Callable[[], int]) -> None:
        super().__init__()
        self._live: dict[int, tuple[int, weakref.ref]] = {}  # storage -> bytes, a reference that frees it
        self.born: dict[int, int] = {}  # storage -> index of the event that created it
        self.current = 0
        self.live: list[int] = []  # per event, bytes live after it
        self.sites: list[int] = []  # per event, the site it ran in
        self._site = site

    def track(self, t: torch.Tensor) -> None:
        """Count a tensor's storage from now until it dies."""
        storage = t.untyped_storage()
        key = storage._cdata
        if key not in self._live:
            nbytes = storage.nbytes()
            self._live[key] = (nbytes, weakref.ref(storage, lambda _, k=key: self._free(k)))
            self.born[key] = len(self.live)
            self.current += nbytes

    def _free(self, key: int) -> None:
        entry = self._live.pop(key, None)
        if entry is not None:
            self.current -= entry[0]

    def event(self, current: int) -> None:
        """An event outside an op (a replayed step, a step that runs none) with `current` bytes live."""
        self.live.append(current)
        self.sites.append(self._site())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = run_op(func, args, kwargs or {})
        if isinstance(out, torch.Tensor):
            self.track(out)
        else:
            for t in tensors_in(out):
                self.track(t)
        self.live.append(self.current)
        self.sites.append(self._site())
        return out


def _cpu_picks_flash(q, k, v, mask, dropout, causal, scale) -> bool:
    """Whether the CPU runs this attention as flash attention (asked with tiny CPU tensors of the same layout)."""
    def tiny(t: torch.Tensor) -> torch.Tensor:
        return torch.zeros((1,) * (t.dim() - 1) + (t.shape[-1],), dtype=t.dtype)

    tiny_mask = None if mask is None else torch.zeros((1,) * mask.dim(), dtype=mask.dtype)
    choice = torch._fused_sdp_choice(tiny(q), tiny(k), tiny(v), tiny_mask, dropout, causal, scale=scale)
    return choice == int(torch.nn.attention.SDPBackend.FLASH_ATTENTION)


def _meta_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """Scaled-dot-product attention on meta tensors as the CPU runs it.

    The CPU picks flash attention where it can (it keeps q, k, v, the output and a log-sum-exp), the meta
    device always the math path (it keeps the attention matrix), so meta tensors are given the CPU's choice."""
    if not enable_gqa and _cpu_picks_flash(q, k, v, attn_mask, dropout_p, is_causal, scale):
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, dropout_p, is_causal, attn_mask=attn_mask, scale=scale)[0]
    return torch.ops.aten._scaled_dot_product_attention_math(
        q, k, v, attn_mask, dropout_p, is_causal, None, scale=scale, enable_gqa=enable_gqa)[0]


_ATTENTION_LIB: list[torch.library.Library] = []


def _cpu_faithful_attention() -> None:
    """Register `_meta_attention` for meta tensors (autograd level, once per process)."""
    if not _ATTENTION_LIB:
        lib = torch.library.Library("aten", "IMPL")
        lib.impl("scaled_dot_product_attention", _meta_attention, "AutogradMeta")
        _ATTENTION_LIB.append(lib)


def _first_tensor(value) -> torch.Tensor | None:
    return next(iter(tensors_in(value)), None)


def _logits(output) -> torch.Tensor:
    """The classification output of a forward (torchvision's GoogLeNet / Inception outputs included)."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    return logits if isinstance(logits, torch.Tensor) else _first_tensor(output)


_LOCK = threading.Lock()  # the recorded model is shared (cached walks): one recording at a time


def _steady_state_adam(params: list[nn.Parameter]) -> torch.optim.Adam | None:
    """Adam over the trainable parameters with the state its first step leaves (as in every later step)."""
    if not params:
        return None
    optimizer = torch.optim.Adam(params, lr=1e-3)
    for p in params:  # what Adam's first step creates: a step count and two moments per parameter
        # empty_like: on the meta device only the moments' sizes count (zeros_like's meta kernel is Python)
        optimizer.state[p] = {"step": torch.tensor(1.0), "exp_avg": torch.empty_like(p),
                              "exp_avg_sq": torch.empty_like(p)}
    return optimizer


def record_step(model: nn.Module, trainable: set[str], batch: int, sample_shape: tuple[int, ...],
                step_live: tuple[int, ...] | None = None) -> StepRun:
    """Run one training step of `model` (on the meta device) at `batch` and record saves and live memory.

    `step_live` (a recording's `StepRun.step_live` with the same trainable set, at another batch size)
    replays that optimizer step instead of simulating it: the step's tensors do not depend on the batch."""
    with _LOCK:
        named = list(model.named_parameters())
        flags = [p.requires_grad for _, p in named]
        collecting = gc.isenabled()
        gc.disable()  # tensors die by reference count alone, at the same point at every batch size
        try:
            for n, p in named:
                p.requires_grad_(n in trainable)
            return _record(model, named, trainable, batch, sample_shape, step_live)
        finally:
            if collecting:
                gc.enable()
            for (_, p), flag in zip(named, flags):
                p.requires_grad_(flag)
                p.grad = None


def _record(model: nn.Module, named: list[tuple[str, nn.Parameter]], trainable: set[str], batch: int,
            sample_shape: tuple[int, ...], step_live: tuple[int, ...] | None) -> StepRun:
    all_params = [p for _, p in named]
    device = all_params[0].device
    params = [p for n, p in named if n in trainable]
    optimizer = _steady_state_adam(params)
    model.train()
    sites: list[Site] = []
    calls: dict[str, int] = {}
    stack: list[int] = []
    saved: list[int] = []
    node_site: dict[object, int] = {}
    phase = {"forward": True, "site": -1}
    named_modules = list(model.named_modules())
    modules = [m for _, m in named_modules]
    names = {id(m): n for n, m in named_modules}
    leaves = {id(m) for m in modules if not any(True for _ in m.children())}
    buffers = list(model.buffers())
    excluded = {t.untyped_storage()._cdata for t in (*all_params, *buffers)}
    seen: dict[int, weakref.ref] = {}  # saved storages still alive (a key leaves with its storage: none is reused)

    def new_site(name: str, module: str, type_name: str, leaf: bool) -> int:
        sites.append(Site(name, module, type_name, leaf, ()))
        saved.append(0)
        return len(sites) - 1

    def current_site() -> int:
        if phase["forward"]:
            return stack[-1] if stack else phase["site"]
        node = torch._C._current_autograd_node()
        return node_site.get(node, phase["site"]) if node is not None else phase["site"]

    def label(tensors, site: int) -> None:
        """Charge every not yet labelled autograd node reachable from `tensors` to `site`."""
        todo = [t.grad_fn for t in tensors if t.grad_fn is not None]
        while todo:
            node = todo.pop()
            if node in node_site:
                continue
            node_site[node] = site
            todo.extend(n for n, _ in node.next_functions if n is not None and n not in node_site)

    def pre_hook(module, args, kwargs):
        label(tensors_in(args) + tensors_in(kwargs) if kwargs else tensors_in(args), current_site())
        name = names.get(id(module), "")
        count = calls.get(name, 0) + 1
        calls[name] = count
        display = (name or ROOT_SITE) if count == 1 else f"{name or ROOT_SITE}#{count}"
        stack.append(new_site(display, name, type(module).__name__, id(module) in leaves))

    def post_hook(module, args, kwargs, output):
        site = stack.pop()
        label(tensors_in(output), site)
        out = _first_tensor(output)
        if out is not None:
            s = sites[site]
            sites[site] = Site(s.name, s.module, s.type, s.leaf, tuple(out.shape))

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        key = storage._cdata
        if stack and key not in excluded and key not in seen:  # the model's saves; the loss's stay out
            seen[key] = weakref.ref(storage, lambda _, k=key: seen.pop(k, None))
            saved[stack[-1]] += storage.nbytes()
        return t

    handles = []
    for module in modules:
        handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
        handles.append(module.register_forward_hook(post_hook, with_kwargs=True))
    state_tensors = [t for s in (optimizer.state.values() if optimizer else ()) for t in s.values()
                     if isinstance(t, torch.Tensor)]
    param_bytes = sum(p.untyped_storage().nbytes() for p in all_params)
    tracker = _StorageTracker(current_site)
    for t in (*all_params, *buffers, *state_tensors):
        tracker.track(t)
    base_state = tracker.current - param_bytes  # buffers and optimizer state
    x = torch.empty(batch, *sample_shape, device=device)
    y = torch.zeros(batch, dtype=torch.long, device=device)
    tracker.track(x)
    tracker.track(y)
    try:
        _cpu_faithful_attention()
        with tracker, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                torch.enable_grad():
            output = _logits(model(x))
            phase["site"] = new_site(LOSS_SITE, "", "CrossEntropyLoss", False)
            loss = F.cross_entropy(output, y)
            label([loss], phase["site"])
            forward_events = len(tracker.live)  # the loss's included
            if loss.requires_grad:
                phase["forward"] = False
                del output
                loss.backward()
            phase["site"] = new_site(STEP_SITE, "", "Adam", False)
            phase["forward"] = False
            mark, start = len(tracker.live), tracker.current
            if step_live is not None:
                for extra in step_live:
                    tracker.event(start + extra)
            else:
                if optimizer is not None:
                    optimizer.step()
                if mark == len(tracker.live):  # nothing trains: the step still holds what is live now
                    tracker.event(tracker.current)
    except (RuntimeError, AssertionError, ValueError, NotImplementedError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TinyTLError(f"cannot simulate a training step at batch {batch}: {first}") from None
    finally:
        for h in handles:
            h.remove()
    events = len(tracker.live)
    grads = _grads_by_event(params, events, tracker.born)
    state = tuple(base_state + g for g in grads)
    return StepRun(batch=batch, sites=tuple(sites), saved=tuple(saved),
                   live=tuple(v - param_bytes for v in tracker.live), event_site=tuple(tracker.sites),
                   event_forward=(True,) * forward_events + (False,) * (events - forward_events), state=state,
                   param_bytes=param_bytes, step_live=tuple(v - start for v in tracker.live[mark:]))


def _grads_by_event(params: list[nn.Parameter], n_events: int, born: dict[int, int]) -> list[int]:
    """Per event, bytes of the final gradients already live (their storages are created in the backward)."""
    steps = [0] * (n_events + 1)
    for p in params:
        if p.grad is None:
            continue
        storage = p.grad.untyped_storage()
        steps[min(born.get(storage._cdata, 0), n_events)] += storage.nbytes()
    out, total = [], 0
    for i in range(n_events):
        total += steps[i]
        out.append(total)
    return out
