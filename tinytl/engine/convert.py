"""Convert a model to the memory-lean engine in place, and back.

Every supported layer becomes its engine subclass (the same module object, so Parameter objects and
names are unchanged and `trainable_names` / optimizers keep working). In `recompute` mode each
outermost residual block additionally keeps only its input and re-runs its forward during backward.
"""

from __future__ import annotations

import torch
from torch import nn

from tinytl.engine.functional import RecomputeFn
from tinytl.engine.modules import ENGINE_CLASSES, EngineModule
from tinytl.engine.quantize import check_quant_bits, dequantize_weight, quantize_frozen_weight
from tinytl.errors import TinyTLError
from tinytl.models.registry import BLOCK_TYPES

ENGINE_MODES = ("exact", "recompute")
# Units the recompute mode re-runs: the outermost of these in the module tree.
RECOMPUTE_BLOCKS = BLOCK_TYPES
_RECOMPUTE_CLASSES: dict[type[nn.Module], type[nn.Module]] = {}


class RecomputeBlock(EngineModule):
    """Mixin running a block through RecomputeFn whenever autograd needs anything from it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = tuple(p for p in self.parameters() if p.requires_grad)
        if not torch.is_grad_enabled() or not (x.requires_grad or params):
            return super().forward(x)
        return RecomputeFn.apply(super().forward, x, *params)


def _recompute_class(stock: type[nn.Module]) -> type[nn.Module]:
    if stock not in _RECOMPUTE_CLASSES:
        _RECOMPUTE_CLASSES[stock] = type(f"Recompute{stock.__name__}", (RecomputeBlock, stock),
                                         {"stock_class": stock, "__doc__": f"{stock.__name__}, recomputed in backward."})
    return _RECOMPUTE_CLASSES[stock]


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
    blocks: list[nn.Module] = []
    inside_blocks: set[int] = set()
    for module in model.modules():  # pre-order: an outer block comes before the blocks it holds
        if mode == "recompute" and isinstance(module, RECOMPUTE_BLOCKS) and id(module) not in inside_blocks:
            blocks.append(module)
            inside_blocks.update(id(m) for m in module.modules())
        if _convertible(module):
            module.__class__ = ENGINE_CLASSES[type(module)]
            if frozen_bits is not None and isinstance(module, (nn.Conv2d, nn.Linear)):
                quantize_frozen_weight(module, frozen_bits)
    for block in blocks:
        block.__class__ = _recompute_class(type(block))
    return model


def restore_model(model: nn.Module) -> nn.Module:
    """Turn every engine module back into its stock class, in place (quantised weights are dequantised)."""
    for module in model.modules():
        if isinstance(module, EngineModule):
            dequantize_weight(module)
            module.__class__ = module.stock_class
    return model
