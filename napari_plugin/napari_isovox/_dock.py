"""The dock widget: four tabs (Run, Compare, Profiles, Lesions) over one viewer.

Each tab is its own small module; this one only wires them together.
"""

from __future__ import annotations

from typing import Any, Optional

from qtpy.QtWidgets import QHBoxLayout, QPushButton, QScrollArea, QTabWidget, QVBoxLayout, QWidget

from ._commands import add_to_layer_context_menu
from ._compare_widget import ComparePanel
from ._core import RunRequest
from ._layers import set_view
from ._lesion_widget import LesionPanel
from ._profile_widget import ProfilePanel
from ._run_widget import NO_REFERENCE, RunPanel


class IsovoxDock(QWidget):
    """isovox in napari: super-resolve, then compare, profile and check lesions."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.run_panel = RunPanel(napari_viewer, on_result=self._on_result)
        self.compare_panel = ComparePanel(napari_viewer, self._inputs, self._reference_name)
        self.profile_panel = ProfilePanel(napari_viewer)
        self.lesion_panel = LesionPanel(napari_viewer)
        self.tabs = QTabWidget()
        for panel, title in ((self.run_panel, "Run"), (self.compare_panel, "Compare"),
                             (self.profile_panel, "Profiles"), (self.lesion_panel, "Lesions")):
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setWidget(panel)
            self.tabs.addTab(scroll, title)
        views = QHBoxLayout()
        for plane in ("axial", "coronal", "sagittal"):
            button = QPushButton(plane.capitalize())
            button.setToolTip(f"Show the {plane} plane, radiological convention (patient's right on the left)")
            button.clicked.connect(lambda _=False, p=plane: set_view(self.viewer, p))
            views.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(views)
        layout.addWidget(self.tabs)
        self.setMinimumWidth(380)
        add_to_layer_context_menu()
        self._view_chosen = False
        napari_viewer.layers.events.inserted.connect(lambda *_: self._first_view())
        self._first_view()

    def _first_view(self) -> None:
        """Once 3-D layers are there, start in the radiological axial view unless the user chose another."""
        dims = self.viewer.dims
        if self._view_chosen or dims.ndim != 3 or len(self.viewer.layers) == 0:
            return
        self._view_chosen = True
        if tuple(dims.order) == (0, 1, 2) and dims.ndisplay == 2:  # napari's default: a sagittal slice
            set_view(self.viewer, "axial")
            self.viewer.reset_view()

    def _inputs(self) -> Optional[RunRequest]:
        return self.run_panel.request()

    def _reference_name(self) -> Optional[str]:
        name = self.run_panel.reference.currentText()
        return None if name in ("", NO_REFERENCE) else name

    def _on_result(self, layer: Any, request: RunRequest) -> None:
        self.compare_panel.refresh()
        self.compare_panel.result.setCurrentText(layer.name)
        self.profile_panel.refresh()
