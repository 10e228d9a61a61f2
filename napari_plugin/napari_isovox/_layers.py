"""Small viewer helpers shared by the widgets: adding LayerData, listing images, notifying."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ._core import LayerData


def add_layer_data(viewer: Any, layer_data: LayerData) -> Any:
    """Add a (data, attributes, type) tuple as a layer; its affine comes with it."""
    from napari.layers import Layer

    layer = Layer.create(*layer_data)
    viewer.add_layer(layer)
    return layer


def image_layers(viewer: Any, ndim: int = 3) -> list[Any]:
    from napari.layers import Image

    return [layer for layer in viewer.layers if isinstance(layer, Image) and np.ndim(layer.data) == ndim]


def find_layer(viewer: Any, name: Optional[str]) -> Any:
    if not name:
        return None
    return next((layer for layer in viewer.layers if layer.name == name), None)


def notify_error(exc: BaseException) -> None:
    """Errors reach the user as one napari notification, never a traceback."""
    from napari.utils.notifications import show_error, show_info

    from isovox.frontend import ExitCode, exit_code, user_message

    if exit_code(exc) == ExitCode.CANCELLED:
        show_info("isovox: cancelled; nothing was added")
    else:
        show_error(f"isovox: {user_message(exc)}")


def current_point_and_normal(viewer: Any) -> tuple[np.ndarray, np.ndarray]:
    """The RAS point of the current slice and the slice normal (the world axis not displayed)."""
    point = np.asarray(viewer.dims.point, float)[-3:]
    normal = np.zeros(3)
    order = list(viewer.dims.order)[-3:]
    normal[order[0] - (viewer.dims.ndim - 3)] = 1.0
    return point, normal


class _Failure:
    """An exception carried out of a worker as a value (napari would show a raised one with a traceback)."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _captured(function: Any, *args: Any) -> Any:
    try:
        return function(*args)
    except Exception as exc:  # noqa: BLE001 - handed to on_error on the GUI thread
        return _Failure(exc)


def start_worker(function: Any, *args: Any, on_done: Any, on_error: Any = notify_error,
                 on_finished: Any = None) -> Any:
    """Run ``function(*args)`` in a napari thread worker; results and errors come back on the GUI thread."""
    from napari.qt.threading import create_worker

    def returned(value: Any) -> None:
        if isinstance(value, _Failure):
            on_error(value.exc)
        else:
            on_done(value)

    worker = create_worker(_captured, function, *args)
    worker.returned.connect(returned)
    if on_finished is not None:
        worker.finished.connect(on_finished)
    worker.start()
    return worker


# Radiological views: (world axis shown vertically, world axis shown horizontally, slice axis),
# world axes 0, 1, 2 = R, A, S. Vertical axes increase upwards and R/A increase to the left,
# so the patient's right is on the screen's left.
VIEWS = {"axial": (1, 0, 2), "coronal": (2, 0, 1), "sagittal": (2, 1, 0)}


def set_view(viewer: Any, plane: str) -> None:
    """Show the axial, coronal or sagittal plane the way radiologists read it."""
    vertical, horizontal, normal = VIEWS[plane]
    extra = viewer.dims.ndim - 3
    viewer.dims.ndisplay = 2
    viewer.dims.order = tuple(range(extra)) + (normal + extra, vertical + extra, horizontal + extra)
    camera_of(viewer).orientation2d = ("up", "left")


def camera_of(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def single_view(viewer: Any) -> None:
    """Leave the compare grid so a line or mark can be drawn on one image."""
    if viewer.canvas.grid.enabled:
        viewer.canvas.grid.enabled = False
