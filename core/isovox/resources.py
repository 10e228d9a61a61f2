"""Devices and memory: what this machine can run."""

from __future__ import annotations

import os
from typing import Optional

from .errors import InputError, ResourceError


def available_memory_bytes() -> int:
    """Memory the process can still use: ``ISOVOX_MAX_MEMORY_GB`` or MemAvailable."""
    limit = os.environ.get("ISOVOX_MAX_MEMORY_GB")
    if limit:
        try:
            return int(float(limit) * 1024**3)
        except ValueError:
            raise InputError(f"ISOVOX_MAX_MEMORY_GB={limit!r} is not a number") from None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TB"


def check_memory(needed: int, what: str, limit: Optional[int] = None) -> None:
    """Refuse work whose estimated peak memory exceeds what is available."""
    available = limit if limit is not None else available_memory_bytes()
    if needed > available:
        raise ResourceError(
            f"{what} needs about {human_bytes(needed)} of memory but only "
            f"{human_bytes(available)} is available; choose a coarser --spacing"
        )


def resolve_device(device: str = "auto") -> str:
    """'auto' → cuda, mps or cpu, whichever is present; refuse an absent device."""
    device = (device or "auto").lower()
    if device not in ("auto", "cpu", "cuda", "mps") and not device.startswith("cuda:"):
        raise InputError(f"unknown device {device!r}; use auto, cpu or cuda")
    if device == "cpu" or (device == "auto" and not _may_have_accelerator()):
        return "cpu"  # without importing torch (seconds) when no GPU can be there
    try:
        import torch
    except ImportError:
        if device == "auto":
            return "cpu"
        raise InputError(f"device {device!r} needs PyTorch, which is not installed") from None
    has_cuda = torch.cuda.is_available()
    has_mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if device == "auto":
        return "cuda" if has_cuda else ("mps" if has_mps else "cpu")
    if device.startswith("cuda") and not has_cuda:
        raise InputError(f"device {device!r} requested but no CUDA GPU is available")
    if device == "mps" and not has_mps:
        raise InputError("device 'mps' requested but Apple MPS is not available")
    return device


def _may_have_accelerator() -> bool:
    """False only where no CUDA/ROCm device node exists on Linux (so torch need not be imported to know)."""
    import platform
    from pathlib import Path

    if platform.system() != "Linux":
        return True  # macOS (MPS), Windows: ask torch
    return any(Path("/dev").glob("nvidia*")) or Path("/dev/kfd").exists()
