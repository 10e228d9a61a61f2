"""The one volume type: a float32 array with its 4x4 RAS affine.

Geometry travels with the array so no step can lose it. The affine maps array
indices (i, j, k) of voxel *centres* to RAS millimetres (NIfTI's convention);
every LPS conversion lives in :mod:`isovox.io`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from .errors import InputError


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Volume:
    """An immutable 3-D scalar volume in patient (RAS) space.

    ``data`` is float32 and read-only; ``affine`` is a read-only 4x4 float64
    index-to-RAS matrix; ``meta`` records where the volume came from.
    """

    data: np.ndarray
    affine: np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        data = np.asarray(self.data)
        if data.ndim != 3:
            raise InputError(f"a volume must be 3-D, got an array of shape {data.shape}")
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise InputError(f"an affine must be 4x4, got shape {affine.shape}")
        object.__setattr__(self, "data", _frozen(data.astype(np.float32, copy=False)))
        object.__setattr__(self, "affine", _frozen(affine))
        object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size in mm along each array axis (length of each affine column)."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def directions(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit RAS directions of the array axes."""
        return self.affine[:3, :3] / self.spacing

    @property
    def origin(self) -> np.ndarray:
        """RAS position (mm) of the centre of voxel (0, 0, 0)."""
        return self.affine[:3, 3].copy()

    def with_data(self, data: np.ndarray, **meta: Any) -> "Volume":
        """A new volume on the same grid with other voxel values."""
        if tuple(np.shape(data)) != self.shape:
            raise ValueError(f"shape {np.shape(data)} does not match grid {self.shape}")
        return Volume(data, self.affine, {**self.meta, **meta})

    def with_meta(self, **meta: Any) -> "Volume":
        return Volume(self.data, self.affine, {**self.meta, **meta})

    def transposed(self, order: tuple[int, int, int]) -> "Volume":
        """The same voxels in another array axis order (geometry unchanged)."""
        order = tuple(int(a) for a in order)
        if sorted(order) != [0, 1, 2]:
            raise ValueError(f"{order} is not a permutation of (0, 1, 2)")
        affine = np.array(self.affine)
        affine[:3, :3] = self.affine[:3, list(order)]
        return Volume(self.data.transpose(order), affine, self.meta)

    def flipped(self, axes: tuple[int, ...]) -> "Volume":
        """The same voxels stored in reverse order along ``axes`` (geometry unchanged)."""
        affine = np.array(self.affine)
        for a in axes:
            affine[:3, 3] += self.affine[:3, a] * (self.shape[a] - 1)
            affine[:3, a] = -self.affine[:3, a]
        return Volume(np.flip(self.data, axis=tuple(axes)), affine, self.meta)

    def index_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """RAS mm of voxel indices given as an (..., 3) array."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def world_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """Continuous voxel indices of RAS points given as an (..., 3) array."""
        inv = np.linalg.inv(self.affine)
        xyz = np.asarray(xyz, dtype=np.float64)
        return xyz @ inv[:3, :3].T + inv[:3, 3]

    def corners(self) -> np.ndarray:
        """The 8 RAS corners of the field of view (outer voxel faces, not centres)."""
        n = np.array(self.shape, dtype=np.float64)
        cube = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], float)
        return self.index_to_world(cube * n - 0.5)

    def __repr__(self) -> str:
        sp = ", ".join(f"{s:.3g}" for s in self.spacing)
        return f"Volume(shape={self.shape}, spacing=({sp}) mm, source={self.meta.get('source', '?')!r})"
