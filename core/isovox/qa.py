"""Visual-QA maps shared by the napari plugin and the Slicer module.

* :func:`difference_map` - result minus another volume (CubeAvg, a reference): what a
  method added, or where it is wrong.
* :func:`consistency_map` - the result re-acquired with a scan's slice geometry minus
  that scan: where the result contradicts the data that was actually measured.
* :func:`acquired_distance_map` - distance of each output voxel to the nearest acquired
  slice centre: where the output is measured and where it is inferred.
* :func:`line_profile` - intensities along a segment in mm, for any set of volumes.
* :func:`preview_grid` / :func:`crop` - a thin slab or small box of a grid, for
  previews in seconds and per-lesion crops.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from .errors import InputError
from .forward import ScanGeometry, SliceProfile, scan_operator
from .fusion import resample
from .grid import Grid, thick_axis
from .metrics import on_grid  # noqa: F401  (re-exported: the UIs use qa.on_grid)
from .volume import Volume


def difference_map(result: Volume, other: Volume) -> Volume:
    """``result - other`` on the result's grid; NaN where ``other`` has no data."""
    values, covered = on_grid(other, Grid.of(result))
    diff = np.where(covered, result.data - values, np.nan).astype(np.float32)
    return Volume(diff, result.affine, {"source": "difference", "description": "isovox difference map"})


def reacquire(result: Volume, scan: Volume, profile: str | SliceProfile = "box",
              thickness: Optional[float] = None) -> Volume:
    """``result`` acquired as ``scan`` was, through the forward model (:mod:`isovox.forward`): the scan's
    grid, slice thickness and profile. NaN where less than half of a scan voxel lies inside ``result``."""
    import torch

    from dataclasses import replace

    if isinstance(profile, str):
        profile = SliceProfile.parse(profile)
    geometry = ScanGeometry.of(scan, profile, thickness)
    if geometry.acquired:  # every slice of the stack, also those filled in for missing ones (NaN below)
        geometry = replace(geometry, shape=scan.shape, slice_positions=None, acquired=None)
    operator = scan_operator(Grid.of(result), geometry)
    with torch.no_grad():
        values = operator.forward(torch.as_tensor(np.array(result.data, np.float32))).numpy()
    values = np.where(operator.coverage >= 0.5, values, np.nan).astype(np.float32)
    missing = scan.meta.get("missing_slices")
    if missing and geometry.slice_axis is not None:
        index = [slice(None)] * 3
        index[geometry.slice_axis] = list(missing)
        values[tuple(index)] = np.nan
    return Volume(values, scan.affine, {"source": "re-acquired"})


def consistency_map(result: Volume, scan: Volume, profile: str | SliceProfile = "box",
                    thickness: Optional[float] = None) -> Volume:
    """(result re-acquired like ``scan``) - ``scan``, shown on the result's grid (NaN: no data)."""
    again = reacquire(result, scan, profile, thickness)
    diff = np.where(np.isfinite(again.data), again.data - scan.data, 0.0)
    valid = np.isfinite(again.data).astype(np.float32)
    grid = Grid.of(result)
    values = resample(Volume(diff, scan.affine), grid)
    support = resample(Volume(valid, scan.affine), grid)
    keep = support.full_mask() & (support.values > 0.5)
    out = np.where(keep, values.values, np.nan).astype(np.float32)
    return Volume(out, result.affine, {"source": "consistency", "description": "isovox consistency map"})


def acquired_distance_map(grid: Grid, scans: Sequence[Volume]) -> np.ndarray:
    """Distance in mm from each grid voxel to the nearest acquired slice centre (NaN: no scan)."""
    best = np.full(grid.shape, np.inf, np.float32)
    idx = np.indices(grid.shape, dtype=np.float32).reshape(3, -1)
    for scan in scans:
        axis = thick_axis(scan)
        mapping = (np.linalg.inv(scan.affine) @ grid.affine).astype(np.float32)
        coords = mapping[:3, :3] @ idx + mapping[:3, 3:4]
        inside = np.ones(idx.shape[1], bool)
        for p in range(3):
            inside &= (coords[p] >= -0.5) & (coords[p] <= scan.shape[p] - 0.5)
        if axis is None:  # isotropic scan: everything is acquired
            dist = np.zeros(idx.shape[1], np.float32)
        else:
            c = coords[axis]
            dist = np.abs(c - np.clip(np.round(c), 0, scan.shape[axis] - 1)) * float(scan.spacing[axis])
        dist = np.where(inside, dist, np.inf).reshape(grid.shape)
        np.minimum(best, dist, out=best)
    best[np.isinf(best)] = np.nan
    return best


