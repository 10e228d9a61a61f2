"""The Profiles tab: intensity along a drawn line, in mm, for every chosen layer (pyqtgraph).

The line lives in a shapes layer; the plot follows it whenever it is drawn or moved.
Values come from :func:`._core.profile_along` on the layers' engine volumes (RAS mm).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from . import _core
from ._layers import find_layer, image_layers, notify_error, single_view

LINE_LAYER = "isovox profile line"
COLOURS = ["#e6e6e6", "#ff7f0e", "#1f9bff", "#2ca02c", "#d62728", "#9467bd", "#e377c2", "#bcbd22"]


class ProfilePanel(QWidget):
    def __init__(self, viewer: Any) -> None:
        super().__init__()
        self.viewer = viewer
        self._volumes: dict[str, tuple[int, Any]] = {}
        self.curves: dict[str, np.ndarray] = {}  # last plotted values per layer (tests read them)
        self.distances = np.zeros(0)
        self.draw_button = QPushButton("Draw a profile line")
        self.layers = QListWidget()
        self.layers.setMaximumHeight(90)
        self.plot = pg.PlotWidget()
        self.plot.setLabel("bottom", "distance along the line", units="mm")
        self.plot.setLabel("left", "intensity")
        self.plot.addLegend(offset=(5, 5))
        self.plot.setMinimumHeight(220)
        self.status = QLabel("")
        layout = QVBoxLayout(self)
        layout.addWidget(self.draw_button)
        layout.addWidget(QLabel("Layers to plot"))
        layout.addWidget(self.layers)
        layout.addWidget(self.plot)
        layout.addWidget(self.status)
        self.draw_button.clicked.connect(self.start_drawing)
        self.layers.itemChanged.connect(lambda *_: self.update_profile())
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(lambda *_: self.refresh())
        self.refresh()

    def refresh(self) -> None:
        """List the 3-D image layers; visible ones are plotted by default."""
        listed = {self.layers.item(i).text() for i in range(self.layers.count())}
        chosen = set(self.chosen_names())
        self.layers.blockSignals(True)
        self.layers.clear()
        for layer in image_layers(self.viewer):
            item = QListWidgetItem(layer.name)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            on = layer.name in chosen if layer.name in listed else layer.visible  # new layers: if shown
            item.setCheckState(Qt.Checked if on else Qt.Unchecked)
            self.layers.addItem(item)
        self.layers.blockSignals(False)
        line = find_layer(self.viewer, LINE_LAYER)
        if line is not None and not getattr(line, "_isovox_connected", False):
            line.events.data.connect(lambda *_: self.update_profile())
            line.events.set_data.connect(lambda *_: self.update_profile())
            line._isovox_connected = True

    def chosen_names(self) -> list[str]:
        return [self.layers.item(i).text() for i in range(self.layers.count())
                if self.layers.item(i).checkState() == Qt.Checked]

    def set_chosen(self, names: list[str]) -> None:
        for i in range(self.layers.count()):
            item = self.layers.item(i)
            item.setCheckState(Qt.Checked if item.text() in names else Qt.Unchecked)

    def line_layer(self) -> Any:
        """The shapes layer holding the profile line (created in world = RAS mm coordinates)."""
        layer = find_layer(self.viewer, LINE_LAYER)
        if layer is None:
            layer = self.viewer.add_shapes(ndim=3, name=LINE_LAYER, edge_color="yellow", edge_width=0.8,
                                           units=("mm", "mm", "mm"), axis_labels=_core.RAS_LABELS)
            self.refresh()
        return layer

    def start_drawing(self) -> None:
        single_view(self.viewer)
        layer = self.line_layer()
        self.viewer.layers.selection.active = layer
        layer.mode = "add_line"
        self.status.setText("click the two ends of the line on the image")

    def set_line(self, start_ras: np.ndarray, end_ras: np.ndarray) -> None:
        """Place the line programmatically (as drawing it would)."""
        layer = self.line_layer()
        layer.data = [np.array([start_ras, end_ras], float)]
        layer.shape_type = ["line"]
        self.update_profile()

    def _volume(self, layer: Any) -> Any:
        key = id(layer.data)
        cached = self._volumes.get(layer.name)
        if cached is None or cached[0] != key:
            cached = (key, _core.layer_to_volume(layer))
            self._volumes[layer.name] = cached
        return cached[1]

    def update_profile(self) -> Optional[np.ndarray]:
        """Re-plot the profile of the last line for every chosen layer."""
        line = find_layer(self.viewer, LINE_LAYER)
        if line is None or not len(line.data):
            return None
        vertices = np.asarray([line.data_to_world(v) for v in line.data[-1]])
        try:
            start, end = _core.line_endpoints_ras(vertices)
            layers = [find_layer(self.viewer, n) for n in self.chosen_names()]
            layers = [layer for layer in layers if layer is not None]
            distances, values = _core.profile_along([self._volume(layer) for layer in layers], start, end)
        except Exception as exc:  # noqa: BLE001 - shown as a notification
            notify_error(exc)
            return None
        self.plot.clear()
        self.distances = distances
        self.curves = {}
        for idx, (layer, curve) in enumerate(zip(layers, values)):
            self.curves[layer.name] = curve
            pen = pg.mkPen(COLOURS[idx % len(COLOURS)], width=2)
            self.plot.plot(distances, np.nan_to_num(curve, nan=np.nan), pen=pen, name=layer.name,
                           connect="finite")
        self.status.setText(f"line {distances[-1]:.1f} mm long, from R {start[0]:.1f} A {start[1]:.1f} "
                            f"S {start[2]:.1f} to R {end[0]:.1f} A {end[1]:.1f} S {end[2]:.1f}")
        return distances
