"""One forward walk of a model on the meta device, recording every leaf layer the memory views price.

Nothing real is allocated: the walk runs on meta tensors at batch 1 with every parameter requiring a
gradient, so autograd's graph tells which earlier layers feed each layer (its `ancestors`). A policy is
applied afterwards, by name, without walking again. The walk, and the build it walks, run their ops through
the fast meta kernels (`tinytl.memory.meta_kernels`): same shapes, a fraction of the Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from tinytl.errors import TinyTLError
from tinytl.memory.meta_kernels import FastMetaMode
from tinytl.models.registry import BLOCK_TYPES
from tinytl.models.setting import ModelSetting
from tinytl.models.torchvision_backbones import RESNET_BLOCKS, InvertedResidualV2, InvertedResidualV3
from tinytl.policies import NORM_TYPES



@dataclass(frozen=True)
class LayerRecord:
    """A leaf layer call as seen in the forward walk (per sample: batch 1)."""

    index: int
    name: str
    type: str
    kind: str  # conv | linear | norm | relu | act | dropout | other (see layer_kind)
    module: nn.Module = field(repr=False, compare=False)
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_numel: int
    output_numel: int
    params: dict[str, int]  # full parameter name -> numel, for this layer's own parameters
    residual_numel: int  # input size of the enclosing identity-shortcut block, 0 outside one
    block: str  # name of the enclosing block ('' outside one)
    ancestors: int  # bit i set when layer i feeds this layer's input through autograd
    # earlier (layer, "input" | "output") pairs whose tensor lives in this layer's input storage (same memory)
    input_peers: tuple[tuple[LayerRecord, str], ...] = field(default=(), repr=False, compare=False)
    recompute_block: str = ""  # outermost enclosing block the engine's recompute mode re-runs ('' outside one)
    closes_block_input_numel: int = 0  # first layer after such a block: that block's input size (its consumer)

    @property
    def num_params(self) -> int:
        return sum(self.params.values())


@dataclass(frozen=True)
class ModelTrace:
    """The cached, policy-independent result of a walk: layers, parameter sizes, buffers."""

    backbone: str
    resolution: int
    num_classes: int
    lite_residual: bool
    norm: str
    model: nn.Module = field(repr=False)
    layers: tuple[LayerRecord, ...]
    param_numels: dict[str, int]
    buffer_numel: int
    input_shape: tuple[int, ...]

    @property
    def num_params(self) -> int:
        return sum(self.param_numels.values())


RELU_TYPES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU)
FULL_ACT_TYPES = (nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.GELU, nn.Mish)


def layer_kind(module: nn.Module) -> str:
    """Coarse layer class the memory rules dispatch on."""
    kinds = ((nn.modules.conv._ConvNd, "conv"), (nn.Linear, "linear"), (NORM_TYPES, "norm"),
             (RELU_TYPES, "relu"), (FULL_ACT_TYPES, "act"), (nn.modules.dropout._DropoutNd, "dropout"))
    return next((kind for types, kind in kinds if isinstance(module, types)), "other")


def has_identity_shortcut(module: nn.Module) -> bool:
    """Blocks the paper's profiler treats as residual: their input stays alive while the block runs."""
    if isinstance(module, RESNET_BLOCKS):
        return True
    if isinstance(module, (InvertedResidualV2, InvertedResidualV3)):
        return bool(module.use_res_connect)
    return bool(getattr(module, "identity_shortcut", False))


def _storage_id(t: torch.Tensor | None) -> int:
    return t.untyped_storage()._cdata if t is not None else -1


def leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every module without children: the layers the views price and the counters attribute to."""
    return [(n, m) for n, m in model.named_modules() if n and not any(True for _ in m.children())]


def trace_model(model: nn.Module, resolution: int, backbone: str = "custom", num_classes: int = 0,
                lite_residual: bool = False, norm: str = "", batch: int = 1) -> ModelTrace:
    """Walk `model` (on the meta device) once and record every leaf layer call, per sample.

    The walk runs at batch 1, or at batch 2 (sizes halved) where training-mode BatchNorm meets a 1x1 map
    and needs more than one value per channel."""
    if model.training is False:
        model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    records: list[LayerRecord] = []
    node_layer: dict[object, int] = {}  # autograd node of a layer's output -> its ancestor mask incl. itself
    memo: dict[object, int] = {}
    state = {"residual": 0, "block": "", "pending": {}, "rblock": None, "closing": 0}
    storage_sites: dict[int, list[tuple[LayerRecord, str]]] = {}  # storage -> layers that read or wrote it
    alive: list[torch.Tensor] = []  # keeps walked tensors alive so storage ids are not reused
    calls: dict[str, int] = {}

    def ancestors_of(node) -> int:
        if node is None:
            return 0
        if node in node_layer:
            return node_layer[node]
        if node in memo:
            return memo[node]
        stack, order = [node], []
        # iterative DFS: the graph between two layer outputs can be deep (functional ops, WS)
        seen = set()
        while stack:
            cur = stack.pop()
            if cur in seen or cur in node_layer or cur in memo:
                continue
            seen.add(cur)
            order.append(cur)
            stack.extend(c for c, _ in cur.next_functions if c is not None)
        for cur in reversed(order):
            m = 0
            for c, _ in cur.next_functions:
                if c is not None:
                    m |= node_layer.get(c, memo.get(c, 0))
            memo[cur] = m
        return memo[node]

    def per_sample(shape: torch.Size) -> tuple[int, ...]:
        return (1, *shape[1:]) if batch > 1 and shape and shape[0] == batch else tuple(shape)

    def pre_hook(module, args, name):
        x = args[0] if args and isinstance(args[0], torch.Tensor) else None
        state["pending"][id(module)] = (x, ancestors_of(x.grad_fn) if x is not None else 0)

    def post_hook(module, args, output, name):
        x, anc = state["pending"].pop(id(module))
        out = output if isinstance(output, torch.Tensor) else None
        count = calls.get(name, 0)
        calls[name] = count + 1
        index = len(records)
        records.append(LayerRecord(
            index=index, name=name if count == 0 else f"{name}#{count + 1}", type=type(module).__name__,
            kind=layer_kind(module), module=module,
            input_shape=per_sample(x.shape) if x is not None else (),
            output_shape=per_sample(out.shape) if out is not None else (),
            input_numel=x.numel() // batch if x is not None else 0,
            output_numel=out.numel() // batch if out is not None else 0,
            params={f"{name}.{pn}": p.numel() for pn, p in module.named_parameters(recurse=False)},
            residual_numel=state["residual"], block=state["block"], ancestors=anc,
            recompute_block=state["rblock"][0] if state["rblock"] else "", closes_block_input_numel=state["closing"],
            input_peers=tuple(storage_sites.get(_storage_id(x), ()))))
        state["closing"] = 0
        for role, t in (("input", x), ("output", out)):
            if t is not None:
                storage_sites.setdefault(_storage_id(t), []).append((records[-1], role))
                alive.append(t)
        if out is not None and out.grad_fn is not None:
            node_layer[out.grad_fn] = anc | (1 << index)

    def block_pre(module, args, name):
        state["residual"], state["block"] = args[0].numel() // batch, name

    def rblock_pre(module, args, name):
        if state["rblock"] is None:
            state["rblock"] = (name, module)

    def rblock_post(module, args, output, name):
        if state["rblock"] is not None and state["rblock"][1] is module:
            state["rblock"], state["closing"] = None, args[0].numel() // batch

    def block_post(module, args, output, name):
        state["residual"], state["block"] = 0, ""

    handles = []
    for name, module in leaf_modules(model):
        handles.append(module.register_forward_pre_hook(lambda m, a, n=name: pre_hook(m, a, n)))
        handles.append(module.register_forward_hook(lambda m, a, o, n=name: post_hook(m, a, o, n)))
    for name, module in model.named_modules():
        if name and has_identity_shortcut(module):
            handles.append(module.register_forward_pre_hook(lambda m, a, n=name: block_pre(m, a, n)))
            handles.append(module.register_forward_hook(lambda m, a, o, n=name: block_post(m, a, o, n)))
        if name and isinstance(module, BLOCK_TYPES):
            handles.append(module.register_forward_pre_hook(lambda m, a, n=name: rblock_pre(m, a, n)))
            handles.append(module.register_forward_hook(lambda m, a, o, n=name: rblock_post(m, a, o, n)))
    device = next(model.parameters()).device
    x = torch.empty(batch, 3, resolution, resolution, device=device)
    try:
        with torch.enable_grad(), FastMetaMode():
            model(x)
    except (RuntimeError, AssertionError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if batch == 1 and "more than 1 value per channel" in first:
            for h in handles:
                h.remove()
            return trace_model(model, resolution, backbone, num_classes, lite_residual, norm, batch=2)
        raise TinyTLError(f"{backbone} cannot run at resolution {resolution}: {first}") from None
    finally:
        for h in handles:
            h.remove()
    return ModelTrace(
        backbone=backbone, resolution=resolution, num_classes=num_classes, lite_residual=lite_residual,
        norm=norm, model=model, layers=tuple(records),
        param_numels={n: p.numel() for n, p in model.named_parameters()},
        buffer_numel=sum(b.numel() for b in model.buffers()), input_shape=(1, *x.shape[1:]))


def trace_backbone(model: ModelSetting) -> ModelTrace:
    """Build a model setting on the meta device and walk it (shapes only)."""
    with FastMetaMode():  # builders that run the model on meta (lite-residual hosts' shapes) run it fast too
        built = model.build("meta")
    return trace_model(built, model.resolution, model.backbone, model.classes, model.lite_residual, model.norm)
