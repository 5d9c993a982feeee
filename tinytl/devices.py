"""Device memory budgets and the verdict for a training setting: fits, tight, or does not fit.

Budgets are the reference list of edge devices (RAM sizes are binary units: 1 KB = 1024 bytes,
1 MB = 2**20 bytes), reported like every other number here in decimal MB.

A verdict compares the device's RAM with everything one training step holds there (`BudgetTerms`):
the view's activations at their peak (kept for backward + the transient of the layer running), all
parameters (trainable + frozen), one fp32 gradient per trainable parameter, the optimizer's fp32
moments per trainable parameter (Adam 2, SGD with momentum 1, plain SGD 0), buffers, and the device's
reserve for its OS and runtime. Only the activations grow with the batch size.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinytl.errors import TinyTLError
from tinytl.memory.report import MB, MemoryReport

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIGHT_MARGIN = 0.10  # within 10% of the budget counts as tight
GRAD_BYTES = 4  # one fp32 gradient per trainable parameter
MOMENT_BYTES = 4  # one fp32 optimizer moment per trainable parameter
OPTIMIZER_MOMENTS = {"adam": 2, "sgd-momentum": 1, "sgd": 0}  # moments kept per trainable parameter

# --- reserves: RAM a device's OS, firmware and training runtime take before the step allocates anything ---
# Microcontrollers run no OS and no Python: the reserve is the firmware's static RAM and stack.
# Arduino's Mbed OS core: a public TFLite-Micro build log for this board reports 63,176 B of global RAM with an
# 8.9 KB tensor arena (~54 KB of core + runtime statics); with the main thread's stack, 64 KB.
NANO33_RESERVE = 64 * KIB
# Bare metal (STM32 HAL, no OS): main stack, C runtime / HAL statics and the runtime's own buffers, ~10% of SRAM
# (an estimate; no Mbed OS, so half the Arduino core's figure).
STM32F746_RESERVE = 32 * KIB
# ESP-IDF's hello_world starts with ~298 KB of free heap on an ESP32 (Espressif's published per-chip table): the
# rest of the 520 KB is instruction RAM for code, FreeRTOS and the IDF's statics.
ESP32_RESERVE = 520 * KIB - 298 * KIB
# Raspberry Pi boards with Raspberry Pi OS Lite and Python + PyTorch (CPU):
PI_GPU_SPLIT = 64 * MIB  # firmware default gpu_mem on boards with less than 1 GB (config.txt docs)
PI_OS_LITE = 60 * MIB  # kernel + systemd, journald, sshd, networking after boot: `free` shows ~50-70 MB used
# Python with `import torch` and one small Adam step, measured on x86-64 (tinytl's own CPU): libtorch_cpu's resident
# pages 65 MB + Python objects 74 MB (tracemalloc) + the interpreter 13 MB; the CUDA wheel's GPU libraries excluded.
PYTORCH_RUNTIME = 150 * MIB
PI_RESERVE = PI_GPU_SPLIT + PI_OS_LITE + PYTORCH_RUNTIME
# Jetson (JetPack / L4T, RAM shared by CPU and GPU): the OS after boot plus PyTorch with its CUDA context (CUDA
# runtime, cuBLAS / cuDNN handles) in the same RAM, ~0.5 GB. The 2 GB kit's lighter LXDE desktop idles at ~0.5 GB,
# the 4 GB kit's Ubuntu desktop at ~1 GB.
JETSON_CUDA_RUNTIME = 512 * MIB
JETSON_2GB_RESERVE = 512 * MIB + JETSON_CUDA_RUNTIME
JETSON_4GB_RESERVE = 1 * GIB + JETSON_CUDA_RUNTIME


@dataclass(frozen=True)
class Device:
    """A device, its RAM, and the part of it its OS and runtime keep (`reserve_bytes`)."""

    name: str
    budget_bytes: int  # the device's RAM (the verdict's budget)
    memory: str  # as the vendor states it
    note: str = ""
    reserve_bytes: int = 0  # kept for OS + runtime before a training step allocates anything
    reserve_note: str = ""  # what the reserve is made of

    @property
    def budget_mb(self) -> float:
        """The device's RAM in decimal MB."""
        return self.budget_bytes / MB

    @property
    def reserve_mb(self) -> float:
        """The reserve in decimal MB."""
        return self.reserve_bytes / MB

    @property
    def available_bytes(self) -> int:
        """RAM left for the training step once the reserve is taken (negative: the reserve alone overflows)."""
        return self.budget_bytes - self.reserve_bytes


