"""Compare volumes and layout, geometry suggestions, and saving through Slicer's storage node."""

from __future__ import annotations

import json

import numpy as np
import pytest

from IsoVoxLib.compare import (COMPARE_LAYOUT_ID, assign_compare_views, consistency_nodes, difference_node,
                               diverging_color_node, fused_input_node, install_compare_layout)
from IsoVoxLib.convert import volume_from_node
from IsoVoxLib.geometry import suggest_partners, suggest_references
from IsoVoxLib.logic import IsoVoxLogic
from IsoVoxLib.save import input_files, save_volume
from isovox import qa
from isovox.frontend import diverging_limit
from isovox.errors import InputError
from isovox.io import read_volume
from isovox.fusion import fuse
from isovox.grid import Grid


@pytest.fixture
def result(scan_nodes):
    return IsoVoxLogic().process(scan_nodes, spacing=1.5)


def test_residual_is_the_engines_difference_with_a_diverging_window(scene, result, hr_node, scan_nodes):
    node = difference_node(result, hr_node)
    expected = qa.difference_map(volume_from_node(result), volume_from_node(hr_node)).data
    got = volume_from_node(node)
    np.testing.assert_allclose(got.affine, volume_from_node(result).affine)
    np.testing.assert_allclose(got.data, np.nan_to_num(expected, nan=0.0), rtol=1e-6, atol=1e-4)
    display = node.GetDisplayNode()
    assert display.GetColorNodeID() == diverging_color_node(scene).GetID()
    assert display.GetLevel() == 0.0
    assert display.GetWindow() == pytest.approx(2 * diverging_limit(expected), rel=1e-5)
    colors = diverging_color_node(scene)
    assert colors.GetNumberOfColors() == 256
    low, mid, high = [0.0] * 4, [0.0] * 4, [0.0] * 4
    colors.GetColor(0, low), colors.GetColor(128, mid), colors.GetColor(255, high)
    assert low[2] > low[0] and high[0] > high[2] and min(mid[:3]) > 0.95
    assert scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode") == 1  # reused, not duplicated
    again = difference_node(result, scan_nodes[0], output=node)  # the overlay node is reused and renamed
    assert again is node and node.GetName() == f"{result.GetName()} - T2ax"
    assert scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode") == 1


def test_consistency_volume_per_scan_and_fused_input(scene, scan_nodes, result):
    logic = IsoVoxLogic()
    maps = consistency_nodes(logic, result, scan_nodes)
    assert [m.GetName() for m in maps] == [f"{result.GetName()} consistency T2ax", f"{result.GetName()} consistency T2sag"]
    expected = qa.consistency_map(volume_from_node(result), volume_from_node(scan_nodes[0])).data
    np.testing.assert_allclose(volume_from_node(maps[0]).data, np.nan_to_num(expected), atol=1e-3)
    fused = fused_input_node(logic, scan_nodes, result)
    engine = fuse([volume_from_node(n) for n in scan_nodes], grid=Grid.of(volume_from_node(result))).volume
    np.testing.assert_allclose(volume_from_node(fused).data, engine.data)
    assert fused.GetName() == "T2ax+T2sag fused"


def test_compare_layout_and_linked_views(scene, scan_nodes, result, hr_node):
    layout = scene.AddNewNodeByClass("vtkMRMLLayoutNode")
    assert install_compare_layout(layout) == COMPARE_LAYOUT_ID
    assert layout.GetViewArrangement() == COMPARE_LAYOUT_ID
    assert "PlotView1" in layout.GetLayoutDescription(COMPARE_LAYOUT_ID)
    composites = {}
    for name in ("Red", "Yellow", "Green"):
        composites[name] = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
        composites[name].SetLayoutName(name)
    fused = fused_input_node(IsoVoxLogic(), scan_nodes, result)
    residual = difference_node(result, hr_node)
    assignment = assign_compare_views(scene, fused, result, hr_node, overlay=residual, opacity=0.4)
    assert assignment == {"Red": (fused.GetID(), None), "Yellow": (result.GetID(), residual.GetID()),
                          "Green": (hr_node.GetID(), None)}
    assert composites["Yellow"].GetForegroundOpacity() == pytest.approx(0.4)
    assert all(c.GetLinkedControl() for c in composites.values())


def test_partners_and_references_are_suggested_from_geometry(scene, scan_nodes, hr_node, result):
    fused_input_node(IsoVoxLogic(), scan_nodes, result)  # isotropic, but ours: never suggested
    difference_node(result, hr_node)
    assert suggest_partners(scene, scan_nodes[0]) == [scan_nodes[1]]  # not the result, not the isotropic HR
    assert suggest_references(scene, scan_nodes[0]) == [hr_node]
    assert suggest_partners(scene, None) == []


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
def test_saved_file_round_trips_geometry_and_sidecar(scene, tmp_path, result, scan_nodes, suffix,
                                                      load_with_storage_node):
    out = save_volume(result, tmp_path / f"iso{suffix}", protect=input_files(scan_nodes))
    assert result.GetStorageNode().GetFileName() == str(out)
    again = load_with_storage_node(scene, out, "reloaded")
    saved, original = volume_from_node(again), volume_from_node(result)
    assert saved.shape == original.shape or sorted(saved.shape) == sorted(original.shape)
    assert np.abs(qa.difference_map(saved, original).data).max() < 1e-4
    corner = original.index_to_world(np.array([0, 0, 0]))
    assert np.allclose(saved.index_to_world(np.rint(saved.world_to_index(corner))), corner, atol=1e-4)
    engine = read_volume(out)
    assert np.abs(qa.difference_map(engine, original).data).max() < 1e-4
    sidecar = json.loads((tmp_path / "iso.json").read_text())
    assert sidecar["method"] == "cubeavg" and sidecar["saved"]["path"] == str(out.resolve())
    assert [e["node"] for e in sidecar["inputs"]] == ["T2ax", "T2sag"]


def test_save_refuses_inputs_and_odd_suffixes(tmp_path, result, scan_nodes, scan_files):
    with pytest.raises(InputError):
        save_volume(result, scan_files[0], protect=input_files(scan_nodes))
    with pytest.raises(InputError, match="save as"):
        save_volume(result, tmp_path / "iso.png")
