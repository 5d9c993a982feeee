"""Where files live: the shipped assets (package data) and the user data folder commands write to by default."""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path


def shipped_asset(name: str) -> Path:
    """A file shipped in the package (`tinytl/assets`, installed as package data, so any install finds it)."""
    return Path(str(files("tinytl.assets").joinpath(name)))


def user_data_dir() -> Path:
    """$TINYTL_HOME, else ($XDG_DATA_HOME or ~/.local/share)/tinytl."""
    home = os.environ.get("TINYTL_HOME")
    if home:
        return Path(home).expanduser()
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "tinytl"


def output_path(value: str | None, default_name: str, what: str) -> Path:
    """A command's --out: the given path (checked before any work), or `default_name` in the user data folder."""
    from tinytl.storage import check_output_path

    return check_output_path(user_data_dir() / default_name if value is None else value, what)
