"""Shared fixtures: synthetic volumes with oblique, permuted and flipped geometry, and file digests."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from scipy import ndimage

from isovox.grid import rotation_matrix as rotation
from isovox.phantoms import phantom
from isovox.volume import Volume


def _oblique_affine(rng: np.random.Generator, spacing=(1.0, 1.0, 1.0), max_angle: float = 35.0) -> np.ndarray:
    affine = np.eye(4)
    angles = rng.uniform(-max_angle, max_angle, 3)
    affine[:3, :3] = rotation(*angles) * np.asarray(spacing, float)
    affine[:3, 3] = rng.uniform(-80, 80, 3)
    return affine


def _digest(path: Path) -> str:
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


def _independent_cubeavg(hr: Volume, lr_arrays: dict[int, np.ndarray], k: int) -> np.ndarray:
    """CubeAvg on the HR grid written from scratch: 1-D cubic B-spline along each scan's slice axis.

    lr_arrays maps slice axis -> the scan's array in the HR axis order (as simulated).
    Slab j of a x k scan is centred on HR index k*j + (k-1)/2.
    """
    total = np.zeros(hr.shape)
    count = np.zeros(hr.shape)
    for axis, lr in lr_arrays.items():
        idx = np.indices(hr.shape, dtype=np.float64)
        coord = (idx[axis] - (k - 1) / 2) / k
        idx[axis] = coord
        values = ndimage.map_coordinates(lr.astype(np.float64), idx, order=3, mode="reflect")
        inside = (coord >= -0.5) & (coord <= lr.shape[axis] - 0.5)
        total += np.where(inside, values, 0)
        count += inside
    return np.where(count > 0, total / np.maximum(count, 1), 0)


_STORAGE = {  # how each scan is stored: slice axis last, first axis reversed, as scanners do
    0: ((1, 2, 0), (0,)),
    1: ((0, 2, 1), (0,)),
    2: ((0, 1, 2), (0,)),
}


@pytest.fixture(scope="session")
def independent_cubeavg() -> Callable[..., np.ndarray]:
    """``independent_cubeavg(hr, {slice axis: scan array in HR axis order}, k)``: CubeAvg written from scratch."""
    return _independent_cubeavg


@pytest.fixture(scope="session")
def scanner_storage() -> dict[int, tuple[tuple[int, int, int], tuple[int, ...]]]:
    """Per slice axis: (axis order, flipped axes) storing a scan as scanners do (slices last, first axis reversed)."""
    return _STORAGE


@pytest.fixture(scope="session")
def make_oblique_affine() -> Callable[..., np.ndarray]:
    """Factory: ``make_oblique_affine(rng, spacing=(1, 1, 1), max_angle=35.0)`` gives a random oblique affine
    (rotation up to ``max_angle`` degrees about each axis, the given voxel spacing, an origin within 80 mm)."""
    return _oblique_affine


@pytest.fixture(scope="session")
def digest() -> Callable[[Path], str]:
    """``digest(path)``: SHA-256 of a file, or of every file under a folder in sorted order."""
    return _digest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def hr_oblique(rng) -> Volume:
    return Volume(phantom(), _oblique_affine(rng), {"source": "phantom"})
