"""Intensity conventions shared by the simulator and the metrics."""

from __future__ import annotations

import numpy as np


def robust_max(data: np.ndarray) -> float:
    """99.5th percentile of the positive voxels: the "white" of an MR volume.

    Noise levels and metrics are expressed relative to this value, so they do
    not depend on the scanner's arbitrary intensity units.
    """
    values = np.asarray(data)
    positive = values[values > 0]
    if positive.size == 0:
        peak = float(np.max(np.abs(values))) if values.size else 0.0
        return peak if peak > 0 else 1.0
    value = float(np.percentile(positive, 99.5))
    return value if value > 0 else 1.0
