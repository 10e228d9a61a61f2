"""``isovox view [FILES]``: the desktop viewer, napari with the isovox dock.

The plugin adds this subcommand to the engine's command line through the
``isovox.commands`` entry point, so the engine never imports a front end. napari is
imported inside the command only; without it the command says how to get it in one line.
"""

from __future__ import annotations

import argparse
from typing import Any, Optional, Sequence

from isovox.errors import IsovoxError

INSTALL_HINT = "the viewer needs napari: run 'make setup', or pip install -e 'napari_plugin[qt]'"


def add_view(sub: argparse._SubParsersAction) -> None:
    """Register ``isovox view`` on the engine's subcommand parser."""
    p = sub.add_parser("view", help="open scans in napari with the isovox plugin (the desktop viewer)",
                       description="Open NIfTI/NRRD/MHA files or DICOM folders in napari with the isovox dock: "
                                   "super-resolve, compare, profile and check lesions.")
    p.add_argument("files", nargs="*", metavar="FILE", help="scans or results to open (any number)")
    p.add_argument("--sample", action="store_true", help="also open the bundled Colin27 sample")
    p.add_argument("--frame", type=int, help="volume index to use from 4-D inputs")
    p.set_defaults(func=cmd_view)


def open_viewer(files: Sequence[str], sample: bool = False, frame: Optional[int] = None, show: bool = True) -> Any:
    """Read the files with the engine, print their pre-flight report, open napari with the dock."""
    from isovox.frontend import preflight_text
    from isovox.io import read_volume

    volumes = [read_volume(path, frame) for path in files]  # bad input fails here, before any window
    try:
        import napari

        from ._core import volume_layer_data
        from ._io import layer_name
        from ._layers import add_layer_data, set_view
    except ImportError as exc:
        raise IsovoxError(f"{INSTALL_HINT} ({exc.name} is missing)") from None
    if volumes:
        print(preflight_text(volumes[:3])[0])
    viewer = napari.Viewer(title="isovox", show=show)
    for path, volume in zip(files, volumes):
        add_layer_data(viewer, volume_layer_data(volume, layer_name(path)))
    if sample:
        viewer.open_sample("napari-isovox", "colin27")
    viewer.window.add_plugin_dock_widget("napari-isovox", "isovox")
    if len(viewer.layers):
        set_view(viewer, "axial")
        viewer.reset_view()
    return viewer


def cmd_view(args: argparse.Namespace) -> int:
    viewer = open_viewer(args.files, args.sample, args.frame)
    import napari

    napari.run()
    del viewer
    return 0
