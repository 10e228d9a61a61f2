"""Model-based reconstruction: the volume that best explains the acquired slices (method ``srr``), and
the data consistency that makes every learned method's output honour them.

A run: CubeAvg as the start; the anatomy's box (air around it keeps the start); lambda, intensity
maps and slice weights learned from the scans (:mod:`isovox.calibration`); one L-BFGS solve of the
objective of :mod:`isovox.solver` with an edge-preserving prior (:mod:`isovox.priors`, TGV by
default). With three orthogonal scans it converges in a few tens of iterations (a coarse-to-fine
pass measured no gain).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .calibration import calibrate, choose_smoothness
from .forward import ScanGeometry, SliceProfile, scan_operator
from .fusion import fuse
from .grid import Grid
from .intensity import robust_max
from .priors import prior_named
from .progress import Task, ensure_task
from .solver import COVERED, ConvergenceError, ScanTerm, scan_terms, solve
from .volume import Volume

__all__ = ["ConvergenceError", "Reconstruction", "Settings", "TIE", "consistency_residuals",
           "enforce_consistency", "reconstruct", "settings_for"]

SOLVE_BYTES_PER_VOXEL = 160  # peak of a TGV solve: 4 unknowns x (value, gradient, trial x2, direction,
#                               history 2 x 4) float32, plus the prior's temporaries
TIE = 0.003  # mu: how strongly data consistency keeps a network's output where the scans do not decide (measured best)


@dataclass
class Settings:
    """How to reconstruct (defaults for the ``srr`` method)."""

    smoothness: Optional[float] = None  # lambda; None: chosen for the input
    prior: str = "tgv"
    profile: SliceProfile = field(default_factory=SliceProfile)
    thickness: Optional[Sequence[Optional[float]]] = None  # per scan, overriding what the scan records
    iterations: Optional[int] = None  # L-BFGS steps; default: ``steps_for`` the through-plane scale
    robust: bool = True
    match_intensity: bool = True
    register: bool = False
    tie: float = 0.0  # mu: weight of || x - f ||^2 (data consistency)
    device: str = "cpu"


Refiner = Callable[[Any, Sequence[ScanTerm], np.ndarray, dict, Task], Any]  # (x, terms, spacing, report, task) -> x


@dataclass
class Reconstruction:
    volume: Volume
    report: dict[str, Any]


def geometry_of(scan: Volume, settings: Settings, idx: int) -> ScanGeometry:
    """The scan's forward-model geometry, with the run's profile and any thickness override."""
    thickness = None
    if settings.thickness is not None and idx < len(settings.thickness):
        thickness = settings.thickness[idx]
    return ScanGeometry.of(scan, settings.profile, thickness)


def reconstruct(scans: Sequence[Volume], grid: Grid, settings: Settings, task: Optional[Task] = None,
                start: Optional[np.ndarray] = None, anchor: Optional[np.ndarray] = None,
                refine: Optional[Refiner] = None) -> Reconstruction:
    """Reconstruct ``grid`` from ``scans``. ``start``: the initial volume (default CubeAvg); ``anchor``:
    a network's output the result is tied to with weight ``settings.tie`` (data consistency); ``refine``:
    a step after the solve that sees the solver's terms (plug-and-play priors: benchmarks/pnp.py).

    The solve runs on ``grid`` grown by the thickest slice's reach (so a thin preview slab still sees
    whole slices), restricted to the anatomy's box; the result is cut back to ``grid``."""
    torch = _torch()
    task = ensure_task(task)
    scans = list(scans)
    steps = task.stages([0.3, 0.6 if settings.register else 0.0, 0.8, 3.0, 3.0 if refine else 0.0])
    geometries = [geometry_of(scan, settings, idx) for idx, scan in enumerate(scans)]
    outer, inner = grown(grid, geometries)
    fusion = fuse(scans, grid=outer, task=steps[0])
    scale = robust_max(np.asarray(scans[0].data))
    x0 = np.array(fusion.volume.data, np.float32)
    if start is not None:
        x0[inner] = start
    registrations: list = []
    if settings.register and len(scans) > 1:
        geometries, registrations = _register(scans, geometries, outer, x0, steps[1])
    prior = prior_named(settings.prior)
    box = anatomy_box(outer, fusion.volume.data / scale, geometries)
    sub = sub_grid(outer, box)
    report: dict[str, Any] = {"prior": prior.name, "profile": settings.profile.to_dict(), "device": settings.device}
    smoothness = settings.smoothness
    through_plane = max(float(s.spacing.max()) for s in scans) / float(grid.spacing.min())
    if smoothness is None:
        smoothness, report["smoothness_choice"] = choose_smoothness(scans, through_plane)
    report["smoothness"] = smoothness
    terms = scan_terms(scans, sub, geometries, scale, settings.device)
    report["calibration"] = calibrate(terms, scans, sub, geometries, scale, prior, smoothness, x0[box] / scale,
                                      settings.robust, settings.match_intensity, settings.device, steps[2])
    x = torch.as_tensor(x0[box] / scale, device=torch.device(settings.device))
    tie, tied = _tie(anchor, settings, outer.shape, inner, box, scale)
    iterations = settings.iterations or steps_for(through_plane)
    x = solve(x, terms, prior, smoothness, sub.spacing, iterations, steps[3], tie, tied)
    if refine is not None:
        x = refine(x, terms, sub.spacing, report, steps[4])
    values = np.array(x0, copy=True)
    values[box] = x.cpu().numpy() * scale
    values = np.where(fusion.coverage > 0, values, 0.0)[inner].astype(np.float32)
    report.update(_summary(terms, x, scale))
    report["intensity_maps"] = [[round(t.gain, 5), round(t.offset * scale, 5)] for t in terms]
    report["registrations"] = registrations
    report["iterations"] = iterations
    return Reconstruction(Volume(values, grid.affine), report)


