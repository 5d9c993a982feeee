"""Device memory budgets and the verdict for a training setting: fits, tight, or does not fit.

Budgets are the reference list of edge devices (RAM sizes are binary units: 1 KB = 1024 bytes,
1 MB = 2**20 bytes), reported like every other number here in decimal MB.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinytl.errors import TinyTLError
from tinytl.memory.report import MB, MemoryReport

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIGHT_MARGIN = 0.10  # within 10% of the budget counts as tight


@dataclass(frozen=True)
class Device:
    """A device and the memory a training run may use on it."""

    name: str
    budget_bytes: int
    memory: str  # as the vendor states it
    note: str = ""

    @property
    def budget_mb(self) -> float:
        return self.budget_bytes / MB


DEVICES: tuple[Device, ...] = (
    Device("Arduino Nano 33 BLE (nRF52840)", 256 * KIB, "256 KB SRAM", "1 MB flash"),
    Device("STM32F746 microcontroller", 320 * KIB, "320 KB SRAM", "1 MB flash"),
    Device("ESP32", 520 * KIB, "520 KB SRAM"),
    Device("Coral Edge TPU", 8 * MIB, "~8 MB on-chip SRAM", "commonly cited; holds parameters"),
    Device("Raspberry Pi 1 Model A/A+", 256 * MIB, "256 MB"),
    Device("Raspberry Pi 1 Model B", 512 * MIB, "512 MB", "early revisions: 256 MB"),
    Device("Raspberry Pi Zero / Zero 2 W", 512 * MIB, "512 MB"),
    Device("Jetson Nano 2 GB", 2 * GIB, "2 GB LPDDR4", "shared by CPU and GPU"),
    Device("Jetson Nano", 4 * GIB, "4 GB LPDDR4", "shared by CPU and GPU"),
)


def custom_device(budget_mb: float, name: str = "your budget") -> Device:
    """A user-entered budget in decimal MB (raises TinyTLError unless it is a positive number)."""
    if isinstance(budget_mb, bool) or not isinstance(budget_mb, (int, float)) or not budget_mb > 0:
        raise TinyTLError(f"memory budget must be a positive number of MB, got {budget_mb!r}")
    return Device(name, int(round(budget_mb * MB)), f"{budget_mb:g} MB", "user-entered (decimal MB)")


def verdict(total_bytes: int, budget_bytes: int) -> str:
    """'fits', 'tight' (within 10% of the budget) or 'does not fit'."""
    if total_bytes > budget_bytes:
        return "does not fit"
    return "tight" if total_bytes > (1 - TIGHT_MARGIN) * budget_bytes else "fits"


def largest_batch(report: MemoryReport, budget_bytes: int) -> int:
    """The largest batch size whose total fits `budget_bytes` (0 when not even batch 1 fits)."""
    if report.total_at_batch(1) > budget_bytes:
        return 0
    room = budget_bytes - report.param_bytes
    return min((room - f) // a for a, f in report.batch_lines() if a > 0)


@dataclass(frozen=True)
class BudgetCheck:
    """One device's verdict for one report."""

    device: Device
    total_bytes: int
    verdict: str
    headroom_bytes: int  # budget - total (negative: over budget)
    largest_batch: int

    @property
    def headroom_mb(self) -> float:
        return self.headroom_bytes / MB


def check_budget(report: MemoryReport, device: Device) -> BudgetCheck:
    """Verdict, headroom and largest fitting batch of a report on a device."""
    total = report.total_bytes
    return BudgetCheck(device, total, verdict(total, device.budget_bytes), device.budget_bytes - total,
                       largest_batch(report, device.budget_bytes))
