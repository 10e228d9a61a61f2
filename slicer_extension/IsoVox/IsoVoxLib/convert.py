"""MRML scalar volume nodes <-> :class:`isovox.volume.Volume`.

Slicer keeps a volume as vtkImageData (x fastest, so numpy sees it as (k, j, i))
plus an IJKToRAS matrix, and a possible parent transform. The engine wants a float32
array in (i, j, k) order with its index-to-RAS affine. Every transpose lives here so
that a voxel keeps its RAS position both ways.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import numpy as np
import vtk
from vtk.util import numpy_support

import slicer
from isovox.errors import InputError
from isovox.volume import Volume


SCAN_ATTRIBUTE = "isovox.scan"  # JSON: the engine's record of a scan read from DICOM (see scan_meta)


def matrix_to_array(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=np.float64)


def array_to_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def node_label(node: slicer.vtkMRMLNode) -> str:
    return node.GetName() or node.GetID() or "volume"


def world_ijk_to_ras(node: slicer.vtkMRMLScalarVolumeNode) -> np.ndarray:
    """IJKToRAS including a linear parent transform (what the user sees in the views)."""
    local = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(local)
    affine = matrix_to_array(local)
    parent = node.GetParentTransformNode()
    if parent is not None:
        if not parent.IsTransformToWorldLinear():
            raise InputError(f"volume {node_label(node)!r} is under a non-linear transform; harden it first")
        to_world = vtk.vtkMatrix4x4()
        parent.GetMatrixTransformToWorld(to_world)
        affine = matrix_to_array(to_world) @ affine
    return affine


def volume_from_node(node: slicer.vtkMRMLScalarVolumeNode) -> Volume:
    """The node's voxels and world geometry as an engine volume (a float32 copy)."""
    if node is None or not node.IsA("vtkMRMLScalarVolumeNode"):
        raise InputError("select a scalar volume")
    image = node.GetImageData()
    label = node_label(node)
    if image is None or image.GetPointData() is None or image.GetPointData().GetScalars() is None:
        raise InputError(f"volume {label!r} has no voxels")
    scalars = image.GetPointData().GetScalars()
    if scalars.GetNumberOfComponents() != 1:
        raise InputError(f"volume {label!r} has {scalars.GetNumberOfComponents()} components; isovox needs a scalar volume")
    dims = image.GetDimensions()
    kji = numpy_support.vtk_to_numpy(scalars).reshape(dims[2], dims[1], dims[0])
    data = np.ascontiguousarray(kji.transpose(2, 1, 0), dtype=np.float32)
    meta = dict(scan_meta(node), source=label, node_id=node.GetID())
    return Volume(data, world_ijk_to_ras(node), meta)


def scan_meta(node: slicer.vtkMRMLScalarVolumeNode) -> dict[str, Any]:
    """The engine's record of the scan in ``node`` (slice thickness, missing slices, source series...)
    when it was loaded by :func:`.series.load_series` and still has that grid; else empty."""
    text = node.GetAttribute(SCAN_ATTRIBUTE) if node is not None else None
    if not text:
        return {}
    try:
        record = json.loads(text)
    except ValueError:
        return {}
    image = node.GetImageData()
    if not isinstance(record, dict) or image is None or list(image.GetDimensions()) != record.pop("shape", None):
        return {}
    return record


def update_node_from_volume(node: slicer.vtkMRMLScalarVolumeNode, volume: Volume) -> slicer.vtkMRMLScalarVolumeNode:
    """Put an engine volume's voxels and geometry into ``node`` (removing any parent transform)."""
    kji = np.ascontiguousarray(np.asarray(volume.data, dtype=np.float32).transpose(2, 1, 0))
    image = vtk.vtkImageData()
    image.SetDimensions(*volume.shape)
    scalars = numpy_support.numpy_to_vtk(kji.ravel(), deep=True, array_type=vtk.VTK_FLOAT)
    scalars.SetName("ImageScalars")
    image.GetPointData().SetScalars(scalars)
    was_modifying = node.StartModify()
    node.SetAndObserveTransformNodeID(None)
    node.SetIJKToRASMatrix(array_to_matrix(volume.affine))
    node.SetAndObserveImageData(image)
    node.EndModify(was_modifying)
    return node


def add_volume_node(scene: slicer.vtkMRMLScene, volume: Volume, name: str,
                    node: Optional[slicer.vtkMRMLScalarVolumeNode] = None) -> slicer.vtkMRMLScalarVolumeNode:
    """Put ``volume`` into ``node`` (or a new scalar volume node in ``scene``) with a display node."""
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(name))
    elif node.GetScene() is not scene:
        raise InputError("the output volume belongs to another scene than the inputs")
    update_node_from_volume(node, volume)
    ensure_display_node(node)
    return node


def ensure_display_node(node: slicer.vtkMRMLScalarVolumeNode) -> slicer.vtkMRMLScalarVolumeDisplayNode:
    """A scalar display node (grey, auto window/level) when the node has none."""
    display = node.GetDisplayNode()
    if display is None:
        scene = node.GetScene()
        display = scene.AddNewNodeByClass("vtkMRMLScalarVolumeDisplayNode")
        grey = scene.GetNodeByID("vtkMRMLColorTableNodeGrey")
        if grey is not None:
            display.SetAndObserveColorNodeID(grey.GetID())
        display.SetAutoWindowLevel(True)
        node.SetAndObserveDisplayNodeID(display.GetID())
    return display
