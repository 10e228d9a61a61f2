"""Fusion of 1-3 scans onto one grid in physical space (CubeAvg).

Each scan is resampled onto the target grid with cubic B-splines whose knots are
the scan's voxel (slab) centres; target points outside a scan's field of view
are left out of that scan's contribution, and the covered contributions are
averaged. Optionally, scans 2-3 are first registered rigidly to scan 1 (mutual
information) and their intensities matched to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from .errors import InputError
from .grid import Grid, axis_correspondence, coarse_grid, target_grid
from .intensity import robust_max
from .progress import Task, ensure_task
from .volume import Volume

EDGE_TOL = 1e-6  # index units: a centre on a field-of-view face counts as inside
SPLINE_MODE = "reflect"  # half-sample symmetric: the data edge is the outer voxel face


@dataclass
class Resampled:
    """One scan's values on a target grid and where it has data.

    ``mask`` is either a full boolean array or, for axis-aligned scans, a tuple
    of three 1-D masks whose outer product is the coverage (cheap to store).
    """

    values: np.ndarray
    mask: np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]

    def full_mask(self) -> np.ndarray:
        if isinstance(self.mask, tuple):
            m0, m1, m2 = self.mask
            return m0[:, None, None] & m1[None, :, None] & m2[None, None, :]
        return self.mask


@dataclass
class FusionResult:
    volume: Volume
    coverage: np.ndarray  # number of scans covering each voxel (uint8)
    grid: Grid
    registrations: list[np.ndarray] = field(default_factory=list)  # RAS 4x4 applied to scans 2..
    intensity_maps: list[tuple[float, float]] = field(default_factory=list)  # (gain, offset) per scan


def _index_map(volume: Volume, grid: Grid) -> np.ndarray:
    """4x4 matrix taking target-grid indices to the scan's continuous indices."""
    return np.linalg.inv(volume.affine) @ grid.affine


def _inside(coords: np.ndarray, n: int) -> np.ndarray:
    return (coords >= -0.5 - EDGE_TOL) & (coords <= n - 0.5 + EDGE_TOL)


def spline_matrix(n_in: int, coords: np.ndarray) -> np.ndarray:
    """(len(coords) x n_in) matrix of 1-D cubic B-spline interpolation at ``coords``.

    Interpolation is linear in the samples, so column j is the interpolant of the
    j-th unit vector; applying the matrix equals ``map_coordinates`` exactly.
    """
    if n_in == len(coords) and np.allclose(coords, np.arange(n_in), atol=1e-9):
        return np.eye(n_in)
    matrix = np.empty((len(coords), n_in))
    unit = np.zeros(n_in)
    for j in range(n_in):
        unit[j] = 1.0
        matrix[:, j] = ndimage.map_coordinates(unit, [coords], order=3, mode=SPLINE_MODE)
        unit[j] = 0.0
    return matrix


def resample(volume: Volume, grid: Grid, task: Optional[Task] = None, force_general: bool = False) -> Resampled:
    """Cubic B-spline values of ``volume`` on ``grid`` plus its field-of-view mask."""
    task = ensure_task(task)
    order = None if force_general else axis_correspondence(volume.affine, grid.affine)
    if order is not None:
        return _resample_separable(volume, grid, order, task)
    return _resample_general(volume, grid, task)


def _resample_separable(volume: Volume, grid: Grid, order: np.ndarray, task: Task) -> Resampled:
    """Axis-parallel case: three 1-D spline passes as small matrix products."""
    mapping = _index_map(volume, grid)
    data = np.asarray(volume.data, dtype=np.float32)
    masks = [None, None, None]
    for step, t in enumerate(np.argsort(-np.asarray(volume.shape)[order])):  # shrink big axes first
        p = int(order[t])
        coords = mapping[p, t] * np.arange(grid.shape[t]) + mapping[p, 3]
        masks[t] = _inside(coords, volume.shape[p])
        weights = spline_matrix(volume.shape[p], coords).astype(np.float32)
        if weights.shape[0] != weights.shape[1] or not np.array_equal(weights, np.eye(len(weights), dtype=np.float32)):
            data = np.moveaxis(np.tensordot(weights, data, axes=([1], [p])), 0, p)
        task.update((step + 1) / 3, "resampling")
    values = np.ascontiguousarray(data.transpose(order), dtype=np.float32)
    return Resampled(values, (masks[0], masks[1], masks[2]))


