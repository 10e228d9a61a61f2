"""Line profile: table values equal isovox.qa.line_profile; series and chart reference the table."""

from __future__ import annotations

import numpy as np
import pytest

import slicer
from IsoVoxLib.convert import volume_from_node
from IsoVoxLib.logic import IsoVoxLogic
from IsoVoxLib.profile import DISTANCE_COLUMN, ProfileObserver, line_endpoints, unique_names, update_profile
from isovox import qa
from isovox.errors import InputError


def column(table_node, name) -> np.ndarray:
    array = table_node.GetTable().GetColumnByName(name)
    assert array is not None, f"no column {name!r}"
    return np.array([array.GetValue(i) for i in range(array.GetNumberOfTuples())])


def make_line(scene, start, end):
    line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "L")
    line.AddControlPointWorld(list(map(float, start)))
    line.AddControlPointWorld(list(map(float, end)))
    return line


@pytest.fixture
def line_setup(scene, scan_nodes, hr_node):
    result = IsoVoxLogic().process(scan_nodes, spacing=1.5)
    volumes = [scan_nodes[0], result, hr_node]
    centre = volume_from_node(result).index_to_world(np.array(volume_from_node(result).shape) / 2)
    line = make_line(scene, centre - [8.0, 3.0, 1.0], centre + [7.0, 2.0, 4.0])
    return line, volumes


def test_table_holds_the_engines_profile_for_every_volume(line_setup):
    line, volumes = line_setup
    logic = IsoVoxLogic()
    nodes = update_profile(line, volumes, logic.volume, samples=40)
    start, end = line_endpoints(line)
    distances, expected = qa.line_profile([volume_from_node(v) for v in volumes], start, end, 40)
    np.testing.assert_allclose(column(nodes.table, DISTANCE_COLUMN), distances, rtol=0, atol=1e-9)
    assert nodes.columns == ["T2ax", "T2ax+T2sag isovox-cubeavg", "T1ref"]
    for name, values in zip(nodes.columns, expected):
        np.testing.assert_allclose(column(nodes.table, name), values, rtol=1e-12, equal_nan=True)
    assert np.isfinite(column(nodes.table, "T1ref")).sum() > 30


def test_one_series_per_volume_in_a_chart_referencing_the_table(scene, line_setup):
    line, volumes = line_setup
    nodes = update_profile(line, volumes, IsoVoxLogic().volume)
    assert scene.GetNumberOfNodesByClass("vtkMRMLPlotSeriesNode") == 3
    assert nodes.chart.IsA("vtkMRMLPlotChartNode")
    assert nodes.chart.GetNumberOfPlotSeriesNodes() == 3
    for index, series in enumerate(nodes.series):
        assert nodes.chart.GetNthPlotSeriesNodeID(index) == series.GetID()
        assert series.GetTableNodeID() == nodes.table.GetID()
        assert series.GetXColumnName() == DISTANCE_COLUMN
        assert series.GetYColumnName() == nodes.columns[index]
        assert series.GetPlotType() == slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter
    # Fewer volumes later: the stale series leaves the chart and the scene.
    update_profile(line, volumes[:2], IsoVoxLogic().volume, nodes)
    assert nodes.chart.GetNumberOfPlotSeriesNodes() == 2
    assert scene.GetNumberOfNodesByClass("vtkMRMLPlotSeriesNode") == 2


def test_moving_the_line_updates_the_table(line_setup):
    line, volumes = line_setup
    logic = IsoVoxLogic()
    observer = ProfileObserver(line, volumes, logic.volume)
    before = column(observer.nodes.table, DISTANCE_COLUMN)[-1]
    start, end = line_endpoints(line)
    new_end = end + np.array([0.0, 5.0, 0.0])
    line.SetNthControlPointPositionWorld(1, *new_end)
    after = column(observer.nodes.table, DISTANCE_COLUMN)[-1]
    assert after == pytest.approx(np.linalg.norm(new_end - start)) and after != pytest.approx(before)
    _, expected = qa.line_profile([volume_from_node(v) for v in volumes], start, new_end)
    np.testing.assert_allclose(column(observer.nodes.table, observer.nodes.columns[1]), expected[1], equal_nan=True)
    observer.stop()
    line.SetNthControlPointPositionWorld(1, *end)
    assert column(observer.nodes.table, DISTANCE_COLUMN)[-1] == pytest.approx(after)


def test_a_line_without_two_points_is_refused(scene, scan_nodes):
    line = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "half")
    line.AddControlPointWorld([0.0, 0.0, 0.0])
    with pytest.raises(InputError, match="both points"):
        update_profile(line, scan_nodes, IsoVoxLogic().volume)


def test_repeated_names_get_distinct_columns():
    assert unique_names(["a", "a", DISTANCE_COLUMN]) == ["a", "a (2)", f"{DISTANCE_COLUMN} (2)"]
