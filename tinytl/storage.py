"""Torch files the project stores (checkpoints, super-nets, predictors): fp16 compaction, safe one-line-error loads."""

from __future__ import annotations

import os
import tempfile
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


def check_output_path(path: str | Path, what: str = "output file") -> Path:
    """`path` if a file can be written there (checked before any work starts), else one TinyTLError line."""
    path = Path(path).expanduser()
    if not str(path) or path.is_dir() or (path.exists() and not path.is_file()):
        raise TinyTLError(f"{what} {str(path)!r} is not a regular file path")
    parent = next((p for p in (path.parent, *path.parent.parents) if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise TinyTLError(f"{what} {str(path)!r} cannot be written ({parent} is not a writable folder)")
    return path


def _write_atomic(path: str | Path, write) -> int:
    """Write through a temporary file in the same folder, then rename: a failed write leaves the old file intact."""
    path = check_output_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise TinyTLError(f"cannot write {path}: {err.strerror or err}") from None
        raise
    return path.stat().st_size


def save_file(obj: dict, path: str | Path) -> int:
    """torch.save into `path` atomically (parents created); return the file size in bytes."""
    return _write_atomic(path, lambda handle: torch.save(obj, handle))


def write_text(text: str, path: str | Path) -> int:
    """Write a text file atomically (parents created); return its size in bytes."""
    return _write_atomic(path, lambda handle: handle.write(text.encode()))


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