def line_profile(volumes: Sequence[Volume], start: np.ndarray, end: np.ndarray,
                 samples: Optional[int] = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Distances (mm from ``start``) and each volume's values along a RAS segment (linear; NaN outside)."""
    start = np.asarray(start, np.float64)
    end = np.asarray(end, np.float64)
    length = float(np.linalg.norm(end - start))
    if length == 0:
        raise InputError("the profile line has zero length")
    if samples is None:
        finest = min(float(v.spacing.min()) for v in volumes) if volumes else 1.0
        samples = max(2, int(np.ceil(2 * length / finest)) + 1)
    t = np.linspace(0.0, 1.0, samples)
    points = start + t[:, None] * (end - start)
    profiles = []
    for vol in volumes:
        ijk = vol.world_to_index(points).T
        values = ndimage.map_coordinates(np.asarray(vol.data, np.float64), ijk, order=1, mode="nearest")
        outside = np.zeros(samples, bool)
        for p in range(3):
            outside |= (ijk[p] < -0.5) | (ijk[p] > vol.shape[p] - 0.5)
        values[outside] = np.nan
        profiles.append(values)
    return t * length, profiles


def preview_grid(grid: Grid, centre: np.ndarray, half_width_mm: float, axis: Optional[int] = None) -> Grid:
    """A slab of ``grid`` ``2 * half_width_mm`` thick around RAS point ``centre``.

    ``axis``: the grid axis across the slab (the viewer's slice normal); default the last.
    """
    axis = 2 if axis is None else axis
    ijk = np.linalg.inv(grid.affine) @ np.append(np.asarray(centre, float), 1.0)
    half = max(1, int(np.ceil(half_width_mm / grid.spacing[axis] - 1e-6)))  # 2 mm on a 1.9999999 mm grid: 1
    centre_index = int(np.clip(np.round(ijk[axis]), 0, grid.shape[axis] - 1))
    lo = max(0, centre_index - half)
    hi = min(grid.shape[axis], centre_index + half + 1)
    return _sub_grid(grid, {axis: (lo, hi)})


def crop(volume: Volume, centre: np.ndarray, half_size_mm: float) -> Volume:
    """The box of ``volume`` within ``half_size_mm`` of RAS point ``centre`` (same voxels, exact affine)."""
    ijk = volume.world_to_index(np.asarray(centre, float))
    bounds = {}
    for a in range(3):
        half = half_size_mm / float(volume.spacing[a])
        lo = int(np.clip(np.floor(ijk[a] - half + 1e-6), 0, volume.shape[a] - 1))
        hi = int(np.clip(np.ceil(ijk[a] + half - 1e-6) + 1, lo + 1, volume.shape[a]))
        bounds[a] = (lo, hi)
    grid = _sub_grid(Grid.of(volume), bounds)
    index = tuple(slice(*bounds[a]) for a in range(3))
    return Volume(volume.data[index], grid.affine, volume.meta)


def _sub_grid(grid: Grid, bounds: dict[int, tuple[int, int]]) -> Grid:
    shape = list(grid.shape)
    start = np.zeros(3)
    for axis, (lo, hi) in bounds.items():
        if hi <= lo:
            raise InputError("the requested region lies outside the volume")
        shape[axis] = hi - lo
        start[axis] = lo
    affine = grid.affine.copy()
    affine[:3, 3] = grid.affine[:3, :3] @ start + grid.affine[:3, 3]
    return Grid(tuple(shape), affine)  # type: ignore[arg-type]


def forward_model_of(provenance: Optional[dict]) -> tuple[str, Optional[list]]:
    """(slice profile, per-scan thickness overrides) a run used, from its provenance, so its consistency
    maps re-acquire the result with the same forward model (default: box, recorded thickness)."""
    options = (provenance or {}).get("options") or {}
    thickness = options.get("slice_thickness")
    return str(options.get("slice_profile") or "box"), (list(thickness) if thickness else None)


def consistency_maps(result: Volume, scans: Sequence[Volume], provenance: Optional[dict] = None,
                     task=None) -> list[Volume]:
    """One :func:`consistency_map` per scan, through the forward model the run used."""
    from .progress import ensure_task

    task = ensure_task(task)
    profile, thickness = forward_model_of(provenance)
    if thickness is not None and len(thickness) == 1:
        thickness = thickness * len(scans)
    steps = task.stages([1.0] * len(scans))
    out = []
    for idx, (scan, step) in enumerate(zip(scans, steps)):
        step.update(0.0, f"consistency with scan {idx + 1}")
        out.append(consistency_map(result, scan, profile, thickness[idx] if thickness else None))
    return out