THIN = 32  # grid axes shorter than this (preview slabs) are grown so whole slices fit in


def steps_for(scale: float) -> int:
    """L-BFGS steps for a through-plane scale k: 48 from x4 up, 64 for thinner slices, whose higher ceiling
    takes longer to reach. Measured at x4 (three scans, whole heads): 16 / 32 / 48 / 64 steps give 36.37 /
    37.83 / 38.54 / 38.71 dB on MNI152 and 40.09 / 40.39 / 40.44 dB (16 / 32 / 48) on Colin27; with 48 steps
    a 256^3 volume takes 44 s on 2 cores (target 60 s). A fixed count, not a time budget, so a result does
    not depend on the machine that made it."""
    return int(np.clip(round(192.0 / max(scale, 1e-6)), 48, 64))


def _tie(anchor: Optional[np.ndarray], settings: Settings, shape: Sequence[int], inner: tuple, box: tuple,
         scale: float):
    """(mu per voxel, the network's output) on the solved box: mu inside the requested grid, 0 around it."""
    if anchor is None or settings.tie <= 0:
        return 0.0, None
    torch = _torch()
    device = torch.device(settings.device)
    full = np.zeros(shape, np.float32)
    full[inner] = anchor
    where = np.zeros(shape, np.float32)
    where[inner] = settings.tie
    return torch.as_tensor(where[box], device=device), torch.as_tensor(full[box] / scale, device=device)


def grown(grid: Grid, geometries: Sequence[ScanGeometry]) -> tuple[Grid, tuple[slice, slice, slice]]:
    """``grid`` with its thin axes grown on both sides by the thickest kernel's reach plus 4 voxels, and where
    ``grid`` lies in it (a slab a few voxels thick would otherwise lose every slice that crosses its faces)."""
    reach = max(max(g.kernel(t).support() for t in range(3)) for g in geometries)
    margin = (np.ceil(reach / grid.spacing).astype(int) + 4) * (np.asarray(grid.shape) < THIN)
    affine = grid.affine.copy()
    affine[:3, 3] = grid.affine[:3, :3] @ (-margin.astype(float)) + grid.affine[:3, 3]
    shape = tuple(int(n + 2 * m) for n, m in zip(grid.shape, margin))
    inner = tuple(slice(int(m), int(m + n)) for m, n in zip(margin, grid.shape))
    return Grid(shape, affine), inner  # type: ignore[arg-type]


def _torch():
    import torch

    return torch