_PI_NOTE = "GPU split 64 MiB + Raspberry Pi OS Lite 60 MiB + Python/PyTorch 150 MiB"
DEVICES: tuple[Device, ...] = (
    Device("Arduino Nano 33 BLE (nRF52840)", 256 * KIB, "256 KB SRAM", "1 MB flash",
           NANO33_RESERVE, "Mbed OS core statics + stack"),
    Device("STM32F746 microcontroller", 320 * KIB, "320 KB SRAM", "1 MB flash",
           STM32F746_RESERVE, "bare metal: stack + HAL/runtime statics"),
    Device("ESP32", 520 * KIB, "520 KB SRAM", "", ESP32_RESERVE, "ESP-IDF: code RAM, FreeRTOS, statics"),
    Device("Coral Edge TPU", 8 * MIB, "~8 MB on-chip SRAM", "commonly cited; holds parameters",
           0, "none: the host runs OS and runtime"),
    Device("Raspberry Pi 1 Model A/A+", 256 * MIB, "256 MB", "", PI_RESERVE, _PI_NOTE),
    Device("Raspberry Pi 1 Model B", 512 * MIB, "512 MB", "early revisions: 256 MB", PI_RESERVE, _PI_NOTE),
    Device("Raspberry Pi Zero / Zero 2 W", 512 * MIB, "512 MB", "", PI_RESERVE, _PI_NOTE),
    Device("Jetson Nano 2 GB", 2 * GIB, "2 GB LPDDR4", "shared by CPU and GPU",
           JETSON_2GB_RESERVE, "L4T + LXDE 0.5 GiB + PyTorch/CUDA 0.5 GiB"),
    Device("Jetson Nano", 4 * GIB, "4 GB LPDDR4", "shared by CPU and GPU",
           JETSON_4GB_RESERVE, "JetPack desktop 1 GiB + PyTorch/CUDA 0.5 GiB"),
)


def custom_device(budget_mb: float, name: str = "your budget", reserve_mb: float = 0.0) -> Device:
    """A user-entered budget in decimal MB (raises TinyTLError unless it is a positive number).

    The budget is what the run may use (e.g. a phone app's limit), so nothing is reserved unless `reserve_mb` says so.
    """
    if isinstance(budget_mb, bool) or not isinstance(budget_mb, (int, float)) or not budget_mb > 0:
        raise TinyTLError(f"memory budget must be a positive number of MB, got {budget_mb!r}")
    if isinstance(reserve_mb, bool) or not isinstance(reserve_mb, (int, float)) or not reserve_mb >= 0:
        raise TinyTLError(f"memory reserve must be a non-negative number of MB, got {reserve_mb!r}")
    return Device(name, int(round(budget_mb * MB)), f"{budget_mb:g} MB", "user-entered (decimal MB)",
                  int(round(reserve_mb * MB)), "user-entered" if reserve_mb else "none: the budget is the run's")


def optimizer_moments(optimizer: str) -> int:
    """fp32 moments an optimizer keeps per trainable parameter (TinyTLError for an unknown name)."""
    try:
        return OPTIMIZER_MOMENTS[optimizer]
    except KeyError:
        raise TinyTLError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZER_MOMENTS)}") from None


@dataclass(frozen=True)
class BudgetTerms:
    """What one training step holds on a device, term by term (bytes); `total_bytes` is what a verdict compares."""

    view: str
    batch_size: int
    optimizer: str
    activation_bytes: int  # the view's peak activation memory at this batch (kept for backward + transient)
    trainable_param_bytes: int
    frozen_param_bytes: int
    gradient_bytes: int  # one fp32 gradient per trainable parameter
    optimizer_bytes: int  # the optimizer's fp32 moments per trainable parameter
    buffer_bytes: int  # BatchNorm running statistics and other buffers
    reserve_bytes: int  # the device's OS + runtime

    @property
    def param_bytes(self) -> int:
        """Trainable + frozen parameters."""
        return self.trainable_param_bytes + self.frozen_param_bytes

    @property
    def training_bytes(self) -> int:
        """Everything the training step itself holds (all terms but the reserve)."""
        return (self.activation_bytes + self.param_bytes + self.gradient_bytes + self.optimizer_bytes
                + self.buffer_bytes)

    @property
    def total_bytes(self) -> int:
        """The training step plus the device's reserve: the total a verdict compares with the device's RAM."""
        return self.training_bytes + self.reserve_bytes

    def items(self) -> list[tuple[str, int]]:
        """(label, bytes) per term, in the order they add up to `total_bytes`."""
        return [("activations", self.activation_bytes), ("trainable parameters", self.trainable_param_bytes),
                ("frozen parameters", self.frozen_param_bytes), ("gradients", self.gradient_bytes),
                (f"optimizer state ({self.optimizer})", self.optimizer_bytes), ("buffers", self.buffer_bytes),
                ("reserve (OS + runtime)", self.reserve_bytes)]


