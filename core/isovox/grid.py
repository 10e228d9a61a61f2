"""Grid maths in one place: voxel grids, refinement and the fusion target grid.

Conventions (pinned by tests):

* an affine maps the index of a voxel *centre* to RAS mm;
* a voxel with index i covers [i - 1/2, i + 1/2] along each axis, so a field of
  view is bounded by the outer voxel faces, not by the outer centres;
* when an axis is re-gridded from spacing ``a`` to ``b`` over the same extent,
  the first centre moves by ``b/2 - a/2`` (half the new voxel minus half the old).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from .errors import InputError
from .volume import Volume


@dataclass(frozen=True, eq=False)
class Grid:
    """A voxel grid in RAS space: array shape plus index-to-RAS affine."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @classmethod
    def of(cls, volume: Volume) -> "Grid":
        return cls(volume.shape, np.array(volume.affine))

    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.shape))

    def same_as(self, other: "Grid", atol: float = 1e-4) -> bool:
        return tuple(self.shape) == tuple(other.shape) and np.allclose(self.affine, other.affine, atol=atol)


def regrid_axis(affine: np.ndarray, axis: int, step: float, first_centre: float) -> np.ndarray:
    """Affine of a grid whose ``axis`` samples old indices ``first_centre + step * j``.

    Both arguments are in units of the old grid's voxels along that axis.
    """
    transform = np.eye(4)
    transform[axis, axis] = step
    transform[axis, 3] = first_centre
    return np.asarray(affine, dtype=np.float64) @ transform


def parse_spacing(spacing: float | Sequence[float] | str | None) -> np.ndarray | None:
    """Accept 0.7, (0.5, 0.5, 1.2) or "0.5,0.5,1.2"; refuse non-positive or non-finite values."""
    if spacing is None:
        return None
    if isinstance(spacing, str):
        try:
            values = [float(v) for v in spacing.replace("x", ",").split(",") if v.strip()]
        except ValueError:
            raise InputError(f"spacing {spacing!r} is not a number or three comma-separated numbers") from None
    else:
        values = list(np.atleast_1d(np.asarray(spacing, dtype=np.float64)))
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise InputError(f"spacing needs one value or three, got {len(values)}")
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise InputError(f"spacing {spacing} mm must be positive and finite")
    return array


def orthonormal_frame(directions: np.ndarray) -> np.ndarray:
    """The rotation (or rotoreflection) nearest to a direction matrix (removes shear)."""
    u, _, vt = np.linalg.svd(np.asarray(directions, dtype=np.float64))
    return u @ vt


def thick_axis(volume: Volume, ratio: float = 1.2) -> int | None:
    """The array axis whose spacing exceeds the others by ``ratio`` (None: near-isotropic)."""
    spacing = volume.spacing
    order = np.argsort(spacing)
    if spacing[order[2]] >= ratio * spacing[order[1]]:
        return int(order[2])
    return None


def field_of_view(volume: Volume) -> np.ndarray:
    """The 8 RAS corners of what a scan covers; unevenly spaced slices (``meta["slice_positions"]``, in
    index units) reach from their first to their last position."""
    positions = volume.meta.get("slice_positions")
    axis = thick_axis(volume)
    if not positions or axis is None:
        return volume.corners()
    lo = np.full(3, -0.5)
    hi = np.asarray(volume.shape, dtype=np.float64) - 0.5
    lo[axis], hi[axis] = min(positions) - 0.5, max(positions) + 0.5
    cube = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], float)
    return volume.index_to_world(lo + cube * (hi - lo))


FACE_TOLERANCE = 1e-3  # of a voxel: a face this close to a grid face lies on it


def slab_anchor(volume: Volume) -> np.ndarray:
    """RAS position of the corner of ``volume``'s first voxel from which its grid is cut: its pixel faces
    in-plane and, through-plane, the face of its first slab (centre - thickness / 2 when the slice
    thickness is known, so slices with gaps land on the grid the scan was cut from)."""
    corner = np.full(3, -0.5)
    axis = thick_axis(volume)
    thickness = volume.meta.get("slice_thickness")
    if axis is not None and thickness:
        corner[axis] = -0.5 * float(thickness) / float(volume.spacing[axis])
    return volume.index_to_world(corner)


