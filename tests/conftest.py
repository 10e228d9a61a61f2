"""Shared fixtures: synthetic volumes with oblique, permuted and flipped geometry."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from isovox.volume import Volume
from isovox.grid import rotation_matrix as rotation
from isovox.phantoms import phantom  # noqa: F401  (tests import it from here)  # noqa: F401  (tests import it from here)


def oblique_affine(rng: np.random.Generator, spacing=(1.0, 1.0, 1.0), max_angle: float = 35.0) -> np.ndarray:
    affine = np.eye(4)
    angles = rng.uniform(-max_angle, max_angle, 3)
    affine[:3, :3] = rotation(*angles) * np.asarray(spacing, float)
    affine[:3, 3] = rng.uniform(-80, 80, 3)
    return affine


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