def _check_batch(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise TinyTLError(f"batch size must be a positive integer, got {batch_size!r}")
    return batch_size


def activation_bytes_at(report: MemoryReport, batch_size: int) -> int:
    """A report's peak activation memory at another batch size, without parameters, gradients or optimizer state.

    Views that simulate the whole step (pytorch) price gradients, optimizer state and buffers live at the peak
    into their totals (`state_bytes`); those are taken out here, since the budget terms count them on their own.
    At another batch the step's peak may fall where another part of the gradients is live: the report's own
    `state_bytes` is taken out there too (exact at the report's batch; elsewhere off by at most the gradients,
    which the terms then count in full).
    """
    return report.total_at_batch(_check_batch(batch_size)) - report.param_bytes - report.state_bytes


def budget_terms(report: MemoryReport, device: Device | None = None, optimizer: str = "adam",
                 batch_size: int | None = None) -> BudgetTerms:
    """The terms a training step of `report` holds on `device` (no reserve without one), at the report's batch
    size unless `batch_size` says otherwise."""
    batch = report.batch_size if batch_size is None else _check_batch(batch_size)
    n_train = report.num_trainable_params
    return BudgetTerms(
        view=report.view, batch_size=batch, optimizer=optimizer,
        activation_bytes=activation_bytes_at(report, batch),
        trainable_param_bytes=report.trainable_param_bytes, frozen_param_bytes=report.frozen_param_bytes,
        gradient_bytes=GRAD_BYTES * n_train, optimizer_bytes=optimizer_moments(optimizer) * MOMENT_BYTES * n_train,
        buffer_bytes=report.buffer_bytes, reserve_bytes=device.reserve_bytes if device is not None else 0)


def verdict(total_bytes: int, budget_bytes: int) -> str:
    """'fits', 'tight' (within 10% of the budget) or 'does not fit'."""
    if total_bytes > budget_bytes:
        return "does not fit"
    return "tight" if total_bytes > (1 - TIGHT_MARGIN) * budget_bytes else "fits"


def largest_batch(report: MemoryReport, device: Device | int, optimizer: str = "adam") -> int:
    """The largest batch size whose `budget_terms` total fits the device (0 when not even batch 1 fits).

    `device` is a Device (its RAM, its reserve) or a plain number of bytes (nothing reserved). Only the activations
    grow with the batch: every line a * b + f of the report's peak must stay within the room the other terms leave.
    """
    budget, reserve = (device, 0) if isinstance(device, int) else (device.budget_bytes, device.reserve_bytes)
    fixed = budget_terms(report, None, optimizer, 1)
    if fixed.total_bytes + reserve > budget:
        return 0
    # activations(b) = max(a * b + f) - state_bytes, so every line must satisfy a * b + f <= room
    room = budget - reserve - (fixed.training_bytes - fixed.activation_bytes) + report.state_bytes
    bounds = [(room - f) // a for a, f in report.batch_lines() if a > 0]
    if not bounds:
        raise TinyTLError("this setting's memory does not grow with the batch size: no largest batch")
    return min(bounds)


@dataclass(frozen=True)
class BudgetCheck:
    """One device's verdict for one report, with the terms its total adds up from."""

    device: Device
    total_bytes: int  # terms.total_bytes: the training step + the device's reserve
    verdict: str
    headroom_bytes: int  # budget - total (negative: over budget)
    largest_batch: int
    terms: BudgetTerms

    @property
    def headroom_mb(self) -> float:
        """Headroom in decimal MB."""
        return self.headroom_bytes / MB

    @property
    def total_mb(self) -> float:
        """The compared total in decimal MB."""
        return self.total_bytes / MB


def check_budget(report: MemoryReport, device: Device, optimizer: str = "adam") -> BudgetCheck:
    """Verdict, headroom and largest fitting batch of a report on a device, from the full `budget_terms` total."""
    terms = budget_terms(report, device, optimizer)
    total = terms.total_bytes
    return BudgetCheck(device, total, verdict(total, device.budget_bytes), device.budget_bytes - total,
                       largest_batch(report, device, optimizer), terms)
