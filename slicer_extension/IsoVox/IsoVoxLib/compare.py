"""Compare views: fused input vs result vs reference, and residual/consistency overlays.

The engine computes every map (:mod:`isovox.qa`, :mod:`isovox.fusion`); this module
turns them into MRML volumes with a diverging colour table and puts them into a
three-view layout whose slice views are linked.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from isovox import qa
from isovox.frontend import diverging_limit
from isovox.fusion import fuse
from isovox.grid import Grid
from isovox.volume import Volume

from .convert import add_volume_node, node_label, volume_from_node
from .logic import as_node_list, get_provenance

DIVERGING_COLOR_NAME = "IsoVox diverging"
COMPARE_LAYOUT_ID = 28801  # a custom layout id, clear of Slicer's built-in ones
COMPARE_VIEWS = ("Red", "Yellow", "Green")  # fused input | result | reference
RESIDUAL_ATTRIBUTE = "isovox.residual"

COMPARE_LAYOUT_XML = """<layout type="vertical" split="true">
 <item splitSize="700">
  <layout type="horizontal">
   <item><view class="vtkMRMLSliceNode" singletontag="Red">
    <property name="orientation" action="default">Axial</property>
    <property name="viewlabel" action="default">R</property>
    <property name="viewcolor" action="default">#F34A33</property>
   </view></item>
   <item><view class="vtkMRMLSliceNode" singletontag="Yellow">
    <property name="orientation" action="default">Axial</property>
    <property name="viewlabel" action="default">Y</property>
    <property name="viewcolor" action="default">#EDD54C</property>
   </view></item>
   <item><view class="vtkMRMLSliceNode" singletontag="Green">
    <property name="orientation" action="default">Axial</property>
    <property name="viewlabel" action="default">G</property>
    <property name="viewcolor" action="default">#6EB04B</property>
   </view></item>
  </layout>
 </item>
 <item splitSize="300">
  <view class="vtkMRMLPlotViewNode" singletontag="PlotView1">
   <property name="viewlabel" action="default">P</property>
  </view>
 </item>
</layout>"""


def fused_input_node(logic: Any, input_nodes: Sequence[Any], result_node: Any, output: Any = None) -> Any:
    """CubeAvg of the inputs on the result's grid: what the scans say, before any learned method."""
    scans = logic.scans(input_nodes)
    fused = fuse(scans, grid=Grid.of(volume_from_node(result_node))).volume
    name = "+".join(node_label(n) for n in as_node_list(input_nodes)) + " fused"
    node = add_volume_node(result_node.GetScene(), fused, name, output)
    node.SetAttribute("isovox.fused", "cubeavg")
    return node


def difference_node(result_node: Any, other_node: Any, output: Any = None) -> Any:
    """``result - other`` on the result grid (0 where ``other`` has no data), shown with a diverging map."""
    diff = qa.difference_map(volume_from_node(result_node), volume_from_node(other_node))
    name = f"{node_label(result_node)} - {node_label(other_node)}"
    return _residual_node(result_node.GetScene(), diff, name, output, "difference")


def consistency_nodes(logic: Any, result_node: Any, input_nodes: Sequence[Any]) -> list[Any]:
    """Per scan: the result re-acquired like that scan minus the scan (where it contradicts the data)."""
    result = volume_from_node(result_node)
    nodes = []
    maps = qa.consistency_maps(result, logic.scans(input_nodes), get_provenance(result_node))
    for scan_node, diff in zip(as_node_list(input_nodes), maps):
        name = f"{node_label(result_node)} consistency {node_label(scan_node)}"
        nodes.append(_residual_node(result_node.GetScene(), diff, name, None, "consistency"))
    return nodes


def _residual_node(scene: Any, diff: Volume, name: str, output: Any, kind: str) -> Any:
    shown = diff.with_data(np.nan_to_num(diff.data, nan=0.0))
    node = add_volume_node(scene, shown, name, output)
    node.SetName(name)  # a reused overlay node now shows another difference
    node.SetAttribute(RESIDUAL_ATTRIBUTE, kind)
    apply_diverging_display(node, diverging_limit(diff.data))
    return node


def diverging_color_node(scene: Any) -> Any:
    """A 256-entry blue-white-red colour table (created once per scene)."""
    existing = scene.GetFirstNodeByName(DIVERGING_COLOR_NAME)
    if existing is not None and existing.IsA("vtkMRMLColorTableNode"):
        return existing
    node = scene.AddNewNodeByClass("vtkMRMLColorTableNode", DIVERGING_COLOR_NAME)
    node.SetTypeToUser()
    node.SetNumberOfColors(256)
    node.SetNamesInitialised(True)
    for index, (r, g, b) in enumerate(diverging_rgb(256)):
        node.SetColor(index, f"{index}", r, g, b, 1.0)
    node.SetAttribute("Category", "isovox")
    return node


def diverging_rgb(count: int) -> np.ndarray:
    """Blue (negative) through white (zero) to red (positive), ``count`` entries."""
    t = np.linspace(-1.0, 1.0, count)
    blue = np.array([0.13, 0.35, 0.80])
    red = np.array([0.80, 0.15, 0.15])
    white = np.ones(3)
    weights = np.abs(t)[:, None]
    return np.where(t[:, None] < 0, white + weights * (blue - white), white + weights * (red - white))


def apply_diverging_display(node: Any, limit: float) -> None:
    """Diverging colours with a window of [-limit, +limit], so zero is white."""
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(diverging_color_node(node.GetScene()).GetID())
    display.SetAutoWindowLevel(False)
    display.SetWindowLevel(2.0 * limit, 0.0)


def install_compare_layout(layout_node: Any) -> int:
    """Register the three-views-over-a-plot layout and switch to it; returns its id."""
    if not layout_node.IsLayoutDescription(COMPARE_LAYOUT_ID):
        layout_node.AddLayoutDescription(COMPARE_LAYOUT_ID, COMPARE_LAYOUT_XML)
    layout_node.SetViewArrangement(COMPARE_LAYOUT_ID)
    return COMPARE_LAYOUT_ID


def composite_nodes(scene: Any) -> dict[str, Any]:
    """Slice composite nodes by view name (Red, Yellow, Green, ...)."""
    found = {}
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
        found[node.GetLayoutName()] = node
    return found


def assign_compare_views(scene: Any, fused: Any, result: Any, reference: Optional[Any] = None,
                         overlay: Optional[Any] = None, opacity: float = 0.5) -> dict[str, tuple[Optional[str], Optional[str]]]:
    """Fused input | result | reference (or result again) in the three views, linked; returns the assignment.

    ``overlay`` (a residual volume) is shown over the result view with ``opacity``.
    """
    views = composite_nodes(scene)
    backgrounds = (fused, result, reference if reference is not None else result)
    assignment = {}
    for name, background in zip(COMPARE_VIEWS, backgrounds):
        composite = views.get(name)
        if composite is None:
            continue
        composite.SetBackgroundVolumeID(background.GetID() if background is not None else None)
        foreground = overlay.GetID() if overlay is not None and name == "Yellow" else None
        composite.SetForegroundVolumeID(foreground)
        composite.SetForegroundOpacity(opacity if foreground else 0.0)
        composite.SetLinkedControl(True)
        composite.SetHotLinkedControl(True)
        assignment[name] = (composite.GetBackgroundVolumeID(), composite.GetForegroundVolumeID())
    return assignment
