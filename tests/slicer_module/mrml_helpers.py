"""Shared helpers and fixtures for the Slicer module tests (import them explicitly).

A real vtkMRMLScene comes from PyPI's slicer-core. Volumes are written by the engine
and loaded with Slicer's own vtkMRMLVolumeArchetypeStorageNode, as Add Data does.
This is not a conftest.py: the suite's root conftest is imported as ``conftest`` by
other tests, and a second one would replace it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

MODULE_DIR = Path(__file__).resolve().parents[2] / "slicer_extension" / "IsoVox"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

# PyPI's slicer-core (the slicer-tests extra, which `make setup` installs). Without it these tests are
# skipped with this reason rather than breaking the rest of the suite's collection.
slicer = pytest.importorskip("slicer", reason="needs slicer-core: pip install -e '.[slicer-tests]'")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not slicer-core (pip install -e '.[slicer-tests]')",
                allow_module_level=True)

from isovox.io import write_volume  # noqa: E402
from isovox.simulate import Acquisition, simulate_scan  # noqa: E402
from isovox.volume import Volume  # noqa: E402
from isovox.grid import rotation_matrix as rotation  # noqa: E402
from isovox.phantoms import phantom  # noqa: E402


def oblique_affine(angles=(17.0, -23.0, 31.0), spacing=(1.0, 1.0, 1.0), origin=(-20.0, 35.0, 12.0)) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = rotation(*angles) * np.asarray(spacing, float)
    affine[:3, 3] = origin
    return affine


def smooth_phantom(shape=(24, 28, 20), seed: int = 3) -> np.ndarray:
    """A small bright ellipsoid with texture (no blobs): enough structure for profiles and lesions."""
    return phantom(shape, seed, texture_sigma=1.5, amplitude=300.0, blobs=0)


def load_with_storage_node(scene, path: Path, name: str):
    """Load a file into a new scalar volume node exactly as Slicer's volume reader does."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node), f"Slicer could not read {path}"
    node.SetAndObserveStorageNodeID(storage.GetID())
    return node


@pytest.fixture
def scene():
    return slicer.vtkMRMLScene()


@pytest.fixture
def hr() -> Volume:
    """An oblique, slightly anisotropic high-resolution phantom."""
    return Volume(smooth_phantom(), oblique_affine(spacing=(1.0, 1.1, 0.9)), {"source": "hr"})


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
    return [load_with_storage_node(scene, p, n) for p, n in zip(scan_files, ("T2ax", "T2sag"))]


@pytest.fixture
def hr_node(scene, tmp_path, hr):
    path = tmp_path / "hr.nrrd"
    write_volume(hr, path)
    return load_with_storage_node(scene, path, "T1ref")
