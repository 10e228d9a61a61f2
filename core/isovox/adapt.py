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
from .grid import Grid, orthonormal_frame, regrid_axis, target_grid, thick_axis
from .intensity import robust_max
from .learning import autocast, native_bf16, psnr_gain, train_step
from .options import DEFAULT_ADAPT_SECONDS
from .progress import Task, ensure_task
from .simulate import Acquisition, simulate_scan
from .volume import Volume

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


class Pairs:
    """Training and held-out pairs cut from the scans, shaped for one kind of network.

    ``kind``: "hr" (HR-space CNN), "implicit" (ArSSR) or "lr" (MRL on the LR grid); ``border``
    voxels of each crop are left out of losses and checks, where the network lacks context."""

    def __init__(self, kind: str, module, srcs: list[Source], patch: int, border: int) -> None:
        self.kind, self.module, self.srcs, self.patch, self.border = kind, module, srcs, patch, border
        lr_without_base = kind == "lr" and getattr(module, "base", "bspline") != "bspline"
        self.channels = 2 if lr_without_base else None

    def factor_for(self, k: float) -> int:
        return int(min(max(getattr(self.module, "factors", (8,))), max(2, math.ceil(k - 1e-6))))

    def crop_size(self, src: Source) -> tuple[int, int, int]:
        if self.kind == "lr":
            slices = max(4, min(10, 60 // self.factor_for(src.k)))
            return (int(math.ceil(slices * src.k)) + 1, self.patch, self.patch)
        return (self.patch,) * 3

    def draw(self, held_out: bool, rng: np.random.Generator):
        """((input, target, baseline), factor) from a random scan, or None when no crop has anatomy."""
        for _ in range(50):
            src = self.srcs[int(rng.integers(len(self.srcs)))]
            crop = _crop(src, self.crop_size(src), held_out, rng)
            if crop is not None and crop.shape[0] >= math.ceil(src.k) and crop.max() > 0.1:
                factor = self.factor_for(src.k)
                return _pair(self.kind, crop, src.k, factor, rng, src.slice_position), factor
        return None

    def forward(self, net, x: np.ndarray, factor: int):
        import torch

        t = torch.from_numpy(np.ascontiguousarray(x[:self.channels])[None])
        if self.kind == "implicit":  # ArSSR decoding the crop's own voxel centres
            points = torch.from_numpy(np.indices(x.shape[1:]).reshape(3, -1).T.astype(np.float32))
            return net(t, points, torch.ones(3)).reshape(1, 1, *x.shape[1:])
        return net(t, factor) if self.kind == "lr" else net(t)

    def inner(self, t):
        """``t`` without its crop border (an LR crop is thin along its slice axis, its array axis 0: kept)."""
        if not self.border:
            return t
        lead = 1 if self.kind == "lr" else 0
        return t[(slice(None),) * (t.ndim - 3 + lead) + (slice(self.border, -self.border),) * (3 - lead)]

    def gain(self, net, held: list) -> float:
        """Mean held-out PSNR gain (dB) of ``net`` over each pair's baseline."""
        import torch

        if not held:
            return 0.0
        net.eval()
        values = []
        with torch.inference_mode():
            for (x, y, base), factor in held:
                pred, y, base = (self.inner(a) for a in (self.forward(net, x, factor)[0].numpy(), y, base))
                values.append(psnr_gain(pred, base, y, y > 0.08))
        net.train()
        return float(np.mean(values))

    def loss(self, net, rng: np.random.Generator, batch: int, bf16: bool):
        """Mean L1 over ``batch`` fresh training pairs (None when none could be drawn)."""
        import torch
        import torch.nn.functional as F

        losses = []
        for _ in range(batch):
            item = self.draw(False, rng)
            if item is None:
                continue
            (x, y, _), factor = item
            with autocast(bf16):
                pred = self.forward(net, x, factor)
            losses.append(F.l1_loss(self.inner(pred.float()), self.inner(torch.from_numpy(y[None]))))
        return sum(losses) / len(losses) if losses else None


def adapt(module, kind: str, scans: Sequence[Volume], seconds: float = DEFAULT_ADAPT_SECONDS, task: Optional[Task] = None,
          seed: int = 0, patch: int = 32, batch: int = 2, lr: Optional[float] = None, border: int = 4,
          bf16: Optional[bool] = None, checks: int = 8) -> Adapted:
    """Fine-tune a copy of ``module`` (kind "hr", "implicit" or "lr") on pairs made from ``scans`` for ``seconds``.

    The held-out gain is measured ``checks`` times during the run and the best weights are kept:
    fine-tuning on one scan's pairs peaks early and then drifts towards that pair distribution.
    ``lr`` defaults to 1e-4 for MRL and 1e-5 for the HR-space networks (larger steps undo their
    training); ``bf16`` defaults to on where the CPU has native bfloat16 (about twice the steps).
    """
    import torch

    lr = (1e-4 if kind == "lr" else 1e-5) if lr is None else lr
    bf16 = native_bf16() if bf16 is None else bf16
    task = ensure_task(task)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    srcs = sources(scans)
    model = copy.deepcopy(module).float().cpu()
    if not srcs:
        return Adapted(model, 0, 0.0, 0.0, 0.0, False)
    pairs = Pairs(kind, module, srcs, patch, border)
    check_rng = np.random.default_rng(seed + 1)
    held = [p for p in (pairs.draw(True, check_rng) for _ in range(8)) if p is not None]
    before = best = pairs.gain(model, held)
    best_state, best_steps = None, 0
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    start, steps, next_check = time.perf_counter(), 0, seconds / checks
    while time.perf_counter() - start < seconds:
        loss = pairs.loss(model, rng, batch, bf16)
        if loss is None:
            break
        value = train_step(loss, [optimizer])
        steps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= next_check or elapsed >= seconds:
            next_check += seconds / checks
            current = pairs.gain(model, held)
            if current > best:
                best, best_steps, best_state = current, steps, copy.deepcopy(model.state_dict())
        task.update(elapsed / seconds, f"adapting to the scans: step {steps}, loss {value:.4f}, "
                                       f"best held-out gain {best - before:+.2f} dB")
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    used = best_state is not None
    return Adapted(model if used else copy.deepcopy(module), best_steps, time.perf_counter() - start, before, best,
                   used, steps)
