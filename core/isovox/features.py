"""Network inputs, built the same way in training and at inference.

HR-space networks (isoSRN, ReCNN) see, on the target grid:
  0. the fused CubeAvg volume divided by its robust maximum;
  1. the distance to the nearest acquired slice centre, in target voxels / 4 (where
     data was measured and where it is inferred);
  2. the through-plane scale k / 8 (thick spacing over target spacing);
  3. (guided models) the HR reference divided by its robust maximum.
LR-space networks (MRL) see one scan on its own grid, thick axis first, divided by its
robust maximum, plus the k / 8 channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .fusion import FusionResult, fuse
from .grid import Grid, thick_axis
from .intensity import robust_max
from .progress import Task
from .metrics import on_grid
from .qa import acquired_distance_map
from .volume import Volume

FAR = 2.0  # distance channel value where no scan has data


@dataclass
class HRInputs:
    array: np.ndarray  # (C, D, H, W) float32
    scale: float  # intensity divisor applied to the fused volume
    fusion: FusionResult
    k: float


def through_plane_scale(scans: Sequence[Volume], spacing: float) -> float:
    return float(max(s.spacing.max() for s in scans) / spacing)


def hr_inputs(scans: Sequence[Volume], grid: Grid, reference: Optional[Volume] = None, register: bool = False,
              match_intensity: bool = False, task: Optional[Task] = None, divisor: Optional[float] = None,
              reference_divisor: Optional[float] = None) -> HRInputs:
    """``divisor``/``reference_divisor``: intensity normalisers when known (training on crops
    passes the whole volume's, so crops look as whole volumes do at inference)."""
    fusion = fuse(scans, grid=grid, register=register, match_intensities=match_intensity, task=task)
    fused = fusion.volume.data
    divisor = robust_max(fused) if divisor is None else float(divisor)
    spacing = float(grid.spacing.min())
    distance = acquired_distance_map(grid, scans) / spacing / 4.0
    distance = np.where(np.isfinite(distance), distance, FAR).astype(np.float32)
    k = through_plane_scale(scans, spacing)
    channels = [fused / divisor, distance, np.full(grid.shape, k / 8.0, np.float32)]
    if reference is not None:
        values, covered = on_grid(reference, grid)
        if reference_divisor is not None:
            ref_scale = float(reference_divisor)
        else:
            ref_scale = robust_max(values[covered]) if covered.any() else 1.0
        channels.append(np.where(covered, values / ref_scale, 0.0))
    array = np.stack([np.asarray(c, np.float32) for c in channels])
    return HRInputs(array, divisor, fusion, k)


@dataclass
class LRInputs:
    array: np.ndarray  # (2, D, H, W), thick axis first
    scale: float
    axis: int  # the scan's thick array axis
    order: tuple[int, int, int]  # transpose that brought it first
    factor: int  # integer upsampling r along the thick axis
    k: float


def lr_inputs(scan: Volume, spacing: float, max_factor: int = 8, axis: Optional[int] = None,
              factor: Optional[int] = None, with_base: bool = True, divisor: Optional[float] = None) -> LRInputs:
    """``axis``/``factor``/``divisor``: slice axis, upsampling factor and intensity normaliser when
    known (training on crops passes the whole volume's robust maximum).

    With ``with_base``, channels 2..2+r hold the exact cubic B-spline of the scan at the r
    sub-slices of each slice (space-to-depth), computed on the whole scan so tiling stays exact.
    """
    axis = thick_axis(scan) if axis is None else axis
    if axis is None:
        axis = int(np.argmax(scan.spacing))
    k = float(scan.spacing[axis]) / spacing
    if factor is None:
        factor = int(min(max_factor, max(1, np.ceil(k - 1e-6))))
    order = (axis,) + tuple(a for a in range(3) if a != axis)
    divisor = robust_max(scan.data) if divisor is None else float(divisor)
    data = np.asarray(scan.data, np.float32).transpose(order) / divisor
    channels = [data, np.full(data.shape, k / 8.0, np.float32)]
    if with_base and factor >= 2:
        channels.extend(bspline_subslices(data, factor))
    return LRInputs(np.stack(channels).astype(np.float32), divisor, axis, order, factor, k)


def bspline_subslices(data: np.ndarray, factor: int) -> np.ndarray:
    """(r, D, H, W): cubic B-spline of ``data`` along axis 0 at sub-slice q of each slice."""
    from .fusion import spline_matrix

    n = data.shape[0]
    coords = (np.arange(n * factor) + 0.5) / factor - 0.5
    fine = np.tensordot(spline_matrix(n, coords).astype(np.float32), data, axes=([1], [0]))
    return fine.reshape(n, factor, *data.shape[1:]).transpose(1, 0, 2, 3)
