"""Lesion QA: the point list, jump-to, and per-lesion numbers against the engine's crop."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from IsoVoxLib.convert import matrix_to_array, volume_from_node
from IsoVoxLib.lesions import compare_lesions, jump_to_lesion, lesion_list, lesions
from IsoVoxLib.logic import IsoVoxLogic
from isovox import qa
from isovox.errors import InputError


@pytest.fixture
def marked(scene, scan_nodes, hr_node):
    result = IsoVoxLogic().process(scan_nodes, spacing=1.5)
    hr = volume_from_node(hr_node)
    points = lesion_list(scene)
    spots = [hr.index_to_world(np.array([10.0, 12.0, 9.0])), hr.index_to_world(np.array([14.2, 9.5, 11.3]))]
    for spot, label in zip(spots, ("left frontal", "")):
        index = points.AddControlPointWorld(list(map(float, spot)))
        points.SetNthControlPointLabel(index, label)
    return points, [scan_nodes[0], result, hr_node], spots


def test_lesion_list_is_created_once_and_lists_its_points(scene, marked):
    points, _, spots = marked
    assert lesion_list(scene) is points
    items = lesions(points)
    assert [l.label for l in items] == ["left frontal", "lesion 2"]
    np.testing.assert_allclose([l.ras for l in items], spots, atol=1e-6)


def test_per_lesion_table_matches_the_engine_crop(marked):
    points, volumes, spots = marked
    logic = IsoVoxLogic()
    table = compare_lesions(points, volumes, logic.volume, half_size_mm=3.0).GetTable()
    assert table.GetNumberOfRows() == 2
    assert table.GetColumnByName("Lesion").GetValue(0) == "left frontal"
    for node in volumes:
        volume = volume_from_node(node)
        for row, spot in enumerate(spots):
            box = qa.crop(volume, spot, 3.0).data
            centre = ndimage.map_coordinates(volume.data.astype(np.float64), volume.world_to_index(spot)[:, None], order=1)[0]
            name = node.GetName()
            assert table.GetColumnByName(f"{name} mean").GetValue(row) == pytest.approx(float(box.mean()), rel=1e-6)
            assert table.GetColumnByName(f"{name} peak").GetValue(row) == pytest.approx(float(box.max()))
            assert table.GetColumnByName(f"{name} centre").GetValue(row) == pytest.approx(centre, rel=1e-6)
    assert table.GetColumnByName("R").GetValue(1) == pytest.approx(spots[1][0])


def test_lesion_outside_a_volume_gives_nan(scene, marked):
    points, volumes, _ = marked
    points.AddControlPointWorld([900.0, 900.0, 900.0])
    table = compare_lesions(points, volumes, IsoVoxLogic().volume).GetTable()
    assert np.isnan(table.GetColumnByName("T1ref mean").GetValue(2))


def test_jump_centres_the_slice_views_on_the_lesion(scene, marked):
    points, _, spots = marked
    red = scene.AddNewNodeByClass("vtkMRMLSliceNode")
    red.SetLayoutName("Red")
    ras = jump_to_lesion(scene, points, 1)
    np.testing.assert_allclose(ras, spots[1], atol=1e-6)
    slice_to_ras = matrix_to_array(red.GetSliceToRAS())
    np.testing.assert_allclose(slice_to_ras[:3, 3], spots[1], atol=1e-4)
    with pytest.raises(InputError, match="no lesion 5"):
        jump_to_lesion(scene, points, 4)
