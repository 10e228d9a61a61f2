"""Shared fixtures: synthetic volumes with oblique, permuted and flipped geometry."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from isovox.volume import Volume
from isovox.grid import rotation_matrix as rotation  # noqa: F401  (tests import it from here)


def oblique_affine(rng: np.random.Generator, spacing=(1.0, 1.0, 1.0), max_angle: float = 35.0) -> np.ndarray:
    affine = np.eye(4)
    angles = rng.uniform(-max_angle, max_angle, 3)
    affine[:3, :3] = rotation(*angles) * np.asarray(spacing, float)
    affine[:3, 3] = rng.uniform(-80, 80, 3)
    return affine


def phantom(shape=(40, 44, 36), seed: int = 0) -> np.ndarray:
    """A head-like phantom: a bright ellipsoid with smooth texture and a few small blobs."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float64)
    centre = (np.array(shape) - 1) / 2
    radius = np.array(shape) * 0.42
    inside = (((grid - centre[:, None, None, None]) / radius[:, None, None, None]) ** 2).sum(0) < 1
    texture = ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
    data = inside * (100 + 400 * texture)
    for _ in range(6):
        c = rng.uniform(0.3, 0.7, 3) * np.array(shape)
        data += 60 * np.exp(-(((grid - c[:, None, None, None]) ** 2).sum(0)) / 4.0)
    return np.clip(data, 0, None).astype(np.float32)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def hr_oblique(rng) -> Volume:
    return Volume(phantom(), oblique_affine(rng), {"source": "phantom"})


def digest(path: Path) -> str:
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()
