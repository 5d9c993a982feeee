"""Frozen conv / linear weights held at low precision (per-layer affine codes), dequantised on the fly.

The paper stores frozen weights in 8 bits. Here a frozen weight's Parameter keeps its name and object
but its data is emptied; the codes (one uint8 per element) and the layer's scale and offset live in
buffers, so the memory saving is real and counted as buffer bytes. Dequantisation is a transient,
weight-sized tensor. Restoring writes the dequantised values back (rounding error included).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from tinytl.errors import TinyTLError

MAX_BITS = 8


def check_quant_bits(bits: int | None) -> int | None:
    """None (off) or an integer in 1..8: codes are held one per byte."""
    if bits is None:
        return None
    if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= MAX_BITS:
        raise TinyTLError(f"engine frozen bits must be an integer in 1..{MAX_BITS} (or None), got {bits!r}")
    return bits


def quantize(weight: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer affine quantisation: (uint8 codes, [scale, offset]) with 2**bits levels over [min, max]."""
    lo, hi = weight.min(), weight.max()
    scale = torch.clamp((hi - lo) / (2 ** bits - 1), min=torch.finfo(weight.dtype).tiny)
    codes = torch.round((weight - lo) / scale).to(torch.uint8)
    return codes, torch.stack([scale, lo])


def dequantize(codes: torch.Tensor, qparams: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Float weight from codes: code * scale + offset."""
    return codes.to(dtype) * qparams[0] + qparams[1]


class QuantizedWeight:
    """Mixin for engine conv / linear modules whose frozen weight may be held as low-precision codes."""

    def weight_dequantizer(self) -> Callable[[], torch.Tensor] | None:
        """A callable rebuilding the float weight, or None when the weight is held in full precision."""
        codes = self._buffers.get("weight_codes")
        if codes is None:
            return None
        if self.weight.requires_grad:
            raise TinyTLError("a weight quantized at conversion cannot train: restore the model, apply the "
                              "policy, then convert again")
        return partial(dequantize, codes, self.weight_qparams, self.weight.dtype)


def quantize_frozen_weight(module: nn.Module, bits: int) -> bool:
    """Hold the module's frozen weight as codes (in place); False when the weight trains or is absent."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, nn.Parameter) or weight.requires_grad or weight.numel() == 0:
        return False
    codes, qparams = quantize(weight.detach(), bits)
    module.register_buffer("weight_codes", codes)
    module.register_buffer("weight_qparams", qparams)
    weight.data = weight.data.new_empty(0)
    return True


def dequantize_weight(module: nn.Module) -> None:
    """Undo `quantize_frozen_weight`: the Parameter gets the dequantised values back; buffers go."""
    codes = module._buffers.pop("weight_codes", None)
    if codes is None:
        return
    qparams = module._buffers.pop("weight_qparams")
    module.weight.data = dequantize(codes, qparams, module.weight.dtype)
