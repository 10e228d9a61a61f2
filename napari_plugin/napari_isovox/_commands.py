"""The one-click path: "Super-resolve" in the layer list's context menu."""

from __future__ import annotations

from typing import Any

from napari.viewer import Viewer  # the type napari injects into the command


def super_resolve_selected(viewer: Viewer) -> None:
    """Run the registry's default method on the selected image layer(s) in a worker; add the result."""
    from napari.utils.notifications import show_info

    from ._core import RunRequest, layer_to_volume, run_super_resolution, volume_layer_data
    from ._layers import add_layer_data, image_layers, notify_error, start_worker

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
        data = volume_layer_data(output.volume, output.name)
        data[1]["metadata"]["isovox_role"] = "result"
        add_layer_data(viewer, data)
        show_info(f"isovox: added {output.name}")

    show_info(f"isovox: super-resolving {', '.join(layer.name for layer in chosen)}...")
    worker = start_worker(run_super_resolution, request, on_done=done)
    super_resolve_selected.last_worker = worker  # type: ignore[attr-defined]  (tests wait on it)
    return None


COMMAND_ID = "napari-isovox.super_resolve_selected"
CONTEXT_MENU = "napari/layers/context"


def add_to_layer_context_menu() -> bool:
    """Put "Super-resolve" in the layer list's right-click menu (once per session).

    napari >= 0.5 ignores manifest items for that menu, so the dock adds the item
    through napari's application model; returns False if this napari has no such hook.
    """
    try:
        from app_model.expressions import parse_expression
        from app_model.types import MenuItem
        from napari._app_model import get_app_model
    except ImportError:
        return False
    app = get_app_model()
    if COMMAND_ID not in app.commands:
        return False
    for item in app.menus.get_menu(CONTEXT_MENU):
        if getattr(getattr(item, "command", None), "id", None) == COMMAND_ID:
            return True
    from app_model.types import CommandRule

    rule = CommandRule(id=COMMAND_ID, title="Super-resolve (isovox)", tooltip="Super-resolve the selected "
                       "image layer(s) with isovox's default method")
    item = MenuItem(command=rule, when=parse_expression("num_selected_image_layers >= 1"), group="9_isovox")
    app.menus.append_menu_items([(CONTEXT_MENU, item)])
    return True
