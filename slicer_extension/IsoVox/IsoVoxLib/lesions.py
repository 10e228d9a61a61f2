"""Lesion QA: a markups point list of lesions, jump-to, and a per-lesion comparison table.

For each lesion and each volume the table gives the value at the point (linear
interpolation), and the mean and peak in a small box around it (:func:`isovox.qa.crop`,
the same voxels, no resampling), so a lesion that a method blurs away or invents
shows up as a number as well as in the views.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
from scipy import ndimage

import slicer
from isovox import qa
from isovox.errors import InputError

from .convert import node_label
from .profile import unique_names

LESION_LIST_NAME = "IsoVox lesions"
STATS = ("centre", "mean", "peak")


@dataclass(frozen=True)
class Lesion:
    index: int
    label: str
    ras: tuple[float, float, float]


def lesion_list(scene: Any, name: str = LESION_LIST_NAME) -> Any:
    """The scene's lesion point list, created on first use."""
    node = scene.GetFirstNodeByName(name)
    if node is not None and node.IsA("vtkMRMLMarkupsFiducialNode"):
        return node
    return scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)


def lesions(point_list: Any) -> list[Lesion]:
    """Every control point of the list, with its label and world RAS position."""
    found = []
    for index in range(point_list.GetNumberOfControlPoints()):
        position = [0.0, 0.0, 0.0]
        point_list.GetNthControlPointPositionWorld(index, position)
        label = point_list.GetNthControlPointLabel(index) or f"lesion {index + 1}"
        found.append(Lesion(index, label, tuple(float(p) for p in position)))
    return found


def jump_to_lesion(scene: Any, point_list: Any, index: int) -> tuple[float, float, float]:
    """Centre every slice view on lesion ``index`` (linked views follow); returns its RAS."""
    items = lesions(point_list)
    if not 0 <= index < len(items):
        raise InputError(f"there is no lesion {index + 1}; the list has {len(items)}")
    r, a, s = items[index].ras
    slicer.vtkMRMLSliceNode.JumpAllSlices(scene, r, a, s, slicer.vtkMRMLSliceNode.CenteredJumpSlice)
    return items[index].ras


def lesion_stats(volume: Any, ras: Sequence[float], half_size_mm: float) -> dict[str, float]:
    """Value at the point and mean/peak of the box of voxels within ``half_size_mm`` of it."""
    ijk = volume.world_to_index(np.asarray(ras, float))
    inside = all(-0.5 <= ijk[a] <= volume.shape[a] - 0.5 for a in range(3))
    if not inside:
        return {name: float("nan") for name in STATS}
    centre = ndimage.map_coordinates(np.asarray(volume.data, np.float64), ijk[:, None], order=1, mode="nearest")[0]
    box = qa.crop(volume, np.asarray(ras, float), half_size_mm).data
    return {"centre": float(centre), "mean": float(np.mean(box)), "peak": float(np.max(box))}


def compare_lesions(point_list: Any, volume_nodes: Sequence[Any], volume_of: Callable[[Any], Any],
                    half_size_mm: float = 3.0, table_node: Optional[Any] = None) -> Any:
    """A table with one row per lesion: label, RAS, and centre/mean/peak in every volume."""
    import vtk

    volume_nodes = [n for n in volume_nodes if n is not None]
    if not volume_nodes:
        raise InputError("choose at least one volume to compare lesions in")
    items = lesions(point_list)
    scene = point_list.GetScene()
    if table_node is None:
        table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName("IsoVox lesion QA"))
    names = unique_names([node_label(n) for n in volume_nodes], taken=("Lesion", "R", "A", "S"))
    volumes = [volume_of(n) for n in volume_nodes]
    rows = [[lesion_stats(v, lesion.ras, half_size_mm) for v in volumes] for lesion in items]
    table = table_node.GetTable()
    was_modifying = table_node.StartModify()
    table.Initialize()
    labels = vtk.vtkStringArray()
    labels.SetName("Lesion")
    for lesion in items:
        labels.InsertNextValue(lesion.label)
    table.AddColumn(labels)
    columns = [("R", [l.ras[0] for l in items]), ("A", [l.ras[1] for l in items]), ("S", [l.ras[2] for l in items])]
    for v, name in enumerate(names):
        for stat in STATS:
            columns.append((f"{name} {stat}", [row[v][stat] for row in rows]))
    for column_name, values in columns:
        array = vtk.vtkDoubleArray()
        array.SetName(column_name)
        for value in values:
            array.InsertNextValue(float(value))
        table.AddColumn(array)
    table.Modified()
    table_node.Modified()
    table_node.EndModify(was_modifying)
    return table_node
