"""Synthetic head-like volumes for tests, examples and benchmarks (no data download needed)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def phantom(shape: tuple[int, int, int] = (40, 44, 36), seed: int = 0, texture_sigma: float = 2.0,
            amplitude: float = 400.0, blobs: int = 6) -> np.ndarray:
    """A bright ellipsoid with smooth texture and ``blobs`` small Gaussian blobs (float32, >= 0)."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float64)
    centre = (np.array(shape) - 1) / 2
    radius = np.array(shape) * 0.42
    inside = (((grid - centre[:, None, None, None]) / radius[:, None, None, None]) ** 2).sum(0) < 1
    texture = ndimage.gaussian_filter(rng.normal(size=shape), texture_sigma)
    data = inside * (100 + amplitude * texture)
    for _ in range(blobs):
        c = rng.uniform(0.3, 0.7, 3) * np.array(shape)
        data += 60 * np.exp(-(((grid - c[:, None, None, None]) ** 2).sum(0)) / 4.0)
    return np.clip(data, 0, None).astype(np.float32)
