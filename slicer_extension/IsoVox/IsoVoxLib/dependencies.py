"""First-use installation of the engine and PyTorch into Slicer's Python.

As SlicerTotalSegmentator's ``setupPythonRequirements`` does: ask once, install
PyTorch through the SlicerPyTorch extension's PyTorchUtils when it is there (it picks
the right CUDA/CPU build), otherwise with pip, then the engine. Packages Slicer
already ships (numpy, SimpleITK) are never reinstalled: the engine goes in with
``--no-deps`` and its other requirements are installed one by one. The Slicer calls
(pip, PyTorchUtils, the confirmation dialog) are passed in, so this is testable.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

# The engine's requirements (pyproject.toml [project.dependencies]); a test keeps them in step.
ENGINE_REQUIREMENTS = ("numpy>=1.24", "scipy>=1.10", "nibabel>=5.0", "SimpleITK>=2.2", "tqdm>=4.60",
                       "matplotlib>=3.7", "torch>=2.1", "safetensors>=0.4", "pydicom>=2.4")
SLICER_SHIPS = ("numpy", "SimpleITK", "pydicom")  # never reinstall what Slicer's own modules are built against
TORCH = "torch"
ENGINE_PACKAGE = "isovox"
MODULE_NAMES = {"SimpleITK": "SimpleITK", "nibabel": "nibabel", "safetensors": "safetensors"}


def requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0].strip()


def is_installed(name: str) -> bool:
    module = MODULE_NAMES.get(name, name).replace("-", "_")
    return importlib.util.find_spec(module) is not None


def to_install(requirements: tuple[str, ...] = ENGINE_REQUIREMENTS,
               installed: Callable[[str], bool] = is_installed) -> list[str]:
    """Engine requirements still missing, leaving out torch (handled apart) and what Slicer ships."""
    missing = []
    for requirement in requirements:
        name = requirement_name(requirement)
        if name in SLICER_SHIPS or name == TORCH:
            continue
        if not installed(name):
            missing.append(requirement)
    return missing


@dataclass
class InstallPlan:
    torch: bool
    engine: bool
    packages: list[str]

    @property
    def needed(self) -> bool:
        return self.torch or self.engine or bool(self.packages)

    def describe(self) -> str:
        parts = (["PyTorch"] if self.torch else []) + (["the isovox engine"] if self.engine else []) + self.packages
        return ", ".join(parts)


def install_plan(installed: Callable[[str], bool] = is_installed) -> InstallPlan:
    return InstallPlan(torch=not installed(TORCH), engine=not installed(ENGINE_PACKAGE), packages=to_install(installed=installed))


def default_engine_source(module_dir: Path = Path(__file__).resolve().parents[1]) -> str:
    """The engine's source folder when the module runs from an isovox checkout, else its package name.

    In a checkout the module sits at ``<repo>/slicer_extension/IsoVox`` and the engine's
    ``pyproject.toml`` at ``<repo>``; installing from there keeps module and engine in step.
    """
    root = module_dir.parents[1] if len(module_dir.parents) > 1 else module_dir
    project = root / "pyproject.toml"
    if project.is_file() and re.search(r'^name\s*=\s*"isovox"', project.read_text(), re.M):
        return str(root)
    return ENGINE_PACKAGE


def install(plan: InstallPlan, pip_install: Callable[[str], None], confirm: Callable[[str], bool],
            torch_utils: Optional[object] = None, engine_source: str = ENGINE_PACKAGE) -> bool:
    """Install what ``plan`` lists after the user agrees; False if they decline.

    ``torch_utils``: the PyTorchUtils module when the SlicerPyTorch extension is installed.
    ``engine_source``: a PyPI name, a wheel or a source folder of the engine.
    """
    if not plan.needed:
        return True
    if not confirm(f"IsoVox needs {plan.describe()} in Slicer's Python. Download and install now? "
                   "This needs a network connection and may take several minutes."):
        return False
    if plan.torch:
        if torch_utils is not None:
            torch = torch_utils.PyTorchUtilsLogic().installTorch(askConfirmation=False)
            if torch is None:
                raise RuntimeError("PyTorch could not be installed; install it from the PyTorch Utils module")
        else:
            pip_install(TORCH)
    for requirement in plan.packages:
        pip_install(requirement)
    if plan.engine:
        pip_install(f"--no-deps {engine_source}")
    return True
