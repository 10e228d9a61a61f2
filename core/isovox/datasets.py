"""Real volumes fetched from package registries into a local cache (never committed).

========== ================================================ =====================================
name       what                                             from
========== ================================================ =====================================
colin27    Colin27 1 mm T1 average (181x217x181)            Debian ``mricron-data`` (BSD-3-Clause)
mni152     MNI152 2009a T1 template, 1 mm (197x233x189)     PyPI ``nilearn`` wheel (BSD-3-Clause)
ct_head    real CT head, int16 256x256x108, 0.957x0.957x1.5 Debian ``invesalius-examples`` (GPL-2)
========== ================================================ =====================================

The cache is ``$ISOVOX_CACHE`` or ``~/.cache/isovox``. Each fetch uses the
registries' ordinary clients (``apt-get download``, ``pip download``); nothing
else is contacted.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .errors import IsovoxError

DATASETS = ("colin27", "mni152", "ct_head")
_COLIN_SYSTEM = Path("/usr/share/mricron/templates/ch2.nii.gz")
_MNI_MEMBER = "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def cache_dir() -> Path:
    path = Path(os.environ.get("ISOVOX_CACHE", Path.home() / ".cache" / "isovox"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def fetch(name: str) -> Path:
    """Path of dataset ``name`` in the cache, downloading it first if needed."""
    target = cache_dir() / f"{name}.nii.gz"
    if target.exists():
        return target
    if name not in DATASETS:
        raise IsovoxError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        work = Path(tmp)
        staged = work / target.name
        {"colin27": _colin27, "mni152": _mni152, "ct_head": _ct_head}[name](work, staged)
        os.replace(staged, target)
    return target


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise IsovoxError(f"{' '.join(cmd[:3])} failed: {tail[0]}")


def _deb_file(package: str, member: str, work: Path) -> Path:
    """Extract one file of a Debian package fetched with ``apt-get download``."""
    _run(["apt-get", "download", package], work)
    debs = list(work.glob(f"{package}_*.deb"))
    if not debs:
        raise IsovoxError(f"apt-get download {package} produced no package (run 'apt-get update' first?)")
    _run(["dpkg-deb", "-x", str(debs[0]), "root"], work)
    path = work / "root" / member.lstrip("/")
    if not path.exists():
        raise IsovoxError(f"{member} is not in {debs[0].name}")
    return path


def _colin27(work: Path, staged: Path) -> None:
    source = _COLIN_SYSTEM if _COLIN_SYSTEM.exists() else _deb_file("mricron-data", str(_COLIN_SYSTEM), work)
    shutil.copyfile(source, staged)


def _mni152(work: Path, staged: Path) -> None:
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", ".",
          "nilearn"], work)
    wheels = list(work.glob("nilearn-*.whl"))
    if not wheels:
        raise IsovoxError("pip download nilearn produced no wheel")
    with zipfile.ZipFile(wheels[0]) as zf, zf.open(_MNI_MEMBER) as src, open(staged, "wb") as dst:
        shutil.copyfileobj(src, dst)


def _ct_head(work: Path, staged: Path) -> None:
    """InVesalius project (tar.gz): int16 matrix.dat (slices, rows, cols) + main.plist geometry."""
    import nibabel as nib

    project = _deb_file("invesalius-examples", "/usr/share/doc/invesalius-examples/examples/Cranium.inv3", work)
    with tarfile.open(project) as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        info = plistlib.loads(tar.extractfile(members["main.plist"]).read())
        raw = tar.extractfile(members[info["matrix"]["filename"]]).read()
    shape = tuple(info["matrix"]["shape"])  # (slices, rows, cols)
    data = np.frombuffer(raw, dtype="<" + np.dtype(info["matrix"]["dtype"]).str[1:]).reshape(shape)
    sx, sy, sz = (float(s) for s in info["spacing"])
    # InVesalius keeps DICOM's in-plane order (columns to patient left, rows to posterior) and no
    # patient orientation: slices are taken to run inferior to superior.
    volume = np.ascontiguousarray(data.transpose(2, 1, 0))
    affine = np.diag([-sx, -sy, sz, 1.0])
    img = nib.Nifti1Image(volume.astype(np.int16), affine)
    img.header.set_sform(affine, 1)
    img.header.set_qform(affine, 1)
    nib.save(img, str(staged))
