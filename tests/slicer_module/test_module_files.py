"""The module's files agree with its CMake lists, its .ui and the library's import rules."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "slicer_extension" / "IsoVox"
CMAKE = (MODULE / "CMakeLists.txt").read_text()


def cmake_list(name: str) -> set[str]:
    block = re.search(rf"set\({name}\s+(.*?)\)", CMAKE, re.S)
    assert block, f"{name} is missing from the module CMakeLists.txt"
    return {entry.replace("${MODULE_NAME}", "IsoVox") for entry in block.group(1).split()}


def test_every_python_file_is_listed_and_every_listed_file_exists():
    on_disk = {p.relative_to(MODULE).as_posix() for p in MODULE.rglob("*.py") if "__pycache__" not in p.parts}
    assert cmake_list("MODULE_PYTHON_SCRIPTS") == on_disk


def test_every_resource_is_listed_and_every_listed_resource_exists():
    on_disk = {p.relative_to(MODULE).as_posix() for p in (MODULE / "Resources").rglob("*") if p.is_file()}
    assert cmake_list("MODULE_PYTHON_RESOURCES") == on_disk


def test_module_cmake_builds_a_scripted_module_with_its_test():
    assert re.search(r"slicerMacroBuildScriptedModule\(\s*NAME \$\{MODULE_NAME\}", CMAKE)
    assert "SCRIPTS ${MODULE_PYTHON_SCRIPTS}" in CMAKE and "RESOURCES ${MODULE_PYTHON_RESOURCES}" in CMAKE
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in CMAKE


def test_root_cmake_is_an_extension_that_adds_the_module():
    text = (ROOT / "CMakeLists.txt").read_text()
    assert re.search(r"^project\(IsoVox\)", text, re.M)
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert re.search(rf'set\(EXTENSION_{key} "[^"]+"\)', text), key
    order = ["find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(slicer_extension/IsoVox)",
             "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"]
    positions = [text.index(line) for line in order]
    assert positions == sorted(positions)
    assert "slicer_extension/IsoVox/Resources/Icons/IsoVox.png" in text
    assert (ROOT / "docs" / "demo_figure.png").exists()


def test_icon_is_a_128_pixel_png():
    data = (MODULE / "Resources" / "Icons" / "IsoVox.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == 128 and int.from_bytes(data[20:24], "big") == 128


def ui_names() -> set[str]:
    tree = ET.parse(MODULE / "Resources" / "UI" / "IsoVox.ui")
    return {w.get("name") for w in tree.iter("widget")}


def test_every_widget_the_module_uses_exists_in_the_ui():
    used = set(re.findall(r"\bui\.(\w+)", (MODULE / "IsoVox.py").read_text()))
    assert used, "the module uses no ui widgets?"
    assert used - ui_names() == set()


def test_every_node_selector_gets_the_scene():
    tree = ET.parse(MODULE / "Resources" / "UI" / "IsoVox.ui")
    needs_scene = {w.get("name") for w in tree.iter("widget") if w.get("class") in ("qMRMLNodeComboBox", "qMRMLTableView")}
    receivers = {c.findtext("receiver") for c in tree.iter("connection") if c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"}
    assert needs_scene and needs_scene <= receivers


@pytest.mark.parametrize("path", sorted((MODULE / "IsoVoxLib").glob("*.py")), ids=lambda p: p.name)
def test_library_has_no_top_level_gui_imports(path):
    tree = ast.parse(path.read_text())
    for node in tree.body:  # module level only; imports inside functions are allowed
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        for name in names:
            assert name.split(".")[0] not in ("qt", "ctk") and not name.startswith("slicer.ScriptedLoadableModule"), name


def test_module_file_compiles_and_defines_widget_logic_and_test():
    tree = ast.parse((MODULE / "IsoVox.py").read_text())
    classes = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    assert {"IsoVox", "IsoVoxWidget", "IsoVoxLogic", "IsoVoxTest"} <= classes
