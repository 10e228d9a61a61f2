"""The engine must import without any UI toolkit."""

import subprocess
import sys

UI_MODULES = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "slicer", "vtk", "magicgui", "ctk", "qt")


def test_engine_imports_no_ui_module():
    code = (
        "import sys, isovox, isovox.api, isovox.io, isovox.simulate, isovox.fusion, isovox.metrics, "
        "isovox.info, isovox.registry, isovox.figures, isovox.cli.main, isovox.cli.commands, isovox.cli.demo\n"
        "isovox.registry.all_methods()\n"
        f"bad = [m for m in {UI_MODULES!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"engine imported UI modules: {out.stdout}"
