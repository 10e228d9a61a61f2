"""Scan-specific self-supervised adaptation (``--adapt``): fine-tune a shipped network on the
input scans themselves, with no high-resolution data (the principle of SMORE / ECLARE).

A scan is sharp in-plane and thick through-plane. Slicing it again, k-fold thick along one of
its in-plane axes, gives a pair (input: thick along that axis; target: the scan) that shows
the network this very scan's anatomy, contrast and noise at the degradation it must undo
along the real slice axis. HR-space networks see the scan on an isotropic grid; LR-space
networks (MRL) see it on its own grid with the in-plane axis first. A slab of each scan is
held out: the adapted network is used only if it beats the unadapted one there.
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
from .grid import Grid, regrid_axis, target_grid
from .info import thick_axis
from .intensity import robust_max
from .progress import Task, ensure_task
from .simulate import Acquisition, simulate_scan
from .volume import Volume

DEFAULT_SECONDS = 300.0
HOLD_OUT = 0.25  # fraction of each scan's first in-plane axis kept for the adapted-vs-unadapted check


@dataclass
class Source:
    """One scan prepared for pair making: its data normalised, in-plane axes and thickness ratio."""

    data: np.ndarray  # HR-space kind: isotropic resampling; LR kind: native array
    inplane: tuple[int, int]
    k: float
    split: int  # index along inplane[0]: [0, split) held out


@dataclass
class Adapted:
    module: object
    steps: int
    seconds: float
    gain_before_db: float  # held-out gain of the unadapted network over its baseline
    gain_after_db: float
    used: bool

    def summary(self) -> str:
        verdict = "used" if self.used else "not used (no held-out gain)"
        return (f"adapted {self.steps} steps in {self.seconds:.0f} s: held-out gain over the baseline "
                f"{self.gain_before_db:+.2f} -> {self.gain_after_db:+.2f} dB, {verdict}")


def sources(scans: Sequence[Volume], kind: str) -> list[Source]:
    out = []
    for scan in scans:
        axis = thick_axis(scan)
        axis = int(np.argmax(scan.spacing)) if axis is None else axis
        inplane = tuple(a for a in range(3) if a != axis)
        fine = float(min(scan.spacing[a] for a in inplane))
        k = float(scan.spacing[axis]) / fine
        if k < 1.5:
            continue  # nothing thick to learn from
        if kind == "lr":
            data = np.asarray(scan.data, np.float32)
        else:
            data = fuse([scan], grid=target_grid([scan], fine)).volume.data
        data = data / robust_max(data)
        out.append(Source(data.astype(np.float32), inplane, k, int(data.shape[inplane[0]] * HOLD_OUT)))
    return out


def _crop(src: Source, size: tuple[int, int, int], held_out: bool, rng: np.random.Generator) -> Optional[np.ndarray]:
    """A crop of ``size`` = (the in-plane axis to re-slice, the other in-plane axis, the slice axis).

    Held-out crops come from [0, split) along the first in-plane axis, training crops from the rest.
    """
    first, second = src.inplane
    i = first if held_out or rng.random() < 0.5 else second
    j = second if i == first else first
    order = (i, j, 3 - i - j)
    arr = np.transpose(src.data, order)
    where = order.index(first)
    bounds = [(0, n) for n in arr.shape]
    bounds[where] = (0, src.split) if held_out else (src.split, arr.shape[where])
    size = tuple(min(s, hi - lo) for s, (lo, hi) in zip(size, bounds))
    if min(size) < 2:
        return None
    starts = [int(rng.integers(lo, hi - s + 1)) for (lo, hi), s in zip(bounds, size)]
    return np.ascontiguousarray(arr[tuple(slice(a, a + s) for a, s in zip(starts, size))])


def _pair(kind: str, crop: np.ndarray, k: float, factor: int, rng: np.random.Generator):
    """(input array, target array, baseline array) with axis 0 re-sliced k-fold thick."""
    volume = Volume(crop, np.eye(4))
    acq = Acquisition(axis=0, scale=min(k, crop.shape[0]), seed=int(rng.integers(2**31)))
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
          seed: int = 0, patch: int = 32, batch: int = 2, lr: float = 1e-4) -> Adapted:
    """Fine-tune a copy of ``module`` (kind "hr", "implicit" or "lr") on pairs made from ``scans`` for ``seconds``."""
    import torch
    import torch.nn.functional as F

    task = ensure_task(task)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    srcs = sources(scans, kind)
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
                return _pair(kind, crop, src.k, factor_for(src.k), generator), factor_for(src.k)
        return None

    channels = 2 if kind == "lr" and getattr(module, "base", "bspline") != "bspline" else None

    def forward(net, x: np.ndarray, factor: int):
        t = torch.from_numpy(np.ascontiguousarray(x[:channels])[None])
        if kind == "implicit":  # ArSSR decoding the crop's own voxel centres
            points = torch.from_numpy(np.indices(x.shape[1:]).reshape(3, -1).T.astype(np.float32))
            return net(t, points, torch.ones(3)).reshape(1, 1, *x.shape[1:])
        return net(t, factor) if kind == "lr" else net(t)

    check_rng = np.random.default_rng(seed + 1)
    held = [p for p in (draw(True, check_rng) for _ in range(4)) if p is not None]

    def gain(net) -> float:
        if not held:
            return 0.0
        net.eval()
        values = []
        with torch.inference_mode():
            for (x, y, base), factor in held:
                pred = forward(net, x, factor)[0].numpy()
                head = y > 0.08
                values.append(_psnr(pred, y, head) - _psnr(base, y, head))
        net.train()
        return float(np.mean(values))

    before = gain(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        losses = []
        for _ in range(batch):
            item = draw(False, rng)
            if item is None:
                continue
            (x, y, _), factor = item
            losses.append(F.l1_loss(forward(model, x, factor), torch.from_numpy(y[None])))
        if not losses:
            break
        loss = sum(losses) / len(losses)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
        elapsed = time.perf_counter() - start
        task.update(elapsed / seconds, f"adapting to the scans: step {steps}, loss {loss.item():.4f}")
    elapsed = time.perf_counter() - start
    after = gain(model)
    used = after > before
    model.eval()
    return Adapted(model if used else copy.deepcopy(module), steps, elapsed, before, after, used)
