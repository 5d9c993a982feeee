"""Torch files the project stores (checkpoints, super-nets, predictors): fp16 compaction, safe one-line-error loads."""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

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


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """The parsed content of a JSON file, or one TinyTLError line when it cannot be read or parsed."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise TinyTLError(f"cannot read {what} {str(path)!r}: {err}") from None


def check_input_file(path: str | Path, what: str = "file", hint: str = "") -> Path:
    """`path` if it names an existing regular file, else one TinyTLError line (a folder, pipe or device is refused
    before anything opens it: reading a FIFO would block forever); `hint` follows the not-found message."""
    path = Path(path).expanduser()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise TinyTLError(f"{what} {str(path)!r} not found{f' ({hint})' if hint else ''}") from None
    except (OSError, ValueError) as err:  # ValueError: a NUL byte in the name
        raise TinyTLError(f"cannot read {what} {str(path)!r:.200}: {getattr(err, 'strerror', None) or err}") from None
    if not stat.S_ISREG(mode):
        raise TinyTLError(f"{what} {str(path)!r} is not a regular file (a folder, pipe or device)")
    return path


def load_file(path: str | Path, what: str = "checkpoint", keys: Iterable[str] = ()) -> object:
    """torch.load with weights_only; a missing or non-regular path, a damaged file, or a dict without `keys`,
    raises one TinyTLError line."""
    path = check_input_file(path, what)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  torch.load surfaces garbage as any of a dozen error types
        raise TinyTLError(f"cannot read {what} {path}: not a valid PyTorch file "
                          f"({str(err).splitlines()[0][:120] if str(err) else type(err).__name__})") from None
    missing = [k for k in keys if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise TinyTLError(f"{path} is not a {what} (it lacks {', '.join(missing)})")
    return obj


# Field rules for stored files: each is (test, what the field must be); `check_fields` applies them.
FieldRule = tuple[Callable[[Any], bool], str]


def is_int_in(low: int, high: int | None = None) -> Callable[[Any], bool]:
    """A test: an integer (not a bool) in [low, high]."""
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low and (high is None or v <= high)


def is_number(value: Any, finite: bool = True, low: float | None = None, high: float | None = None) -> bool:
    """An int or float (not a bool), finite unless `finite` is False (NaN then passes), within [low, high]."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    if math.isnan(value) or math.isinf(value):
        return not finite and math.isnan(value)
    return (low is None or value >= low) and (high is None or value <= high)


def is_tensor_dict(value: Any) -> bool:
    """A non-empty dict of name -> tensor (a state dict)."""
    return (isinstance(value, dict) and bool(value)
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()))


def is_json_like(value: Any, depth: int = 0) -> bool:
    """Plain data JSON can hold (dicts with str keys, lists, str, finite or NaN numbers, bool, None), at most 64
    levels deep: metadata that is later printed or written as JSON."""
    if depth > 64:
        return False
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return not math.isinf(value)
    if isinstance(value, (list, tuple)):
        return all(is_json_like(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_json_like(v, depth + 1) for k, v in value.items())
    return False


def _shown(value: Any) -> str:
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def check_fields(obj: Mapping, rules: Mapping[str, FieldRule], path: str | Path, what: str,
                 required: Iterable[str] = (), prefix: str = "") -> None:
    """Each field of `obj` that has a rule passes it, and each `required` field is there; else one TinyTLError
    naming the file and the field (`prefix` names a nested dict, as 'metrics.')."""
    for name in required:
        if name not in obj:
            raise TinyTLError(f"{what} {path} is damaged: it lacks field {prefix}{name!s}")
    for name, (test, expected) in rules.items():
        if name in obj and not test(obj[name]):
            raise TinyTLError(f"{what} {path} is damaged: field {prefix}{name} must be {expected}, "
                              f"got {_shown(obj[name])}")
