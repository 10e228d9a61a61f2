"""The bundled sample: a 100^3 crop of the real Colin27 T1 and three x4 thick scans of it.

See ``data/sample/README.md`` for its source and licence; ``scripts/make_sample.py``
rebuilds it from Debian's ``mricron-data``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SCAN_NAMES = ("axial", "coronal", "sagittal")


def sample_dir() -> Path:
    return Path(str(resources.files("isovox") / "data" / "sample"))


def sample_scan_paths() -> list[Path]:
    """The three orthogonal 4 mm scans, axial first."""
    return [sample_dir() / f"colin27_{name}_4mm.nii.gz" for name in SCAN_NAMES]


def sample_reference_path() -> Path:
    """The 1 mm ground truth the scans were simulated from."""
    return sample_dir() / "colin27_hr.nii.gz"
