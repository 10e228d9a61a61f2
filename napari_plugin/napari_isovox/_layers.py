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

    from isovox.errors import CancelledError, IsovoxError

    if isinstance(exc, CancelledError):
        show_info("isovox: cancelled; nothing was added")
    elif isinstance(exc, IsovoxError):
        show_error(f"isovox: {exc}")
    elif isinstance(exc, MemoryError):
        show_error("isovox: ran out of memory; choose a coarser spacing")
    else:
        show_error(f"isovox: internal error: {type(exc).__name__}: {exc}")


def current_point_and_normal(viewer: Any) -> tuple[np.ndarray, np.ndarray]:
    """The RAS point of the current slice and the slice normal (the world axis not displayed)."""
    point = np.asarray(viewer.dims.point, float)[-3:]
    normal = np.zeros(3)
    order = list(viewer.dims.order)[-3:]
    normal[order[0] - (viewer.dims.ndim - 3)] = 1.0
    return point, normal
