"""IsoVoxLogic.process on real MRML nodes: scene, geometry, values, names, provenance, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

import slicer
import vtk
from IsoVoxLib.convert import array_to_matrix, matrix_to_array, volume_from_node
from IsoVoxLib.logic import IsoVoxLogic, get_provenance, output_name
from isovox import api, frontend, qa
from isovox.methods import default_method
from isovox.errors import InputError
from isovox.io import read_volume
from isovox.sample import sample_scan_paths


def ijk_to_ras(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return matrix_to_array(matrix)


def test_process_returns_a_node_in_the_inputs_scene_on_the_engines_grid(scene, scan_nodes, scan_files):
    node = IsoVoxLogic().process(scan_nodes, method="cubeavg", spacing=1.5)
    assert node.IsA("vtkMRMLScalarVolumeNode") and node.GetScene() is scene
    assert scene.GetNodeByID(node.GetID()) is node
    engine_plan = api.plan([volume_from_node(n) for n in scan_nodes], "cubeavg", spacing=1.5)
    np.testing.assert_allclose(ijk_to_ras(node), engine_plan.grid.affine, atol=1e-9)
    assert node.GetImageData().GetDimensions() == tuple(engine_plan.grid.shape)
    # The same run on the files as the engine reads them: same voxels at the same RAS points.
    files_result = api.super_resolve([read_volume(p) for p in scan_files], "cubeavg", spacing=1.5).volume
    result = volume_from_node(node)
    difference = qa.difference_map(result, files_result).data
    assert np.isfinite(difference).all()
    assert np.abs(difference).max() <= 1e-3 * np.abs(files_result.data).max()


def test_a_voxel_of_the_result_sits_where_the_engine_puts_it(scan_nodes):
    node = IsoVoxLogic().process(scan_nodes, spacing=2.0)
    engine_result = api.super_resolve([volume_from_node(n) for n in scan_nodes], "cubeavg", spacing=2.0).volume
    ijk = np.array([3, 4, 2, 1.0])
    np.testing.assert_allclose(ijk_to_ras(node) @ ijk, engine_result.affine @ ijk, atol=1e-9)
    image = node.GetImageData()
    assert image.GetScalarComponentAsDouble(3, 4, 2, 0) == pytest.approx(float(engine_result.data[3, 4, 2]), rel=1e-6)


def test_output_node_is_reused_named_and_carries_provenance(scene, scan_nodes):
    logic = IsoVoxLogic()
    output = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "mine")
    node = logic.process(scan_nodes, "cubeavg", spacing=2.0, outputVolume=output)
    assert node is output and node.GetName() == "mine"
    fresh = logic.process(scan_nodes, "cubeavg", spacing=2.0)
    assert fresh.GetName() == output_name(scan_nodes, "cubeavg") == "T2ax+T2sag isovox-cubeavg"
    provenance = get_provenance(fresh)
    assert provenance["method"] == "cubeavg"
    assert [e["node"] for e in provenance["inputs"]] == ["T2ax", "T2sag"]
    assert provenance["spacing"] == [2.0, 2.0, 2.0]
    assert fresh.GetAttribute("isovox.method") == "cubeavg"
    assert json.loads(fresh.GetAttribute("isovox.provenance"))["shape"] == list(fresh.GetImageData().GetDimensions())
    assert fresh.GetDisplayNode() is not None


def test_one_scan_with_the_default_method(scan_nodes):
    node = IsoVoxLogic().process(scan_nodes[:1], method=None, spacing=2.0)
    assert get_provenance(node)["method"] == default_method(1, "cpu").name
    single = IsoVoxLogic().process(scan_nodes[0], method=None, spacing=2.0)  # one node, not in a list
    assert single.GetName().startswith("T2ax isovox-") and single is not node
    assert tuple(IsoVoxLogic().process((scan_nodes[0], None), None, 2.0).GetImageData().GetDimensions()) == \
        tuple(node.GetImageData().GetDimensions())


@pytest.mark.parametrize("inputs, spacing, message", [
    ("none", None, "at least one"),
    ("twice", None, "twice"),
    ("ok", 0.01, "finer than"),
    ("ok", "abc", "not a number"),
])
def test_bad_requests_raise_one_clear_input_error(scan_nodes, inputs, spacing, message):
    nodes = {"none": [], "twice": [scan_nodes[0], scan_nodes[0]], "ok": scan_nodes}[inputs]
    with pytest.raises(InputError, match=message):
        IsoVoxLogic().process(nodes, spacing=spacing)


def test_inputs_from_two_scenes_are_refused(scan_nodes):
    other = slicer.vtkMRMLScene()
    stray = other.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "stray")
    stray.SetAndObserveImageData(scan_nodes[0].GetImageData())
    with pytest.raises(InputError, match="different scenes"):
        IsoVoxLogic().process([scan_nodes[0], stray])


def test_preview_is_a_slab_of_the_full_result(scan_nodes):
    logic = IsoVoxLogic()
    full = volume_from_node(logic.process(scan_nodes, spacing=1.5))
    centre = full.index_to_world(np.array(full.shape) // 2)
    normal = full.directions[:, 1]
    preview = logic.preview(scan_nodes, centre, half_width_mm=2.0, normal_ras=normal, spacing=1.5)
    assert preview.GetName().endswith("preview")
    slab = volume_from_node(preview)
    assert slab.shape[1] == 5 and slab.shape[0] == full.shape[0] and slab.shape[2] == full.shape[2]
    np.testing.assert_allclose(slab.affine[:3, :3], full.affine[:3, :3], atol=1e-9)
    offset = np.rint(full.world_to_index(slab.origin)).astype(int)
    assert offset.tolist() == [0, full.shape[1] // 2 - 2, 0]
    inside = full.data[:, offset[1]:offset[1] + 5, :]
    np.testing.assert_allclose(slab.data, inside, rtol=1e-4, atol=1e-3 * np.abs(inside).max())


def test_preview_slab_is_cut_across_the_view_normal(scan_nodes):
    """The red view of an oblique scene looks along some grid axis; the preview slab is thin along it."""
    logic = IsoVoxLogic()
    grid = logic.plan(scan_nodes, spacing=2.0).grid
    directions = grid.affine[:3, :3] / grid.spacing
    centre = grid.affine[:3, :3] @ (np.array(grid.shape) / 2) + grid.affine[:3, 3]
    for axis in range(3):
        node = logic.preview(scan_nodes, centre, 2.0, directions[:, axis] * -1, spacing=2.0)
        shape = volume_from_node(node).shape
        assert sorted(shape)[0] == shape[axis] == 3 and shape[axis] < grid.shape[axis]


def test_warnings_turn_a_refusal_into_one_sentence(scan_nodes):
    logic = IsoVoxLogic()
    assert logic.warnings([]) == ["select at least one input volume"]
    assert any("finer" in w for w in logic.warnings(scan_nodes, spacing=0.01))
    assert isinstance(logic.warnings(scan_nodes, spacing=1.5), list)


def test_scale_sets_the_spacing_the_engine_reports_back(scan_nodes):
    logic = IsoVoxLogic()
    spacing = logic.spacing_for_scale(scan_nodes, 2.0)
    assert logic.plan(scan_nodes, spacing=spacing).scale == pytest.approx(2.0)
    with pytest.raises(InputError, match="positive"):
        logic.spacing_for_scale(scan_nodes, 0)


def test_converted_volumes_are_cached_until_the_voxels_change(scan_nodes):
    logic = IsoVoxLogic()
    first = logic.volume(scan_nodes[0])
    assert logic.volume(scan_nodes[0]) is first
    scan_nodes[0].GetImageData().Modified()
    assert logic.volume(scan_nodes[0]) is not first
    second = logic.volume(scan_nodes[0])
    transform = scan_nodes[0].GetScene().AddNewNodeByClass("vtkMRMLLinearTransformNode")
    scan_nodes[0].SetAndObserveTransformNodeID(transform.GetID())
    shift = np.eye(4)
    shift[:3, 3] = (4.0, 0.0, -2.0)
    transform.SetMatrixTransformToParent(array_to_matrix(shift))
    moved = logic.volume(scan_nodes[0])
    assert moved is not second
    np.testing.assert_allclose(moved.affine, shift @ second.affine)
    logic.clear_cache()
    assert logic._cache == {}


def test_real_sample_scans_loaded_by_slicer_give_the_engines_result(scene, load_with_storage_node):
    """Colin27's three 4 mm scans as Slicer reads the NIfTI files (it reorders axes) vs the engine on the files."""
    paths = sample_scan_paths()
    nodes = [load_with_storage_node(scene, p, n) for p, n in zip(paths, ("ax", "cor", "sag"))]
    node = IsoVoxLogic().process(nodes, method="cubeavg", spacing=2.0)
    from_files = api.super_resolve([read_volume(p) for p in paths], "cubeavg", spacing=2.0).volume
    result = volume_from_node(node)
    assert sorted(result.shape) == sorted(from_files.shape)
    difference = qa.difference_map(result, from_files).data
    assert np.isfinite(difference).all()
    assert np.abs(difference).max() <= 1e-4 * np.abs(from_files.data).max()
    # the first voxel centre of the engine's grid is a voxel centre of Slicer's result too
    corner = from_files.index_to_world(np.zeros(3))
    ijk = result.world_to_index(corner)
    np.testing.assert_allclose(ijk, np.rint(ijk), atol=1e-6)


def test_the_reference_goes_to_the_engine_only_for_methods_that_take_one(scan_nodes, hr_node):
    for spec in frontend.all_methods():
        expected = None if spec.reference == "none" else hr_node
        assert frontend.reference_for_method(spec.name, hr_node) is expected
    with pytest.raises(InputError, match="takes no"):
        IsoVoxLogic().process(scan_nodes, "cubeavg", reference=hr_node)
