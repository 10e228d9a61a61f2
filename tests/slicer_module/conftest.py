"""Fixtures for the Slicer module tests: a real MRML scene and volumes loaded as Slicer loads them.

A real vtkMRMLScene comes from PyPI's slicer-core (the slicer-tests extra, which `make setup`
installs). Volumes are written by the engine and loaded with Slicer's own
vtkMRMLVolumeArchetypeStorageNode, as Add Data does. ``IsoVoxLib`` is importable through
pytest's ``pythonpath`` option (pyproject.toml).

Without slicer-core, the test modules that drive MRML nodes are skipped, each with the reason,
before they are imported; the ones that need only the module's sources still run. (A module-level
``pytest.importorskip`` here would skip the whole folder when pytest collects it from the repository
root, but stop pytest with an error when the folder or one of its files is named on the command line.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from isovox.grid import rotation_matrix as rotation
from isovox.io import write_volume
from isovox.phantoms import phantom
from isovox.simulate import Acquisition, simulate_scan
from isovox.volume import Volume

# Test modules that import nothing from slicer-core (nor vtk): they run without it.
WITHOUT_SLICER_CORE = {"test_dependencies.py", "test_module_files.py"}


def slicer_core():
    """PyPI's slicer-core module; skips (with how to install it) when it is missing."""
    slicer = pytest.importorskip("slicer", reason="needs slicer-core: pip install -e '.[slicer-tests]'")
    if not hasattr(slicer, "vtkMRMLScene"):
        pytest.skip("the installed 'slicer' package is not slicer-core (pip install -e '.[slicer-tests]')")
    return slicer


class _NeedsSlicerCore(pytest.Module):
    """A test module that imports slicer-core (directly or through IsoVoxLib): skipped before import without it."""

    def collect(self):
        slicer_core()
        return super().collect()


def pytest_pycollect_makemodule(module_path: Path, parent):
    if module_path.name not in WITHOUT_SLICER_CORE:
        return _NeedsSlicerCore.from_parent(parent, path=module_path)
    return None


def _oblique_affine(angles=(17.0, -23.0, 31.0), spacing=(1.0, 1.0, 1.0), origin=(-20.0, 35.0, 12.0)) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = rotation(*angles) * np.asarray(spacing, float)
    affine[:3, 3] = origin
    return affine


def _smooth_phantom(shape=(24, 28, 20), seed: int = 3) -> np.ndarray:
    """A small bright ellipsoid with texture (no blobs): enough structure for profiles and lesions."""
    return phantom(shape, seed, texture_sigma=1.5, amplitude=300.0, blobs=0)


def _load_with_storage_node(scene, path: Path, name: str):
    """Load a file into a new scalar volume node exactly as Slicer's volume reader does."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node), f"Slicer could not read {path}"
    node.SetAndObserveStorageNodeID(storage.GetID())
    return node


@pytest.fixture(scope="session")
def fixed_oblique_affine() -> Callable[..., np.ndarray]:
    """Factory: ``fixed_oblique_affine(angles=(17, -23, 31), spacing=(1, 1, 1), origin=(-20, 35, 12))``,
    a deterministic oblique voxel-to-RAS affine (rotation angles in degrees, spacing and origin in mm)."""
    return _oblique_affine


@pytest.fixture(scope="session")
def load_with_storage_node() -> Callable:
    """``load_with_storage_node(scene, path, name)``: a new scalar volume node read exactly as Slicer's
    volume reader does (a vtkMRMLVolumeArchetypeStorageNode)."""
    return _load_with_storage_node


@pytest.fixture
def scene():
    return slicer_core().vtkMRMLScene()


@pytest.fixture
def hr() -> Volume:
    """An oblique, slightly anisotropic high-resolution phantom."""
    return Volume(_smooth_phantom(), _oblique_affine(spacing=(1.0, 1.1, 0.9)), {"source": "hr"})


@pytest.fixture
def scan_files(tmp_path, hr):
    """Two 3x thick-slice scans of ``hr`` (thick along different axes) in NRRD and NIfTI."""
    scans = [simulate_scan(hr, Acquisition(axis=2, scale=3)), simulate_scan(hr, Acquisition(axis=0, scale=3))]
    paths = [tmp_path / "ax.nrrd", tmp_path / "sag.nii.gz"]
    for scan, path in zip(scans, paths):
        write_volume(scan, path)
    return paths


@pytest.fixture
def scan_nodes(scene, scan_files):
    return [_load_with_storage_node(scene, p, n) for p, n in zip(scan_files, ("T2ax", "T2sag"))]


@pytest.fixture
def hr_node(scene, tmp_path, hr):
    path = tmp_path / "hr.nrrd"
    write_volume(hr, path)
    return _load_with_storage_node(scene, path, "T1ref")
