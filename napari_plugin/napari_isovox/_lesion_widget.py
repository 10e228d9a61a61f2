"""The Lesions tab: mark lesions in a points layer, jump to each, crop all layers, export in mm."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pyqtgraph as pg
from qtpy.QtWidgets import (
    QFileDialog, QHBoxLayout, QLabel, QListWidget, QPushButton, QVBoxLayout, QWidget,
)

from isovox import frontend

from . import _core
from ._layers import camera_of, find_layer, image_layers, notify_error, single_view

POINTS_LAYER = "isovox lesions"


class LesionPanel(QWidget):
    def __init__(self, viewer: Any) -> None:
        super().__init__()
        self.viewer = viewer
        self.mark_button = QPushButton("Mark lesions")
        self.crop_button = QPushButton("Crop all layers")
        self.export_button = QPushButton("Export marks...")
        self.list = QListWidget()
        self.list.setMaximumHeight(110)
        self.crops = pg.GraphicsLayoutWidget()
        self.crops.setMinimumHeight(240)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        for button in (self.mark_button, self.crop_button, self.export_button):
            row.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(QLabel("Marked lesions (click to jump)"))
        layout.addWidget(self.list)
        layout.addWidget(QLabel("Crops: axial | coronal | sagittal, one row per visible layer"))
        layout.addWidget(self.crops)
        layout.addWidget(self.status)
        self.mark_button.clicked.connect(self.start_marking)
        self.crop_button.clicked.connect(lambda: self.show_crops())
        self.export_button.clicked.connect(lambda: self.export())
        self.list.currentRowChanged.connect(self.jump_to)

    def points_layer(self) -> Any:
        layer = find_layer(self.viewer, POINTS_LAYER)
        if layer is None:
            layer = self.viewer.add_points(ndim=3, name=POINTS_LAYER, size=3, face_color="transparent",
                                           border_color="lime", border_width=0.15, units=("mm", "mm", "mm"),
                                           axis_labels=_core.RAS_LABELS)
            layer.events.data.connect(lambda *_: self.refresh())
        return layer

    def start_marking(self) -> None:
        single_view(self.viewer)
        layer = self.points_layer()
        self.viewer.layers.selection.active = layer
        layer.mode = "add"
        self.status.setText("click each lesion on the image")

    def positions(self) -> np.ndarray:
        """Marked lesions in RAS mm."""
        layer = find_layer(self.viewer, POINTS_LAYER)
        if layer is None or not len(layer.data):
            return np.zeros((0, 3))
        return np.asarray([layer.data_to_world(p) for p in layer.data], float)[:, -3:]

    def refresh(self) -> None:
        self.list.blockSignals(True)
        self.list.clear()
        for idx, (r, a, s) in enumerate(self.positions()):
            self.list.addItem(f"lesion {idx + 1}:  R {r:.1f}  A {a:.1f}  S {s:.1f} mm")
        self.list.blockSignals(False)

    def jump_to(self, row: int) -> None:
        """Move the slices and the camera to lesion ``row``."""
        points = self.positions()
        if not 0 <= row < len(points):
            return
        point = points[row]
        offset = self.viewer.dims.ndim - 3
        for axis in range(3):
            self.viewer.dims.set_point(offset + axis, float(point[axis]))
        displayed = list(self.viewer.dims.displayed)
        camera_of(self.viewer).center = tuple(float(point[d - offset]) for d in displayed)
        self.status.setText(self.list.item(row).text())

    def _visible_volumes(self) -> dict[str, Any]:
        return {layer.name: _core.layer_to_volume(layer) for layer in image_layers(self.viewer) if layer.visible}

    def show_crops(self, row: Optional[int] = None, half_size_mm: float = 12.0) -> dict[str, np.ndarray]:
        """Axial/coronal/sagittal crops of every visible layer around the chosen lesion, side by side."""
        points = self.positions()
        row = self.list.currentRow() if row is None else row
        row = row if 0 <= row < len(points) else len(points) - 1
        if row < 0:
            self.status.setText("mark a lesion first")
            return {}
        try:
            panels = _core.lesion_crops(self._visible_volumes(), points[row], half_size_mm)
        except Exception as exc:  # noqa: BLE001 - shown as a notification
            notify_error(exc)
            return {}
        self.crops.clear()
        for idx, (name, image) in enumerate(panels.items()):
            view = self.crops.addViewBox(row=idx, col=0, lockAspect=True, invertY=True)
            lo, hi = frontend.display_limits(image, (1, 99))
            item = pg.ImageItem(np.nan_to_num(image, nan=lo).T, levels=(lo, hi))
            view.addItem(item)
            label = pg.TextItem(name, color="y", anchor=(0, 0))
            view.addItem(label)
            label.setPos(0, 0)
        self.status.setText(f"crops around lesion {row + 1} ({2 * half_size_mm:g} mm wide)")
        return panels

    def records(self) -> list[dict[str, Any]]:
        points = self.positions()
        values = {}
        for name, volume in self._visible_volumes().items():
            values[name] = _core.sample_at(volume, points) if len(points) else np.zeros(0)
        return _core.lesion_records(points, values=values)

    def export(self, path: Optional[str] = None) -> Optional[str]:
        """Write the marks with their RAS positions (mm) and each visible layer's value there."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export lesion marks", "lesions.csv",
                                                  "CSV (*.csv);;JSON (*.json)")
            if not path:
                return None
        try:
            written = _core.export_lesions(self.records(), path)
        except Exception as exc:  # noqa: BLE001 - shown as a notification
            notify_error(exc)
            return None
        self.status.setText(f"wrote {written}")
        return str(written)
