"""Convert a model to the memory-lean engine in place, and back; or checkpoint its blocks with stock PyTorch.

Every supported layer becomes its engine subclass (the same module object, so Parameter objects and
names are unchanged and `trainable_names` / optimizers keep working). In `recompute` mode each
outermost residual block additionally keeps only its input and re-runs its forward during backward.
`checkpoint_blocks` wraps the same blocks in `torch.utils.checkpoint` (non-reentrant) instead, leaving
every layer stock: the alternative a PyTorch user would reach for.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from tinytl.engine.functional import RecomputeFn
from tinytl.engine.modules import ENGINE_CLASSES, FOLD_ATTR, EngineConv2d, EngineModule
from tinytl.engine.quantize import check_quant_bits, dequantize_weight, quantize_frozen_weight
from tinytl.errors import TinyTLError
from tinytl.models.registry import BLOCK_TYPES

ENGINE_MODES = ("exact", "recompute")
# Units the recompute mode re-runs: the outermost of these in the module tree.
_BLOCK_CLASSES: dict[tuple[type, type[nn.Module]], type[nn.Module]] = {}


class RecomputeBlock(EngineModule):
    """Mixin running a block through RecomputeFn whenever autograd needs anything from it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = tuple(p for p in self.parameters() if p.requires_grad)
        if not torch.is_grad_enabled() or not (x.requires_grad or params):
            return super().forward(x)
        return RecomputeFn.apply(super().forward, x, *params)


class CheckpointBlock(EngineModule):
    """Mixin running a stock block under torch.utils.checkpoint (use_reentrant=False) when autograd needs it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled() or not (x.requires_grad or any(p.requires_grad for p in self.parameters())):
            return super().forward(x)
        return checkpoint(super().forward, x, use_reentrant=False)


def _block_class(mixin: type, stock: type[nn.Module]) -> type[nn.Module]:
    key = (mixin, stock)
    if key not in _BLOCK_CLASSES:
        prefix = "Recompute" if mixin is RecomputeBlock else "Checkpoint"
        _BLOCK_CLASSES[key] = type(f"{prefix}{stock.__name__}", (mixin, stock),
                                   {"stock_class": stock, "__doc__": f"{stock.__name__}, re-run in backward."})
    return _BLOCK_CLASSES[key]


def outermost_blocks(model: nn.Module) -> list[nn.Module]:
    """The blocks the recompute mode re-runs: instances of the registry's BLOCK_TYPES not inside another one."""
    blocks: list[nn.Module] = []
    inside: set[int] = set()
    for module in model.modules():  # pre-order: an outer block comes before the blocks it holds
        if isinstance(module, BLOCK_TYPES) and id(module) not in inside:
            blocks.append(module)
            inside.update(id(m) for m in module.modules())
    return blocks


def _convertible(module: nn.Module) -> bool:
    if type(module) not in ENGINE_CLASSES:
        return False
    if isinstance(module, nn.Conv2d):
        return module.padding_mode == "zeros" and not isinstance(module.padding, str)
    return True


def is_converted(model: nn.Module) -> bool:
    """True when any module of the model runs on the engine."""
    return any(isinstance(m, EngineModule) for m in model.modules())


def convert_model(model: nn.Module, mode: str = "exact", frozen_bits: int | None = None) -> nn.Module:
    """Swap supported layers (and, in recompute mode, residual blocks) for engine modules, in place.

    `frozen_bits` (1..8) holds every weight that is frozen now (requires_grad False) as per-layer codes.
    Returns the same model object.
    """
    if mode not in ENGINE_MODES:
        raise TinyTLError(f"unknown engine mode {mode!r}; choose one of {', '.join(ENGINE_MODES)}")
    check_quant_bits(frozen_bits)
    if is_converted(model):
        restore_model(model)
    blocks = outermost_blocks(model) if mode == "recompute" else []
    for module in model.modules():
        if _convertible(module):
            module.__class__ = ENGINE_CLASSES[type(module)]
            if frozen_bits is not None and isinstance(module, (nn.Conv2d, nn.Linear)):
                quantize_frozen_weight(module, frozen_bits)
    for block in blocks:
        block.__class__ = _block_class(RecomputeBlock, type(block))
    _pair_conv_norms(model)
    return model


def _pair_conv_norms(model: nn.Module) -> None:
    """Give each engine conv followed by a BatchNorm in an nn.Sequential a reference to that norm, to run the two
    as one when the norm's statistics are fixed (the Sequential guarantees the norm reads only the conv's output).
    Held in the conv's __dict__, outside the module registry: names, state dict and module tree are unchanged."""
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            layers = list(seq.children())
            for conv, norm in zip(layers, layers[1:]):
                if (isinstance(conv, EngineConv2d) and isinstance(norm, nn.BatchNorm2d)
                        and isinstance(norm, EngineModule) and norm.num_features == conv.out_channels):
                    conv.__dict__[FOLD_ATTR] = norm


def checkpoint_blocks(model: nn.Module) -> nn.Module:
    """Stock layers, with each block the recompute mode re-runs under torch.utils.checkpoint; in place.

    `restore_model` undoes it. Batch-statistics BatchNorm inside a block updates its running statistics
    twice per step (forward and re-run), as checkpointing always does.
    """
    if is_converted(model):
        restore_model(model)
    for block in outermost_blocks(model):
        block.__class__ = _block_class(CheckpointBlock, type(block))
    return model


def restore_model(model: nn.Module) -> nn.Module:
    """Turn every engine module back into its stock class, in place (quantised weights are dequantised)."""
    for module in model.modules():
        if isinstance(module, EngineModule):
            dequantize_weight(module)
            module.__dict__.pop(FOLD_ATTR, None)
            module.__class__ = module.stock_class
    return model
