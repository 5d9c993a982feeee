"""Where files live: the shipped assets (package data) and the user data folder commands write to by default."""

from __future__ import annotations

import os
import re
from importlib.resources import files
from pathlib import Path

from tinytl.errors import TinyTLError


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


APP_PATHS_ENV = "TINYTL_APP_PATHS"
_WEIGHT_NAME = re.compile(r"\w+_Weights\.\w+")  # a torchvision weight enum, e.g. MobileNet_V2_Weights.IMAGENET1K_V1


def app_path_roots() -> tuple[Path, ...]:
    """The folders the app opens typed paths under: the shipped assets, the user data folder, and the folders
    listed in $TINYTL_APP_PATHS (separated by the system's path separator)."""
    extra = [Path(p).expanduser() for p in os.environ.get(APP_PATHS_ENV, "").split(os.pathsep) if p]
    return tuple(p.resolve() for p in (shipped_asset(""), user_data_dir(), *extra))


def check_app_path(value: str, what: str, weight_names: bool = False) -> str:
    """A path typed into the app, allowed only under app_path_roots(); every refused path gets the same message,
    so a demo shown to others reveals nothing about what exists elsewhere on the server."""
    if weight_names and _WEIGHT_NAME.fullmatch(value):
        return value
    roots = app_path_roots()
    try:
        path = Path(value).expanduser().resolve()
    except (OSError, RuntimeError):  # a symlink loop: refused like any other path outside the roots
        path = None
    if path is None or not any(path.is_relative_to(root) for root in roots):
        raise TinyTLError(f"the app opens a {what} only from {' or '.join(map(str, roots))} (set {APP_PATHS_ENV} "
                          "to allow more folders)")
    return value