def target_grid(
    volumes: Sequence[Volume],
    spacing: float | Sequence[float] | None = None,
    fov: Literal["union", "intersection", "first"] = "union",
) -> Grid:
    """The isotropic (or given-spacing) grid that covers the scans' fields of view, anchored on scan 1.

    The grid takes the first scan's axis directions and array order; its voxel faces continue scan 1's
    pixel faces in-plane and its slab faces through-plane (:func:`slab_anchor`), extended by whole voxels
    to cover the union of the scans (or their intersection, or scan 1). So scans cut from one grid, asked
    for that grid's spacing, give back exactly that grid, and tilted partners do not shift it.
    Default spacing: the finest voxel size of any scan.
    """
    if not volumes:
        raise InputError("no scans given")
    steps = parse_spacing(spacing)
    if steps is None:
        finest = float(min(v.spacing.min() for v in volumes))
        steps = np.full(3, finest)
    frame = orthonormal_frame(volumes[0].directions)
    boxes = []
    for vol in volumes:
        coords = field_of_view(vol) @ frame  # RAS corners in frame coordinates
        boxes.append((coords.min(axis=0), coords.max(axis=0)))
    if fov == "first":
        boxes = boxes[:1]
    if fov == "intersection":
        lo = np.max([b[0] for b in boxes], axis=0)
        hi = np.min([b[1] for b in boxes], axis=0)
        if np.any(hi <= lo):
            raise InputError("the scans' fields of view do not overlap")
    else:
        lo = np.min([b[0] for b in boxes], axis=0)
        hi = np.max([b[1] for b in boxes], axis=0)
    anchor = slab_anchor(volumes[0]) @ frame
    before = np.floor((lo - anchor) / steps + FACE_TOLERANCE)  # whole voxels from the anchor to the box's low face
    start = anchor + before * steps
    shape = tuple(max(1, int(np.ceil((hi[a] - start[a]) / steps[a] - FACE_TOLERANCE))) for a in range(3))
    affine = np.eye(4)
    affine[:3, :3] = frame * steps
    affine[:3, 3] = frame @ (start + steps / 2)
    return Grid(shape, affine)  # type: ignore[arg-type]


def axis_correspondence(affine_a: np.ndarray, affine_b: np.ndarray, tol: float = 1e-6) -> np.ndarray | None:
    """For grids whose axes are parallel (any order or sign): for each axis of b, the axis of a.

    Returns None when the axes are not parallel (oblique relative to each other).
    """
    da = np.asarray(affine_a)[:3, :3]
    db = np.asarray(affine_b)[:3, :3]
    cos = (da / np.linalg.norm(da, axis=0)).T @ (db / np.linalg.norm(db, axis=0))
    order = np.argmax(np.abs(cos), axis=0)
    if sorted(order.tolist()) != [0, 1, 2]:
        return None
    if not np.allclose(np.abs(cos[order, [0, 1, 2]]), 1.0, atol=tol):
        return None
    return order


def rotation_matrix(ax: float, ay: float, az: float) -> np.ndarray:
    """Rotation about x, then y, then z by the given angles in degrees (e.g. to tilt a head)."""
    ax, ay, az = np.radians([ax, ay, az])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def coarse_grid(grid: Grid, max_voxels: int = 64**3) -> Grid:
    """The same box on a coarser grid, for cheap coverage checks."""
    factor = max(1.0, (grid.n_voxels / max_voxels) ** (1 / 3))
    if factor == 1.0:
        return grid
    shape = tuple(max(1, int(np.ceil(n / factor))) for n in grid.shape)
    steps = np.array(grid.shape) / np.array(shape)
    affine = grid.affine.copy()
    affine[:3, :3] = grid.affine[:3, :3] * steps
    affine[:3, 3] = grid.affine[:3, :3] @ (-0.5 + steps / 2) + grid.affine[:3, 3]
    return Grid(shape, affine)  # type: ignore[arg-type]


def orientation_code(affine: np.ndarray) -> str:
    """Three letters naming where each array axis points (e.g. 'RAS', 'LPI')."""
    import nibabel as nib

    return "".join(nib.orientations.aff2axcodes(np.asarray(affine)))
