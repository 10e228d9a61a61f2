"""The engine's shape: no UI toolkit, no import cycle, no borrowed private names, front ends off the CLI."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "core" / "isovox"
UI_MODULES = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "slicer", "vtk", "magicgui", "ctk", "qt")
FRONT_ENDS = (ROOT / "napari_plugin" / "napari_isovox", ROOT / "slicer_extension" / "IsoVox")
PACKAGES = (ENGINE, ROOT / "training" / "isovox_train") + FRONT_ENDS


def test_engine_imports_no_ui_module():
    code = (
        "import sys, pkgutil, importlib, isovox\n"
        "for m in pkgutil.walk_packages(isovox.__path__, 'isovox.'):\n"
        "    importlib.import_module(m.name)\n"
        "import isovox.methods, isovox.cli.main\n"
        "isovox.methods.all_methods(); isovox.cli.main.build_parser()\n"
        f"bad = [m for m in {UI_MODULES!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"engine imported UI modules: {out.stdout}"


def _modules(root: Path, package: str) -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join([package] + parts)] = (path, is_package)
    return found


def _imports(module: str, is_package: bool, tree: ast.AST) -> list[tuple[str, list[str]]]:
    """(imported module, names imported from it) for every import statement, lazy ones included."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, [alias.name for alias in node.names]))
    return out


def test_no_import_cycle_in_the_engine():
    modules = _modules(ENGINE, "isovox")
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        deps = set()
        for target, names in _imports(name, is_package, ast.parse(path.read_text(encoding="utf-8"))):
            deps.update(m for m in [target] + [f"{target}.{n}" for n in names] if m in modules and m != name)
        graph[name] = deps
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("root", PACKAGES, ids=lambda p: p.name)
def test_no_module_imports_a_private_name_of_another(root):
    """``from x import _name`` reaches into another module's internals (a package's own private
    submodules, such as ``napari_isovox._core``, are its internal API and may be imported)."""
    package = root.name
    modules = _modules(root, package)
    offenders = []
    for name, (path, is_package) in modules.items():
        for target, names in _imports(name, is_package, ast.parse(path.read_text(encoding="utf-8"))):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")
                       and f"{target}.{n}" not in modules]
            if private:
                offenders.append(f"{path.relative_to(ROOT)}: from {target} import {', '.join(private)}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("root", FRONT_ENDS, ids=lambda p: p.name)
def test_front_ends_use_the_engine_api_not_its_command_line(root):
    """Front ends may run ``isovox`` as a process, but import nothing from ``isovox.cli``."""
    for path in root.rglob("*.py"):
        for target, names in _imports("x.y", False, ast.parse(path.read_text(encoding="utf-8"))):
            assert not (target == "isovox.cli" or target.startswith("isovox.cli.")), path.relative_to(ROOT)
            assert not (target == "isovox" and "cli" in names), path.relative_to(ROOT)


def test_the_engine_imports_no_front_end_and_no_trainer():
    for path in ENGINE.rglob("*.py"):
        imported = {target.split(".")[0] for target, _ in _imports("isovox.x", False, ast.parse(path.read_text(encoding="utf-8")))}
        assert not imported & {"napari_isovox", "IsoVoxLib", "isovox_train", "napari", "slicer"}, path
