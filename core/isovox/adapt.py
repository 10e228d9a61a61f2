"""Scan-specific self-supervised adaptation (``--adapt``): fine-tune a shipped network on the
input scans themselves, with no high-resolution data (the principle of SMORE / ECLARE).

A scan is sharp in-plane and thick through-plane. Slicing it again, k-fold thick along one of
its in-plane axes, gives a pair (input: thick along that axis; target: the scan) that shows
the network this very scan's anatomy, contrast and noise at the degradation it must undo
along the real slice axis. HR-space networks see the scan on an isotropic grid, each pair
turned so its re-sliced axis lies where the scan's slice axis lies on the output grid (a 3-D
CNN is not rotation invariant: fine-tuned along one axis, it learns nothing for the others);
LR-space networks (MRL) get pairs cut from the same isotropic resampling, re-sliced along
their LR grid's axis 0, as at inference (cut from the native array they overfit sooner).
A slab of each scan is held out: the adapted network is used only if it beats the unadapted
one there.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .features import hr_inputs, lr_inputs
from .fusion import fuse, resample
from .grid import Grid, orthonormal_frame, regrid_axis, target_grid
from .info import thick_axis
from .intensity import robust_max
from .progress import Task, ensure_task
from .simulate import Acquisition, simulate_scan
from .volume import Volume

DEFAULT_SECONDS = 300.0
HOLD_OUT = 0.25  # central fraction of each scan's first in-plane axis kept for the adapted-vs-unadapted check


@dataclass
class Source:
    """One scan prepared for pair making: its data normalised, in-plane axes and thickness ratio."""

    data: np.ndarray  # the scan resampled onto an isotropic grid at its in-plane spacing
    inplane: tuple[int, int]
    k: float
    held: tuple[int, int]  # [start, stop) along inplane[0] held out: the middle, where the anatomy is
    slice_position: int  # the output grid's axis nearest the scan's slice direction


@dataclass
class Adapted:
    module: object
    steps: int
    seconds: float
    gain_before_db: float  # held-out gain of the unadapted network over its baseline
    gain_after_db: float
    used: bool
    steps_run: int = 0  # steps trained in all; ``steps`` is where the kept weights were taken

    def summary(self) -> str:
        verdict = (f"used (weights after step {self.steps} of {self.steps_run})" if self.used
                   else f"not used (no held-out gain in {self.steps_run} steps)")
        return (f"adapted for {self.seconds:.0f} s: held-out gain over the baseline "
                f"{self.gain_before_db:+.2f} -> {self.gain_after_db:+.2f} dB, {verdict}")


def sources(scans: Sequence[Volume]) -> list[Source]:
    out = []
    frame = orthonormal_frame(scans[0].directions)  # the output grid's axes (see target_grid)
    for scan in scans:
        axis = thick_axis(scan)
        axis = int(np.argmax(scan.spacing)) if axis is None else axis
        inplane = tuple(a for a in range(3) if a != axis)
        fine = float(min(scan.spacing[a] for a in inplane))
        k = float(scan.spacing[axis]) / fine
        if k < 1.5:
            continue  # nothing thick to learn from
        data = fuse([scan], grid=target_grid([scan], fine)).volume.data
        data = data / robust_max(data)
        position = int(np.argmax(np.abs(frame.T @ scan.directions[:, axis])))
        n = data.shape[inplane[0]]
        start = int(n * (1 - HOLD_OUT) / 2)
        out.append(Source(data.astype(np.float32), inplane, k, (start, start + int(n * HOLD_OUT)), position))
    return out


def _crop(src: Source, size: tuple[int, int, int], held_out: bool, rng: np.random.Generator) -> Optional[np.ndarray]:
    """A crop of ``size`` = (the in-plane axis to re-slice, the other in-plane axis, the slice axis).

    Held-out crops come from the held-out band along the first in-plane axis, training crops from
    one side of it or the other (never overlapping it).
    """
    first, second = src.inplane
    i = first if held_out or rng.random() < 0.5 else second
    j = second if i == first else first
    order = (i, j, 3 - i - j)
    arr = np.transpose(src.data, order)
    where = order.index(first)
    bounds = [(0, n) for n in arr.shape]
    lo, hi = src.held
    if held_out:
        bounds[where] = (lo, hi)
    else:
        sides = [(0, lo), (hi, arr.shape[where])]
        fits = [b - a for a, b in sides]
        bounds[where] = sides[int(rng.random() * sum(fits) >= fits[0])] if sum(fits) else sides[0]
    size = tuple(min(s, hi - lo) for s, (lo, hi) in zip(size, bounds))
    if min(size) < 2:
        return None
    starts = [int(rng.integers(lo, hi - s + 1)) for (lo, hi), s in zip(bounds, size)]
    return np.ascontiguousarray(arr[tuple(slice(a, a + s) for a, s in zip(starts, size))])


def _pair(kind: str, crop: np.ndarray, k: float, factor: int, rng: np.random.Generator, position: int = 0):
    """(input array, target array, baseline array) with the crop's axis 0 re-sliced k-fold thick.

    HR-space kinds move that axis to ``position`` first (where the real slice axis is at inference).
    """
    if kind == "lr":
        position = 0
    crop = np.ascontiguousarray(np.moveaxis(crop, 0, position))
    volume = Volume(crop, np.eye(4))
    acq = Acquisition(axis=position, scale=min(k, crop.shape[position]), seed=int(rng.integers(2**31)))
    scan = simulate_scan(volume, acq)
    if kind == "lr":
        fine = Grid((scan.shape[0] * factor,) + scan.shape[1:], regrid_axis(scan.affine, 0, 1.0 / factor,
                                                                           -0.5 + 0.5 / factor))
        lr = lr_inputs(scan, 1.0, axis=0, factor=factor, divisor=1.0)
        target = resample(volume, fine).values[None].astype(np.float32)
        base = lr.array[2:2 + factor].transpose(1, 0, 2, 3).reshape(1, -1, *lr.array.shape[2:])
        return lr.array, target, base
    inputs = hr_inputs([scan], Grid.of(volume), divisor=1.0)
    return inputs.array, crop[None], inputs.array[:1]


def _psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    mse = float(np.mean((a[mask] - b[mask]) ** 2)) if mask.any() else 0.0
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def adapt(module, kind: str, scans: Sequence[Volume], seconds: float = DEFAULT_SECONDS, task: Optional[Task] = None,
          seed: int = 0, patch: int = 32, batch: int = 2, lr: Optional[float] = None, border: int = 4,
          bf16: Optional[bool] = None, checks: int = 8) -> Adapted:
    """Fine-tune a copy of ``module`` (kind "hr", "implicit" or "lr") on pairs made from ``scans`` for ``seconds``.

    The held-out gain is measured ``checks`` times during the run and the best weights are kept:
    fine-tuning on one scan's pairs peaks early and then drifts towards that pair distribution.
    ``lr`` defaults to 1e-4 for MRL and 1e-5 for the HR-space networks (larger steps undo their
    training); ``bf16`` defaults to on where the CPU has native bfloat16 (about twice the steps).
    """
    import torch
    import torch.nn.functional as F

    lr = (1e-4 if kind == "lr" else 1e-5) if lr is None else lr
    bf16 = native_bf16() if bf16 is None else bf16
    task = ensure_task(task)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    srcs = sources(scans)
    model = copy.deepcopy(module).float().cpu()
    if not srcs:
        return Adapted(model, 0, 0.0, 0.0, 0.0, False)

    def factor_for(k: float) -> int:
        return int(min(max(getattr(module, "factors", (8,))), max(2, math.ceil(k - 1e-6))))

    def crop_size(src: Source) -> tuple[int, int, int]:
        if kind == "lr":
            f = factor_for(src.k)
            slices = max(4, min(10, 60 // f))
            return (int(math.ceil(slices * src.k)) + 1, patch, patch)
        return (patch, patch, patch)

    def draw(held_out: bool, generator: np.random.Generator):
        for _ in range(50):
            src = srcs[int(generator.integers(len(srcs)))]
            crop = _crop(src, crop_size(src), held_out, generator)
            if crop is not None and crop.shape[0] >= math.ceil(src.k) and crop.max() > 0.1:
                pair = _pair(kind, crop, src.k, factor_for(src.k), generator, src.slice_position)
                return pair, factor_for(src.k)
        return None

    channels = 2 if kind == "lr" and getattr(module, "base", "bspline") != "bspline" else None

    def forward(net, x: np.ndarray, factor: int):
        t = torch.from_numpy(np.ascontiguousarray(x[:channels])[None])
        if kind == "implicit":  # ArSSR decoding the crop's own voxel centres
            points = torch.from_numpy(np.indices(x.shape[1:]).reshape(3, -1).T.astype(np.float32))
            return net(t, points, torch.ones(3)).reshape(1, 1, *x.shape[1:])
        return net(t, factor) if kind == "lr" else net(t)

    def inner(t):  # losses and checks skip the crop border, where the network lacks context
        lead = 1 if kind == "lr" else 0  # an LR crop is thin along its slice axis (axis 0 of the array)
        index = (slice(None),) * (t.ndim - 3 + lead) + (slice(border, -border),) * (3 - lead)
        return t[index] if border else t

    check_rng = np.random.default_rng(seed + 1)
    held = [p for p in (draw(True, check_rng) for _ in range(8)) if p is not None]

    def gain(net) -> float:
        if not held:
            return 0.0
        net.eval()
        values = []
        with torch.inference_mode():
            for (x, y, base), factor in held:
                pred, y, base = (inner(a) for a in (forward(net, x, factor)[0].numpy(), y, base))
                head = y > 0.08
                values.append(_psnr(pred, y, head) - _psnr(base, y, head))
        net.train()
        return float(np.mean(values))

    before = best = gain(model)
    best_state, best_steps = None, 0
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    start, steps, next_check = time.perf_counter(), 0, seconds / checks
    while time.perf_counter() - start < seconds:
        losses = []
        for _ in range(batch):
            item = draw(False, rng)
            if item is None:
                continue
            (x, y, _), factor = item
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # ~2x the steps on a CPU with bf16
                pred = forward(model, x, factor)
            losses.append(F.l1_loss(inner(pred.float()), inner(torch.from_numpy(y[None]))))
        if not losses:
            break
        loss = sum(losses) / len(losses)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= next_check or elapsed >= seconds:
            next_check += seconds / checks
            current = gain(model)
            if current > best:
                best, best_steps = current, steps
                best_state = copy.deepcopy(model.state_dict())
        task.update(elapsed / seconds, f"adapting to the scans: step {steps}, loss {loss.item():.4f}, "
                                       f"best held-out gain {best - before:+.2f} dB")
    elapsed = time.perf_counter() - start
    used = best_state is not None
    if used:
        model.load_state_dict(best_state)
    model.eval()
    return Adapted(model if used else copy.deepcopy(module), best_steps, elapsed, before, best, used, steps)


def native_bf16() -> bool:
    """Whether this CPU runs bfloat16 natively (AVX512-BF16/AMX); elsewhere bf16 autocast is slower than fp32."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