def anatomy_box(grid: Grid, fused: np.ndarray, geometries: Sequence[ScanGeometry],
                fraction: float = 0.05) -> tuple[slice, slice, slice]:
    """The box of voxels above ``fraction`` of scan 1's robust maximum (smoothed), grown by the thickest
    slice's reach so every scan voxel that sees anatomy lies wholly inside."""
    from scipy import ndimage

    step = 2  # every other voxel: the box is grown by a margin anyway
    smooth = ndimage.uniform_filter(np.asarray(fused, np.float32)[::step, ::step, ::step], size=3, mode="nearest")
    where = np.argwhere(smooth > fraction) * step
    if not len(where):
        return (slice(0, grid.shape[0]), slice(0, grid.shape[1]), slice(0, grid.shape[2]))
    reach = max(max(g.kernel(t).support() for t in range(3)) for g in geometries)
    margin = np.ceil(reach / grid.spacing).astype(int) + 3 + step
    lo = np.maximum(where.min(0) - margin, 0)
    hi = np.minimum(where.max(0) + margin + 1, grid.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))  # type: ignore[return-value]


def sub_grid(grid: Grid, box: Sequence[slice]) -> Grid:
    start = np.array([s.start for s in box], dtype=float)
    affine = grid.affine.copy()
    affine[:3, 3] = grid.affine[:3, :3] @ start + grid.affine[:3, 3]
    return Grid(tuple(s.stop - s.start for s in box), affine)  # type: ignore[arg-type]


def _summary(terms: Sequence[ScanTerm], x, scale: float) -> dict[str, Any]:
    """Per scan: RMS residual (scan intensities) and the slices whose weight was lowered."""
    out = []
    for term in terms:
        covered = term.mask.gt(0)
        residual = (term.operator.forward(x) - term.data)[covered]
        weights = term.slice_weights if term.slice_weights is not None else np.ones(term.slices)
        low = [int(i) for i in np.flatnonzero(weights < 0.5)]
        out.append({"rms_residual": round(float(residual.pow(2).mean().sqrt()) * scale / max(term.gain, 1e-6), 6),
                    "slice_axis": term.slice_axis, "downweighted_slices": low,
                    "slice_weights": [round(float(w), 4) for w in weights]})
    return {"scans": out}


def _register(scans: Sequence[Volume], geometries: list[ScanGeometry], grid: Grid, x0: np.ndarray, task: Task):
    """Scans 2-3 rigidly registered to the current estimate (volume to volume, one pose per scan)."""
    from .registration import register_rigid

    estimate = Volume(x0, grid.affine)
    registrations = []
    out = list(geometries)
    tasks = task.stages([1.0] * (len(scans) - 1))
    for idx in range(1, len(scans)):
        transform = register_rigid(estimate, scans[idx], tasks[idx - 1])
        out[idx] = geometries[idx].with_affine(np.linalg.inv(transform) @ geometries[idx].affine)
        registrations.append(np.asarray(transform).tolist())
    return out, registrations


# --------------------------------------------------------------------------- entry points for methods


def settings_for(options, device: str, n_scans: int, tie: float = 0.0) -> Settings:
    """Reconstruction settings from a run's :class:`~isovox.options.RunOptions`."""
    return Settings(smoothness=options.smoothness, profile=options.profile, thickness=options.thickness_for(n_scans),
                    register=options.register, device=device, tie=tie)


def enforce_consistency(output: Volume, scans: Sequence[Volume], grid: Grid, options, device: str,
                        task: Optional[Task] = None) -> Volume:
    """A network's output made to honour the acquired slices: the reconstruction started from it and
    tied to it (weight ``TIE``), so the network fills in only what the scans leave open."""
    settings = replace(settings_for(options, device, len(scans), TIE), register=False)  # the method registered
    before = consistency_residuals(output, scans, settings)
    result = reconstruct(scans, grid, settings, task, start=np.asarray(output.data), anchor=np.asarray(output.data))
    report = dict(result.report, tie=TIE, rms_residual_before=before)
    return Volume(result.volume.data, grid.affine, {**output.meta, "consistency": report})


def consistency_residuals(volume: Volume, scans: Sequence[Volume], settings: Settings) -> list[float]:
    """RMS of (the volume re-acquired like each scan - the scan) over the scan voxels inside the volume."""
    torch = _torch()
    out = []
    grid = Grid.of(volume)
    x = torch.as_tensor(np.array(volume.data, np.float32))
    for idx, scan in enumerate(scans):
        geometry = geometry_of(scan, settings, idx)
        operator = scan_operator(grid, geometry)
        covered = operator.coverage >= COVERED
        with torch.no_grad():
            predicted = operator.forward(x).numpy()
        residual = (predicted - geometry.measured(np.asarray(scan.data)))[covered]
        out.append(round(float(np.sqrt(np.mean(residual**2))) if residual.size else 0.0, 6))
    return out
