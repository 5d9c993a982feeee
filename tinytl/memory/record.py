"""Record one stock training step on the meta device: what autograd saves, and every live storage over time.

A step is forward, cross-entropy loss, backward and an Adam step with its state already there (a training
loop's steady state). Nothing real is allocated: the model's parameters are meta tensors, and a
`TorchDispatchMode` follows every storage an op returns until its last tensor dies, as PyTorch's
MemTracker does in fake mode. `torch.autograd.graph.saved_tensors_hooks` sees each tensor a backward
node keeps (deduplicated by storage, parameters and buffers excluded). Both are charged to the innermost
module running, forward (module hooks) or backward (the autograd node being run, labelled with the module
whose forward created it), so functional code counts towards its enclosing module.
"""

from __future__ import annotations

import gc
import threading
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from tinytl.errors import TinyTLError
from tinytl.memory.meta_kernels import NOT_HANDLED, run_meta

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


class _StorageTracker(TorchDispatchMode):
    """Live bytes of every storage created while active (plus the given ones), one event per op."""

    def __init__(self, on_event) -> None:
        super().__init__()
        self._live: dict[int, int] = {}
        self.born: dict[int, int] = {}  # storage -> index of the event that created it
        self.current = 0
        self.events = 0
        self._on_event = on_event

    def track(self, t: torch.Tensor) -> int:
        """Count a tensor's storage from now until it dies; return its key."""
        storage = t.untyped_storage()
        key = storage._cdata
        if key not in self._live:
            self._live[key] = storage.nbytes()
            self.born[key] = self.events
            self.current += storage.nbytes()
            weakref.finalize(storage, self._free, key)
        return key

    def _free(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = run_meta(func, args, kwargs)
        if out is NOT_HANDLED:
            out = func(*args, **kwargs)
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.track(t)
        self._on_event(self.current)
        self.events += 1
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
    return next((t for t in tree_leaves(value) if isinstance(t, torch.Tensor)), None)


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
        optimizer.state[p] = {"step": torch.tensor(1.0), "exp_avg": torch.zeros_like(p),
                              "exp_avg_sq": torch.zeros_like(p)}
    return optimizer


def record_step(model: nn.Module, trainable: set[str], batch: int, sample_shape: tuple[int, ...]) -> StepRun:
    """Run one training step of `model` (on the meta device) at `batch` and record saves and live memory."""
    with _LOCK:
        flags = {n: p.requires_grad for n, p in model.named_parameters()}
        collecting = gc.isenabled()
        gc.disable()  # tensors die by reference count alone, at the same point at every batch size
        try:
            for n, p in model.named_parameters():
                p.requires_grad_(n in trainable)
            return _record(model, trainable, batch, sample_shape)
        finally:
            if collecting:
                gc.enable()
            for n, p in model.named_parameters():
                p.requires_grad_(flags[n])
                p.grad = None


def _record(model: nn.Module, trainable: set[str], batch: int, sample_shape: tuple[int, ...]) -> StepRun:
    device = next(model.parameters()).device
    params = [p for n, p in model.named_parameters() if n in trainable]
    optimizer = _steady_state_adam(params)
    model.train()
    sites: list[Site] = []
    calls: dict[str, int] = {}
    stack: list[int] = []
    saved: list[int] = []
    node_site: dict[object, int] = {}
    live: list[int] = []
    event_site: list[int] = []
    event_forward: list[bool] = []
    phase = {"forward": True, "site": -1}
    names = {id(m): n for n, m in model.named_modules()}
    leaves = {id(m) for m in model.modules() if not any(True for _ in m.children())}
    param_keys = {p.untyped_storage()._cdata for p in model.parameters()}
    excluded = param_keys | {b.untyped_storage()._cdata for b in model.buffers()}
    seen: set[int] = set()  # saved storages still alive (a key leaves with its storage, so none is reused)

    def new_site(name: str, module: str, type_name: str, leaf: bool) -> int:
        sites.append(Site(name, module, type_name, leaf, ()))
        saved.append(0)
        return len(sites) - 1

    def current_site() -> int:
        if phase["forward"]:
            return stack[-1] if stack else phase["site"]
        node = torch._C._current_autograd_node()
        return node_site.get(node, phase["site"]) if node is not None else phase["site"]

    def on_event(current: int) -> None:
        live.append(current - param_bytes)
        event_site.append(current_site())
        event_forward.append(phase["forward"])

    def label(tensors, site: int) -> None:
        """Charge every not yet labelled autograd node reachable from `tensors` to `site`."""
        todo = [t.grad_fn for t in tensors if isinstance(t, torch.Tensor) and t.grad_fn is not None]
        while todo:
            node = todo.pop()
            if node in node_site:
                continue
            node_site[node] = site
            todo.extend(n for n, _ in node.next_functions if n is not None and n not in node_site)

    def pre_hook(module, args, kwargs):
        label(tree_leaves((args, kwargs)), current_site())
        name = names.get(id(module), "")
        count = calls.get(name, 0) + 1
        calls[name] = count
        display = (name or ROOT_SITE) if count == 1 else f"{name or ROOT_SITE}#{count}"
        stack.append(new_site(display, name, type(module).__name__, id(module) in leaves))

    def post_hook(module, args, kwargs, output):
        site = stack.pop()
        label(tree_leaves(output), site)
        out = _first_tensor(output)
        if out is not None:
            s = sites[site]
            sites[site] = Site(s.name, s.module, s.type, s.leaf, tuple(out.shape))

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        key = storage._cdata
        if stack and key not in excluded and key not in seen:  # the model's saves; the loss's stay out
            seen.add(key)
            weakref.finalize(storage, seen.discard, key)
            saved[stack[-1]] += storage.nbytes()
        return t

    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
        handles.append(module.register_forward_hook(post_hook, with_kwargs=True))
    state_tensors = [t for s in (optimizer.state.values() if optimizer else ()) for t in s.values()
                     if isinstance(t, torch.Tensor)]
    param_bytes = sum(p.untyped_storage().nbytes() for p in model.parameters())
    tracker = _StorageTracker(on_event)
    for t in (*model.parameters(), *model.buffers(), *state_tensors):
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
            if loss.requires_grad:
                phase["forward"] = False
                del output
                loss.backward()
            phase["site"] = new_site(STEP_SITE, "", "Adam", False)
            phase["forward"] = False
            mark = len(live)
            if optimizer is not None:
                optimizer.step()
            if mark == len(live):  # nothing trains: the step still holds what is live now
                on_event(tracker.current)
    except (RuntimeError, AssertionError, ValueError, NotImplementedError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TinyTLError(f"cannot simulate a training step at batch {batch}: {first}") from None
    finally:
        for h in handles:
            h.remove()
    grads = _grads_by_event(params, len(live), tracker.born)
    state = tuple(base_state + g for g in grads)
    return StepRun(batch=batch, sites=tuple(sites), saved=tuple(saved), live=tuple(live),
                   event_site=tuple(event_site), event_forward=tuple(event_forward), state=state,
                   param_bytes=param_bytes)


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
