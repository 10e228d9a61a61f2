"""One optimisation step and one held-out score, shared by training (``training/``) and
scan-specific adaptation (``--adapt``), so both learn and measure the same way."""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import numpy as np

from .metrics import psnr

PSNR_CEILING_DB = 120.0  # a perfect crop scores this, so gains stay finite


def native_bf16() -> bool:
    """Whether this CPU runs bfloat16 natively (AVX512-BF16/AMX); elsewhere bf16 autocast is slower than fp32."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast(enabled: bool):
    """bfloat16 autocast on the CPU (about twice the steps where the CPU has native bf16), or nothing."""
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(enabled))


def train_step(loss, optimizers: Sequence, zero: Optional[Sequence] = None,
               clip: Optional[tuple[Iterable, float]] = None) -> float:
    """Backpropagate ``loss`` and step ``optimizers``; returns the loss value.

    ``zero``: the optimizers whose gradients are cleared first (default: those stepped);
    ``clip``: (parameters, max norm) clipped before the step."""
    import torch

    for optimizer in (optimizers if zero is None else zero):
        optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(clip[0], float(clip[1]))
    for optimizer in optimizers:
        optimizer.step()
    return float(loss.detach())


def psnr_gain(prediction: np.ndarray, baseline: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """PSNR gain (dB) of ``prediction`` over ``baseline`` against ``target`` in ``mask`` (arrays scaled to peak 1)."""
    if not np.any(mask):
        return 0.0

    def score(values: np.ndarray) -> float:
        return min(psnr(values, target, mask, peak=1.0), PSNR_CEILING_DB)

    return score(prediction) - score(baseline)
