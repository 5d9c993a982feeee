"""Every range rule for user input, written once: the library raises TinyTLError with them, the CLI wraps them
as argparse types (one line on stderr, exit 2) and the app shows the same message with st.error."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from typing import Any

from tinytl.errors import TinyTLError

MIN_RESOLUTION = 32  # smaller inputs vanish in the stride-32 backbones
MAX_TRAIN_RESOLUTION = 1024  # commands that allocate real tensors (analysis on the meta device has no cap)
MAX_SEED = 2**32 - 1  # what numpy and torch generators accept
MAX_THREADS = 1024
MAX_CLASSES = 100_000


def check_int(name: str, value: Any, low: int, high: int | None = None) -> int:
    """An integer (not a bool) in [low, high]."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        span = f">= {low}" if high is None else f"in {low}..{high}"
        raise TinyTLError(f"{name} must be an integer {span}, got {value!r}")
    return value


def check_float(name: str, value: Any, low: float, high: float | None = None, low_inclusive: bool = False) -> float:
    """A finite number above low (or at it when low_inclusive) and below high."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= low if low_inclusive else value > low) and (high is None or value < high)
    if not ok:
        span = f"{'>=' if low_inclusive else '>'} {low}" + ("" if high is None else f" and < {high}")
        raise TinyTLError(f"{name} must be a finite number {span}, got {value!r}")
    return float(value)


def check_resolution(value: Any, high: int | None = None) -> int:
    """Input size in pixels: >= 32, and at most `high` where real tensors are allocated."""
    return check_int("resolution", value, MIN_RESOLUTION, high)


def train_resolution(value: Any) -> int:
    """A resolution for a command that allocates real tensors (capped, unlike analysis)."""
    return check_resolution(value, MAX_TRAIN_RESOLUTION)


def check_resolutions(values: Sequence[Any], high: int | None = MAX_TRAIN_RESOLUTION) -> tuple[int, ...]:
    """A non-empty list of resolutions, each valid."""
    if not values:
        raise TinyTLError("resolutions must list at least one size")
    return tuple(check_int("each of the resolutions", v, MIN_RESOLUTION, high) for v in values)


def check_batch_size(value: Any) -> int:
    return check_int("batch size", value, 1)


def check_seed(value: Any) -> int:
    return check_int("seed", value, 0, MAX_SEED)


def check_threads(value: Any) -> int:
    return check_int("threads", value, 1, MAX_THREADS)


def check_classes(value: Any) -> int:
    return check_int("classes", value, 1, MAX_CLASSES)


def check_lr(value: Any, name: str = "learning rate") -> float:
    return check_float(name, value, 0.0, 10.0)


def check_label_smoothing(value: Any) -> float:
    return check_float("label smoothing", value, 0.0, 1.0, low_inclusive=True)


def check_frozen_bits(value: Any) -> int:
    """Bits per frozen weight: 1..32 (32 = fp32, unquantized)."""
    return check_int("frozen bits", value, 1, 32)


def _as_number(text: str, kind: type) -> int | float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") \
            from None


def arg(check: Callable[[Any], Any], kind: type = int) -> Callable[[str], Any]:
    """An argparse type: parse the text as `kind`, then apply a check (its message becomes argparse's)."""
    def parse(text: str) -> Any:
        try:
            return check(_as_number(text, kind))
        except TinyTLError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    parse.__name__ = getattr(check, "__name__", "value")
    parse.checked_number = True  # marks a checked numeric flag (the flag table test looks for it)
    return parse


def arg_list(check: Callable[[Any], Any], kind: type = int) -> Callable[[str], list]:
    """An argparse type for comma-separated values, each parsed as `kind` and checked."""
    one = arg(check, kind)

    def parse(text: str) -> list:
        values = [one(v.strip()) for v in text.split(",") if v.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"expected comma-separated values, got {text!r}")
        return values
    parse.checked_number = True
    return parse


def at_least(name: str, low: int, high: int | None = None) -> Callable[[Any], int]:
    """A named integer check, for flags without a rule of their own."""
    return lambda value: check_int(name, value, low, high)


def positive_float(name: str) -> Callable[[Any], float]:
    return lambda value: check_float(name, value, 0.0)
