"""MRML volume node <-> engine Volume: every voxel keeps its RAS position."""

from __future__ import annotations

import numpy as np
import pytest

import vtk
from IsoVoxLib.convert import add_volume_node, array_to_matrix, matrix_to_array, volume_from_node, world_ijk_to_ras
from isovox.errors import InputError
from isovox.io import read_volume
from isovox.volume import Volume


def test_loaded_node_matches_the_engine_reader_voxel_for_voxel(scan_nodes, scan_files):
    for node, path in zip(scan_nodes, scan_files):
        engine = read_volume(path)
        converted = volume_from_node(node)
        # Slicer may store the axes in another order or sign; compare through RAS.
        ijk = np.array([[1, 2, 3], [0, 0, 0], [5, 7, 2]])
        ras = engine.index_to_world(ijk)
        back = np.rint(converted.world_to_index(ras)).astype(int)
        np.testing.assert_allclose(converted.index_to_world(back), ras, atol=1e-4)
        assert [converted.data[tuple(b)] for b in back] == [engine.data[tuple(i)] for i in ijk]


def test_round_trip_keeps_an_oblique_anisotropic_voxel_in_place(scene, fixed_oblique_affine):
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    volume = Volume(data, fixed_oblique_affine(spacing=(0.7, 1.3, 3.0)))
    node = add_volume_node(scene, volume, "oblique")
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    np.testing.assert_allclose(matrix_to_array(matrix), volume.affine, atol=1e-12)
    # vtkImageData index (i, j, k) holds data[i, j, k]
    image = node.GetImageData()
    assert image.GetDimensions() == (4, 5, 6)
    assert image.GetScalarComponentAsDouble(3, 1, 4, 0) == data[3, 1, 4]
    back = volume_from_node(node)
    np.testing.assert_array_equal(back.data, data)
    np.testing.assert_allclose(back.affine, volume.affine, atol=1e-12)


def test_linear_parent_transform_is_included(scene, fixed_oblique_affine):
    volume = Volume(np.ones((3, 4, 5)), fixed_oblique_affine())
    node = add_volume_node(scene, volume, "moved")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = np.eye(4)
    shift[:3, 3] = (10, -5, 2)
    transform.SetMatrixTransformToParent(array_to_matrix(shift))
    node.SetAndObserveTransformNodeID(transform.GetID())
    np.testing.assert_allclose(world_ijk_to_ras(node), shift @ volume.affine, atol=1e-9)


def test_empty_or_vector_volumes_are_refused_with_a_clear_message(scene):
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputError, match="no voxels"):
        volume_from_node(empty)
    with pytest.raises(InputError, match="scalar volume"):
        volume_from_node(None)
