"""The Compare tab: QA maps of a result and a side-by-side grid of fused input, result and reference.

The maps (result - CubeAvg, result - reference, per-scan consistency, distance to the
acquired slices) come from :func:`._core.qa_maps` in a worker. napari's grid mode shares
one camera and one slice position across the panels (linked cameras); a cross in every
cell follows the mouse's RAS position (linked cursors) and the tab lists each value there.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
from qtpy.QtWidgets import QCheckBox, QComboBox, QFormLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from . import _core
from ._layers import add_layer_data, find_layer, image_layers, notify_error, start_worker

CURSOR_PREFIX = "cursor: "


class ComparePanel(QWidget):
    def __init__(self, viewer: Any, inputs: Callable[[], Optional[_core.RunRequest]],
                 reference: Callable[[], Optional[str]]) -> None:
        super().__init__()
        self.viewer = viewer
        self.inputs = inputs  # the Run tab's current scans (RunRequest)
        self.reference = reference  # the Run tab's reference layer name, or None
        self.worker: Any = None
        self.compared: list[str] = []  # layer names shown side by side
        self._volumes: dict[str, Any] = {}
        self._overlays: list[Any] = []  # layers hidden while the grid is on
        self.cursors: list[Any] = []  # one cursor marker per grid cell

        self.result = QComboBox()
        self.maps_button = QPushButton("Compute maps and compare")
        self.grid = QCheckBox("Side-by-side grid (linked cameras)")
        self.readout = QLabel("move the mouse over the image")
        self.readout.setWordWrap(True)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Result", self.result)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.maps_button)
        layout.addWidget(self.grid)
        layout.addWidget(QLabel("Cursor (RAS mm and value in every compared layer):"))
        layout.addWidget(self.readout)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.maps_button.clicked.connect(self.compute)
        self.grid.toggled.connect(self.set_grid)
        viewer.canvas.grid.events.enabled.connect(self._grid_changed)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(lambda *_: self.refresh())
        viewer.mouse_move_callbacks.append(self._on_mouse_move)
        self.refresh()

    def refresh(self) -> None:
        current = self.result.currentText()
        results = [layer.name for layer in image_layers(self.viewer) if layer.metadata.get("isovox_role") == "result"]
        self.result.clear()
        self.result.addItems(results)
        if current in results:
            self.result.setCurrentText(current)
        elif results:
            self.result.setCurrentIndex(len(results) - 1)

    def compute(self) -> Any:
        """Compute the maps of the chosen result in a worker, add them and open the grid."""
        layer = find_layer(self.viewer, self.result.currentText())
        try:
            if layer is None:
                raise _core.InputError("run a super-resolution first (Run tab)")
            request = self.inputs()
            if request is None:
                raise _core.InputError("choose the scans in the Run tab")
            result = _core.layer_to_volume(layer)
            ref_layer = find_layer(self.viewer, self.reference())
            reference = _core.layer_to_volume(ref_layer) if ref_layer is not None else None
        except Exception as exc:  # noqa: BLE001 - shown as a notification
            notify_error(exc)
            return None
        self.status.setText("computing maps...")
        self.maps_button.setEnabled(False)
        self.worker = start_worker(_core.qa_maps, result, request.scans, reference,
                                   on_done=lambda maps: self._add_maps(maps, layer.name), on_finished=self._finished)
        return self.worker

    def _finished(self) -> None:
        self.worker = None
        self.maps_button.setEnabled(True)

    def _add_maps(self, maps: _core.QAMaps, result_name: str) -> None:
        for data in _core.qa_layer_data(maps, result_name):
            old = find_layer(self.viewer, data[1]["name"])
            if old is not None:
                self.viewer.layers.remove(old)
            layer = add_layer_data(self.viewer, data)
            layer.visible = False
        names = [_core.MAP_NAMES["fused"], result_name]
        reference = find_layer(self.viewer, self.reference())
        if reference is not None:
            names.append(reference.name)
        names.append(_core.MAP_NAMES["added"])
        if maps.error is not None:
            names.append(_core.MAP_NAMES["error"])
        self.show_side_by_side(names)
        self.status.setText(f"maps of {result_name} added; hidden ones are in the layer list (consistency per scan, "
                            "distance to acquired slices)")

    def show_side_by_side(self, names: list[str]) -> None:
        """Show only ``names`` (in that order, left to right) in napari's grid, each with a linked cursor.

        napari fills grid cells with ``stride`` consecutive layers, so each compared image
        is followed by its own cursor marker (stride 2); hidden layers go after them.
        """
        self.compared = [n for n in names if find_layer(self.viewer, n) is not None]
        self._volumes.clear()
        self._remove_cursors()
        for layer in image_layers(self.viewer):
            layer.visible = layer.name in self.compared
        point = np.asarray(self.viewer.dims.point, float)[-3:]
        for position, name in enumerate(self.compared):
            layer = find_layer(self.viewer, name)
            self.viewer.layers.move(self.viewer.layers.index(layer), 2 * position)
            _show_name_in_cell(layer)
            cursor = self.viewer.add_points(
                [point], ndim=3, name=f"{CURSOR_PREFIX}{name}", symbol="cross", size=6, face_color="yellow",
                border_width=0, opacity=0.8, units=("mm", "mm", "mm"), axis_labels=_core.RAS_LABELS,
                metadata={"isovox_role": "cursor"},
            )
            self.viewer.layers.move(self.viewer.layers.index(cursor), 2 * position + 1)
            self.cursors.append(cursor)
        self.viewer.layers.selection.active = find_layer(self.viewer, self.compared[1] if len(self.compared) > 1
                                                         else self.compared[0]) if self.compared else None
        self.viewer.canvas.grid.stride = 2
        self.set_grid(True)
        self.viewer.reset_view()

    def set_grid(self, enabled: bool) -> None:
        """Turn napari's grid on or off (the checkbox); :meth:`_grid_changed` follows."""
        if self.viewer.canvas.grid.enabled == bool(enabled):
            self._grid_changed()
        else:
            self.viewer.canvas.grid.enabled = bool(enabled)

    def _grid_changed(self, *_: Any) -> None:
        """Grid on: overlays (profile line, lesion marks) hide, cursors show; off: the reverse.

        Also runs when the grid is switched elsewhere (napari's grid button, drawing a line).
        """
        enabled = bool(self.viewer.canvas.grid.enabled)
        try:
            self.grid.blockSignals(True)
            self.grid.setChecked(enabled)
            self.grid.blockSignals(False)
        except RuntimeError:  # the dock was closed
            return
        if enabled:  # a profile line or lesion marks would each take a cell of their own
            keep = image_layers(self.viewer) + self.cursors
            self._overlays += [layer for layer in self.viewer.layers if layer not in keep and layer.visible]
            for layer in self._overlays:
                layer.visible = False
        else:
            for layer in self._overlays:
                if layer in self.viewer.layers:
                    layer.visible = True
            self._overlays = []
        for cursor in self.cursors:  # the cursor markers belong to the grid
            if cursor in self.viewer.layers:
                cursor.visible = enabled

    def _remove_cursors(self) -> None:
        for cursor in self.cursors:
            if cursor in self.viewer.layers:
                self.viewer.layers.remove(cursor)
        self.cursors = []

    def move_cursors(self, point: np.ndarray) -> None:
        """Put every cell's cursor at the same RAS point (the mouse's)."""
        for cursor in self.cursors:
            cursor.data = np.asarray(point, float)[None, -3:]

    def _on_mouse_move(self, viewer: Any, event: Any) -> None:
        try:
            if not self.compared or not self.viewer.canvas.grid.enabled:
                return
            point = np.asarray(event.position, float)[-3:]
            self.move_cursors(point)
            if self.isVisible():
                self.readout.setText(self.cursor_text(point))
        except RuntimeError:  # the dock was closed: stop listening
            if self._on_mouse_move in viewer.mouse_move_callbacks:
                viewer.mouse_move_callbacks.remove(self._on_mouse_move)

    def cursor_text(self, point: np.ndarray) -> str:
        """Every compared layer's value at one RAS point."""
        lines = ["R {:.1f}  A {:.1f}  S {:.1f} mm".format(*point)]
        for name in self.compared:
            layer = find_layer(self.viewer, name)
            if layer is None:
                continue
            if name not in self._volumes:
                self._volumes[name] = _core.layer_to_volume(layer)
            value = _core.sample_at(self._volumes[name], point[None])[0]
            lines.append(f"{name}: {'-' if not np.isfinite(value) else f'{value:.4g}'}")
        return "\n".join(lines)


def _show_name_in_cell(layer: Any) -> None:
    """Label each grid cell with its layer's name (napari >= 0.6 has a per-layer name overlay)."""
    overlay = getattr(layer, "_overlays", {}).get("layer_name")
    if overlay is not None:
        overlay.font_size = 10
        overlay.visible = True
