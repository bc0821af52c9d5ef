"""What this machine is and runs natively.

Its CPU model goes into every stage's timing.json and every benchmark's JSON: 2-core machines of different models
differ up to 2x in speed. bfloat16 matrix products are fast on CPUs with avx512_bf16 or AMX; on other CPUs torch
emulates them, slower than float32, so the bfloat16 speed settings would cost time instead of saving it."""

from __future__ import annotations

import logging
import platform

import torch

log = logging.getLogger(__name__)


def native_cpu_bf16() -> bool:
    """Whether this CPU has the bfloat16 instructions torch's CPU kernels use (avx512_bf16 or AMX)."""
    checks = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(check() for check in checks if check is not None)


def training_device(accelerator: str) -> str:
    """Where a Lightning `trainer.accelerator` runs the work: "cpu", "cuda" (for "gpu", and "auto" with a GPU), or
    the accelerator's own name."""
    if accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if accelerator == "gpu" else str(accelerator)


def warn_if_emulated_bf16(setting: str, device: str | None = None) -> bool:
    """Log one warning, and return True, when `setting` asks for bfloat16 on a CPU that would emulate it. `device`:
    where the work runs (None: a GPU when there is one, else the CPU)."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") or native_cpu_bf16():
        return False
    log.warning("%s: this CPU has no bfloat16 instructions (avx512_bf16 or AMX), so torch emulates them, slower than "
                "float32; drop the setting on this machine", setting)
    return True


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux; else what `platform` knows), so a time says which machine it
    is from."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
