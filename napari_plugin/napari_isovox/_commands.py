"""The one-click path: "Super-resolve" in the layer list's context menu."""

from __future__ import annotations

from typing import Any


def super_resolve_selected(viewer: Any) -> None:
    """Run the registry's default method on the selected image layer(s) in a worker; add the result."""
    from napari.qt.threading import create_worker
    from napari.utils.notifications import show_info

    from ._core import RunRequest, layer_to_volume, run_super_resolution, volume_layer_data
    from ._layers import add_layer_data, image_layers, notify_error

    chosen = [layer for layer in image_layers(viewer) if layer in viewer.layers.selection][:3]
    if not chosen:
        show_info("isovox: select 1-3 3-D image layers to super-resolve")
        return None
    try:
        request = RunRequest([layer_to_volume(layer) for layer in chosen])
    except Exception as exc:  # noqa: BLE001 - shown as a notification
        notify_error(exc)
        return None

    def done(output: Any) -> None:
        data = volume_layer_data(output.volume, output.name, metadata={"isovox": dict(output.volume.meta),
                                                                        "isovox_role": "result"})
        add_layer_data(viewer, data)
        show_info(f"isovox: added {output.name}")

    worker = create_worker(run_super_resolution, request)
    worker.returned.connect(done)
    worker.errored.connect(notify_error)
    show_info(f"isovox: super-resolving {', '.join(layer.name for layer in chosen)}...")
    worker.start()
    super_resolve_selected.last_worker = worker  # type: ignore[attr-defined]  (tests wait on it)
    return None
