"""Line profile: markups line -> table -> one plot series per volume -> a plot chart.

Values come from :func:`isovox.qa.line_profile` (linear interpolation in each volume's
own grid, NaN outside it). :class:`ProfileObserver` redoes the profile whenever a line
point moves, as the Sandbox extension's LineProfile module does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

import slicer
from isovox import qa
from isovox.errors import InputError

from .convert import node_label

DISTANCE_COLUMN = "Distance (mm)"
PALETTE = ((0.20, 0.20, 0.20), (0.00, 0.45, 0.85), (0.85, 0.33, 0.10), (0.10, 0.60, 0.25), (0.55, 0.25, 0.65),
           (0.80, 0.60, 0.00))


@dataclass
class ProfileNodes:
    table: Any
    chart: Any
    series: list[Any] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)


def line_endpoints(line_node: Any) -> tuple[np.ndarray, np.ndarray]:
    """World RAS of the line's two control points."""
    if line_node is None or line_node.GetNumberOfControlPoints() < 2:
        raise InputError("place both points of the profile line first")
    start, end = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
    line_node.GetNthControlPointPositionWorld(0, start)
    line_node.GetNthControlPointPositionWorld(1, end)
    return np.array(start), np.array(end)


def unique_names(names: Sequence[str], taken: Sequence[str] = (DISTANCE_COLUMN,)) -> list[str]:
    """Table column names must differ: add " (2)", " (3)" to repeats."""
    used, out = set(taken), []
    for name in names:
        candidate, n = name, 2
        while candidate in used:
            candidate, n = f"{name} ({n})", n + 1
        used.add(candidate)
        out.append(candidate)
    return out


def update_profile(line_node: Any, volume_nodes: Sequence[Any], volume_of: Callable[[Any], Any],
                   nodes: Optional[ProfileNodes] = None, samples: Optional[int] = None) -> ProfileNodes:
    """Sample every volume along the line into a table and (re)build one plot series per volume."""
    volume_nodes = [n for n in volume_nodes if n is not None]
    if not volume_nodes:
        raise InputError("choose at least one volume for the profile")
    start, end = line_endpoints(line_node)
    distances, profiles = qa.line_profile([volume_of(n) for n in volume_nodes], start, end, samples)
    scene = line_node.GetScene()
    if nodes is None:
        table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName("IsoVox profile"))
        chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", scene.GenerateUniqueName("IsoVox profile chart"))
        nodes = ProfileNodes(table, chart)
    columns = unique_names([node_label(n) for n in volume_nodes])
    _fill_table(nodes.table, distances, profiles, columns)
    _update_series(scene, nodes, columns)
    nodes.chart.SetTitle(f"Profile along {node_label(line_node)}")
    nodes.chart.SetXAxisTitle(DISTANCE_COLUMN)
    nodes.chart.SetYAxisTitle("Intensity")
    nodes.columns = columns
    return nodes


def _fill_table(table_node: Any, distances: np.ndarray, profiles: list[np.ndarray], columns: list[str]) -> None:
    import vtk

    table = table_node.GetTable()
    was_modifying = table_node.StartModify()
    table.Initialize()
    for name, values in zip([DISTANCE_COLUMN] + columns, [distances] + list(profiles)):
        array = vtk.vtkDoubleArray()
        array.SetName(name)
        array.SetNumberOfValues(len(values))
        for i, value in enumerate(values):
            array.SetValue(i, float(value))
        table.AddColumn(array)
    table.Modified()
    table_node.Modified()
    table_node.EndModify(was_modifying)


def _update_series(scene: Any, nodes: ProfileNodes, columns: list[str]) -> None:
    """Reuse series by name, add missing ones, drop the ones whose volume left the list."""
    existing = {s.GetName(): s for s in nodes.series}
    keep = []
    for index, column in enumerate(columns):
        series = existing.pop(column, None)
        if series is None:
            series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", column)
        series.SetAndObserveTableNodeID(nodes.table.GetID())
        series.SetXColumnName(DISTANCE_COLUMN)
        series.SetYColumnName(column)
        series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
        series.SetColor(*PALETTE[index % len(PALETTE)])
        if not nodes.chart.HasPlotSeriesNodeID(series.GetID()):
            nodes.chart.AddAndObservePlotSeriesNodeID(series.GetID())
        keep.append(series)
    for stale in existing.values():
        nodes.chart.RemovePlotSeriesNodeID(stale.GetID())
        scene.RemoveNode(stale)
    nodes.series = keep


class ProfileObserver:
    """Keeps a profile up to date while the user drags the line's points."""

    def __init__(self, line_node: Any, volume_nodes: Sequence[Any], volume_of: Callable[[Any], Any],
                 nodes: Optional[ProfileNodes] = None, on_error: Optional[Callable[[str], None]] = None) -> None:
        self.line_node = line_node
        self.volume_nodes = list(volume_nodes)
        self.volume_of = volume_of
        self.on_error = on_error
        self.nodes = update_profile(line_node, self.volume_nodes, volume_of, nodes)
        self._tags = [line_node.AddObserver(event, self._moved)
                      for event in (slicer.vtkMRMLMarkupsNode.PointModifiedEvent,
                                    slicer.vtkMRMLMarkupsNode.PointPositionDefinedEvent)]

    def _moved(self, caller: Any = None, event: Any = None) -> None:
        try:
            update_profile(self.line_node, self.volume_nodes, self.volume_of, self.nodes)
        except InputError as error:  # e.g. a point is being re-placed
            if self.on_error is not None:
                self.on_error(str(error))

    def stop(self) -> None:
        for tag in self._tags:
            self.line_node.RemoveObserver(tag)
        self._tags = []
