"""Torch files the project stores (checkpoints, super-nets, predictors): fp16 compaction, safe one-line-error loads."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from tinytl.errors import TinyTLError


def to_half(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating tensors in fp16 (halves a file; weights trained in fp32 lose nothing a demo can see)."""
    return {k: v.detach().half() if v.is_floating_point() else v.detach() for k, v in state.items()}


def to_float(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating tensors back to fp32 for training."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def save_file(obj: dict, path: str | Path) -> int:
    """torch.save into `path` (parents created); return the file size in bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path.stat().st_size


def load_file(path: str | Path, what: str = "checkpoint", keys: Iterable[str] = ()) -> object:
    """torch.load with weights_only; a damaged file, or a dict without `keys`, raises one TinyTLError line."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  torch.load surfaces garbage as any of a dozen error types
        raise TinyTLError(f"cannot read {what} {path}: not a valid PyTorch file "
                          f"({str(err).splitlines()[0][:120] if str(err) else type(err).__name__})") from None
    missing = [k for k in keys if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise TinyTLError(f"{path} is not a {what} (it lacks {', '.join(missing)})")
    return obj
