"""Suggest inputs from geometry: which loaded volumes pair well with the first scan.

A good partner is another thick-slice scan whose thick axis points another way (so it
measures what the first one blurs) and whose field of view overlaps; a good reference
is a near-isotropic volume that overlaps. Only IJKToRAS and dimensions are read.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from isovox.grid import thick_axis
from isovox.volume import Volume

from .convert import world_ijk_to_ras

DERIVED_ATTRIBUTES = ("isovox.method", "isovox.fused", "isovox.residual")


def _geometry(node: Any) -> Optional[tuple[Volume, np.ndarray]]:
    """A one-voxel stand-in carrying the node's affine (spacing and directions), and its RAS corners."""
    image = node.GetImageData()
    if image is None:
        return None
    affine = world_ijk_to_ras(node)
    dims = np.array(image.GetDimensions(), float)
    cube = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], float)
    corners = (cube * dims - 0.5) @ affine[:3, :3].T + affine[:3, 3]
    return Volume(np.zeros((1, 1, 1)), affine), corners


def _overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a.min(0) < b.max(0)) and np.all(b.min(0) < a.max(0)))


def _candidates(scene: Any, first: Any) -> list[Any]:
    nodes = []
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLScalarVolumeNode")
        if node is first or node.IsA("vtkMRMLLabelMapVolumeNode"):
            continue
        if any(node.GetAttribute(a) for a in DERIVED_ATTRIBUTES):  # our own results, fused inputs and maps
            continue
        nodes.append(node)
    return nodes


def slice_angle(a: Volume, b: Volume) -> Optional[float]:
    """Angle in degrees between the thick axes of two scans (None if either is near-isotropic)."""
    axis_a, axis_b = thick_axis(a), thick_axis(b)
    if axis_a is None or axis_b is None:
        return None
    cosine = abs(float(a.directions[:, axis_a] @ b.directions[:, axis_b]))
    return float(np.degrees(np.arccos(min(cosine, 1.0))))


def _rank_overlapping(scene: Any, first: Any, score: Callable[[Volume, Volume], Optional[float]]) -> list[Any]:
    """Volumes overlapping ``first`` whose ``score`` is not None, lowest score (then name) first."""
    base = _geometry(first) if first is not None else None
    if base is None:
        return []
    ranked = []
    for node in _candidates(scene, first):
        geometry = _geometry(node)
        if geometry is None or not _overlaps(base[1], geometry[1]):
            continue
        key = score(base[0], geometry[0])
        if key is not None:
            ranked.append((key, node.GetName() or "", node))
    return [item[2] for item in sorted(ranked, key=lambda item: item[:2])]


def suggest_partners(scene: Any, first: Any, min_angle: float = 30.0) -> list[Any]:
    """Thick-slice volumes overlapping ``first`` with slices at least ``min_angle`` apart, most orthogonal first."""
    def score(a: Volume, b: Volume) -> Optional[float]:
        angle = slice_angle(a, b)
        return -round(angle, 3) if angle is not None and angle >= min_angle else None

    return _rank_overlapping(scene, first, score)


def suggest_references(scene: Any, first: Any) -> list[Any]:
    """Near-isotropic volumes overlapping ``first``, finest first."""
    return _rank_overlapping(scene, first, lambda a, b: float(b.spacing.max()) if thick_axis(b) is None else None)
