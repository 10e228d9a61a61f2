"""Plugin test fixtures: an Xvfb display for the GUI tests, synthetic oblique volumes and DICOM series.

``make test`` runs plain ``pytest`` with no display; napari needs a real GL context
(offscreen Qt gives a blank canvas), so the first GUI test starts Xvfb and points
Qt's xcb platform at it. GUI tests skip only when Xvfb is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from isovox.grid import rotation_matrix as rotation
from isovox.volume import Volume

_XVFB: subprocess.Popen | None = None


def _start_xvfb() -> bool:
    """Start Xvfb on a free display (it picks the number) and export DISPLAY; False if unavailable."""
    global _XVFB
    if _XVFB is not None:
        return True
    binary = shutil.which("Xvfb")
    if binary is None:
        return False
    read_fd, write_fd = os.pipe()
    _XVFB = subprocess.Popen([binary, "-displayfd", str(write_fd), "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
                             pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    if not number:
        _XVFB.kill()
        _XVFB = None
        return False
    os.environ["DISPLAY"] = f":{number}"
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp/runtime-isovox")
    os.makedirs(os.environ["XDG_RUNTIME_DIR"], mode=0o700, exist_ok=True)
    return True


def pytest_configure(config: pytest.Config) -> None:
    # Before pytest-qt creates the QApplication: a real X display for napari's canvas.
    if os.environ.get("ISOVOX_KEEP_DISPLAY") and os.environ.get("DISPLAY"):
        return
    _start_xvfb()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _XVFB is not None:
        _XVFB.terminate()
        _XVFB.wait(timeout=10)


@pytest.fixture
def display() -> None:
    if _XVFB is None and not os.environ.get("DISPLAY"):
        pytest.skip("no X display: install Debian's xvfb (make test does)")


@pytest.fixture
def oblique_volume() -> Volume:
    """Oblique (~20 deg), anisotropic, axis-permuted and flipped: what a scanner's file may hold."""
    rng = np.random.default_rng(7)
    data = rng.normal(100, 20, (12, 9, 15)).astype(np.float32)
    linear = rotation(12, -20, 15) @ np.diag([0.9, 1.1, 3.5])
    affine = np.eye(4)
    affine[:3, :3] = linear[:, [2, 0, 1]] * np.array([1, -1, 1])  # permuted + flipped storage
    affine[:3, 3] = [-40.0, 25.0, 12.5]
    return Volume(data, affine, {"source": "oblique phantom"})


def _write_dicom_series(folder: Path, volume: Volume) -> None:
    """A minimal MR series, one file per slice along the last axis, as scanners store them."""
    import SimpleITK as sitk

    from isovox.io import volume_to_sitk

    image = sitk.Cast(volume_to_sitk(volume), sitk.sitkInt16)
    folder.mkdir()
    d = image.GetDirection()
    orientation = "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        plane = image[:, :, k]
        origin = "\\".join(f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k)))
        for tag, value in (("0008|0060", "MR"), ("0020|000d", "1.2.3.4"), ("0020|000e", "1.2.3.4.5"),
                           ("0020|0032", origin), ("0020|0037", orientation), ("0020|0013", str(k + 1))):
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(plane)


@pytest.fixture(scope="session")
def write_dicom_series() -> Callable[[Path, Volume], None]:
    """``write_dicom_series(folder, volume)``: write ``volume`` as a DICOM MR series into the new ``folder``
    (int16, one file per slice along the volume's last axis)."""
    return _write_dicom_series