def _resample_general(volume: Volume, grid: Grid, task: Task, chunk_voxels: int = 4_000_000) -> Resampled:
    """Oblique case: prefilter once, then evaluate the spline slab by slab."""
    mapping = _index_map(volume, grid)
    coeffs = ndimage.spline_filter(np.asarray(volume.data, np.float32), order=3, mode=SPLINE_MODE, output=np.float32)
    n0, n1, n2 = grid.shape
    values = np.empty(grid.shape, dtype=np.float32)
    mask = np.empty(grid.shape, dtype=bool)
    rows = max(1, chunk_voxels // max(1, n1 * n2))
    j, k = np.meshgrid(np.arange(n1, dtype=np.float64), np.arange(n2, dtype=np.float64), indexing="ij")
    for start in range(0, n0, rows):
        stop = min(n0, start + rows)
        offset = mapping[:3, :3] @ np.array([start, 0.0, 0.0]) + mapping[:3, 3]
        ndimage.affine_transform(
            coeffs, mapping[:3, :3], offset=offset, output_shape=(stop - start, n1, n2),
            output=values[start:stop], order=3, mode=SPLINE_MODE, prefilter=False,
        )
        inside = np.ones((stop - start, n1, n2), dtype=bool)
        i = np.arange(start, stop, dtype=np.float64)[:, None, None]
        for p in range(3):
            coords = mapping[p, 0] * i + mapping[p, 1] * j + mapping[p, 2] * k + mapping[p, 3]
            inside &= _inside(coords, volume.shape[p])
        mask[start:stop] = inside
        task.update(stop / n0, "resampling")
    return Resampled(values, mask)


def check_overlap(scans: Sequence[Volume], grid: Grid) -> list[float]:
    """Fraction of scan 1's covered target voxels that each scan also covers.

    Raises :class:`InputError` when a scan shares no voxel with scan 1.
    """
    coarse = coarse_grid(grid)
    masks = [_coverage_only(s, coarse) for s in scans]
    base = masks[0]
    fractions = []
    for idx, m in enumerate(masks):
        shared = np.count_nonzero(base & m)
        if shared == 0 and idx == 0:
            raise InputError("scan 1 does not reach the output grid: the grid (from --like, or from the scans' "
                             "geometry) lies outside its field of view")
        if shared == 0:
            raise InputError(
                f"the fields of view of scan 1 and scan {idx + 1} do not overlap; "
                "are they scans of the same subject and session?"
            )
        fractions.append(shared / max(1, np.count_nonzero(base)))
    return fractions


def _coverage_only(volume: Volume, grid: Grid) -> np.ndarray:
    mapping = _index_map(volume, grid)
    idx = np.indices(grid.shape, dtype=np.float64).reshape(3, -1)
    coords = mapping[:3, :3] @ idx + mapping[:3, 3:4]
    inside = np.ones(idx.shape[1], dtype=bool)
    for p in range(3):
        inside &= _inside(coords[p], volume.shape[p])
    return inside.reshape(grid.shape)


def match_intensity(reference: Resampled, other: Resampled) -> tuple[float, float]:
    """Gain and offset mapping ``other`` onto ``reference`` where both see the head.

    Fits a line through matched percentiles (5..95) of the shared foreground,
    which tolerates residual misregistration better than voxel-wise regression.
    """
    shared = reference.full_mask() & other.full_mask()
    ref_vals = reference.values[shared]
    oth_vals = other.values[shared]
    if ref_vals.size < 100:
        return 1.0, 0.0
    # Select on both scans alike: thresholding one side only truncates its distribution.
    foreground = (ref_vals > 0.1 * robust_max(ref_vals)) | (oth_vals > 0.1 * robust_max(oth_vals))
    if np.count_nonzero(foreground) < 100:
        return 1.0, 0.0
    q = np.linspace(5, 95, 19)
    gain, offset = np.polyfit(np.percentile(oth_vals[foreground], q), np.percentile(ref_vals[foreground], q), 1)
    if not np.isfinite(gain) or gain <= 0:
        return 1.0, 0.0
    return float(gain), float(offset)


def fuse(
    scans: Sequence[Volume],
    grid: Optional[Grid] = None,
    spacing: float | Sequence[float] | None = None,
    register: bool = False,
    match_intensities: bool = False,
    task: Optional[Task] = None,
) -> FusionResult:
    """CubeAvg: the average of each scan's B-spline on the target grid where it has data."""
    task = ensure_task(task)
    if not 1 <= len(scans) <= 3:
        raise InputError(f"fusion takes 1 to 3 scans, got {len(scans)}")
    scans = list(scans)
    stages = task.stages([1.0 if register else 0.0] + [1.0] * len(scans))
    registrations: list[np.ndarray] = []
    if register and len(scans) > 1:
        from .registration import register_rigid

        reg_tasks = stages[0].stages([1.0] * (len(scans) - 1))
        for idx in range(1, len(scans)):
            transform = register_rigid(scans[0], scans[idx], reg_tasks[idx - 1])
            registrations.append(transform)
            scans[idx] = Volume(scans[idx].data, np.linalg.inv(transform) @ scans[idx].affine,
                                {**scans[idx].meta, "registered_to_scan_1": transform.tolist()})
    if grid is None:
        grid = target_grid(scans, spacing)
    check_overlap(scans, grid)
    total = np.zeros(grid.shape, dtype=np.float32)
    count = np.zeros(grid.shape, dtype=np.uint8)
    first: Optional[Resampled] = None
    maps: list[tuple[float, float]] = []
    for idx, scan in enumerate(scans):
        part = resample(scan, grid, stages[idx + 1])
        if match_intensities:
            if first is None:
                first = part
                maps.append((1.0, 0.0))
            else:
                gain, offset = match_intensity(first, part)
                part.values *= gain
                part.values += offset
                maps.append((gain, offset))
        mask = part.full_mask()
        total += np.where(mask, part.values, 0.0)
        count += mask
        del part, mask
    with np.errstate(invalid="ignore", divide="ignore"):
        fused = np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)
    meta = {"source": "cubeavg", "description": f"isovox cubeavg of {len(scans)} scan(s)"}
    return FusionResult(Volume(fused, grid.affine, meta), count, grid, registrations, maps)
