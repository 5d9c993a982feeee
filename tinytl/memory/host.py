"""The machine's own memory: refuse a job whose predicted peak does not fit before it allocates anything."""

from __future__ import annotations

from pathlib import Path

from tinytl.errors import TinyTLError
from tinytl.memory.report import MB


def host_available_bytes() -> int | None:
    """Memory this machine can give a new job now (Linux MemAvailable); None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_fits_host(needed_bytes: float, what: str, device: str = "cpu") -> None:
    """One line instead of an out-of-memory kill (or a machine swapping for minutes) when a job cannot fit."""
    if device == "cuda":
        import torch

        available: int | None = torch.cuda.mem_get_info()[0]
        where = "free GPU memory"
    else:
        available, where = host_available_bytes(), "available memory"
    if available is not None and needed_bytes > available:
        raise TinyTLError(f"{what} needs about {needed_bytes / MB:,.0f} MB (predicted before allocating) but this "
                          f"machine has {available / MB:,.0f} MB of {where}: lower the batch size, resolution or "
                          "classes")
