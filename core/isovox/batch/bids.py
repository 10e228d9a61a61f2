"""A BIDS dataset's anatomical images, grouped into runs: per subject, session and suffix, its thick scans.

Only headers are read here (nibabel maps the file and decodes no voxels), so planning a cohort of
thousands of images takes seconds. An image whose voxels are at least :data:`THICK` times longer along
one axis than the finest is a thick-slice scan; the others are isotropic and may serve as the
``--reference`` of a guided method.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from ..errors import InputError

THICK = 1.5  # slice spacing over in-plane spacing from which an image is a thick-slice scan
MAX_SCANS = 3
IMAGE = re.compile(r"^(sub-[A-Za-z0-9]+(?:_[a-z]+-[A-Za-z0-9]+)*)_([A-Za-z0-9]+)\.nii(\.gz)?$")
REFERENCE_PREFERENCE = ("T1w", "T2w", "PDw", "FLAIR")  # which isotropic image guides, first found wins


@dataclass(frozen=True)
class Image:
    """One anatomical image of the dataset, known by its header only."""

    path: Path
    subject: str
    session: Optional[str]
    suffix: str
    shape: tuple[int, ...] = ()
    affine: Optional[np.ndarray] = field(default=None, compare=False)
    problem: str = ""  # why the header cannot be read ("" when it can)

    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def thick(self) -> bool:
        """A thick-slice scan (an unreadable image counts as one: its run reports why it fails)."""
        if self.problem:
            return True
        spacing = self.spacing
        return bool(spacing.max() >= THICK * spacing.min())

    @property
    def slice_normal(self) -> np.ndarray:
        axis = int(np.argmax(self.spacing))
        column = self.affine[:3, axis]
        return column / np.linalg.norm(column)


@dataclass
class Group:
    """One run of the engine: a subject's (and session's) thick scans of one suffix."""

    subject: str
    session: Optional[str]
    suffix: str
    scans: list[Image]
    reference: Optional[Image] = None
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "/".join(p for p in (f"sub-{self.subject}", self.session and f"ses-{self.session}") if p) + \
            f" {self.suffix}"

    def output_path(self, out_dir: Path) -> Path:
        """``OUT/sub-L/[ses-S/]anat/sub-L[_ses-S]_rec-isovox_<suffix>.nii.gz`` (a BIDS derivative name)."""
        folder = out_dir / f"sub-{self.subject}"
        stem = f"sub-{self.subject}"
        if self.session:
            folder, stem = folder / f"ses-{self.session}", f"{stem}_ses-{self.session}"
        return folder / "anat" / f"{stem}_rec-isovox_{self.suffix}.nii.gz"


def entities(name: str) -> Optional[tuple[dict[str, str], str]]:
    """(entities, suffix) of a BIDS image file name, or None when it is not one."""
    match = IMAGE.match(name)
    if not match:
        return None
    pairs = dict(part.split("-", 1) for part in match.group(1).split("_"))
    return pairs, match.group(2)


def read_header(path: Path, subject: str, session: Optional[str], suffix: str) -> Image:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        shape = tuple(int(n) for n in image.shape)
        affine = np.asarray(image.affine, dtype=np.float64)
        if len(shape) < 3 or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise ValueError("not a 3-D image with a usable affine")
    except Exception as exc:  # noqa: BLE001 - any unreadable header is reported on its run, not raised
        return Image(path, subject, session, suffix, problem=f"{path.name}: cannot read the header ({exc})")
    return Image(path, subject, session, suffix, shape[:3], affine)


def find_images(bids_dir: Path, participants: Sequence[str] = (), sessions: Sequence[str] = ()) -> list[Image]:
    """Every ``sub-*/[ses-*/]anat/*.nii[.gz]`` image, filtered by labels (given with or without ``sub-``)."""
    if not bids_dir.is_dir():
        raise InputError(f"{bids_dir}: no such BIDS folder")
    if not (bids_dir / "dataset_description.json").exists():
        raise InputError(f"{bids_dir}: not a BIDS dataset (no dataset_description.json)")
    wanted_subjects = {p.removeprefix("sub-") for p in participants}
    wanted_sessions = {s.removeprefix("ses-") for s in sessions}
    images = []
    for path in sorted(bids_dir.glob("sub-*/anat/*.nii*")) + sorted(bids_dir.glob("sub-*/ses-*/anat/*.nii*")):
        parsed = entities(path.name)
        if parsed is None:
            continue
        pairs, suffix = parsed
        subject, session = pairs["sub"], pairs.get("ses")
        if (wanted_subjects and subject not in wanted_subjects) or (wanted_sessions and session not in wanted_sessions):
            continue
        images.append(read_header(path, subject, session, suffix))
    found = {i.subject for i in images}
    missing = sorted(wanted_subjects - found)
    if missing:
        raise InputError(f"no anatomical images for participant(s) {', '.join(missing)} in {bids_dir}")
    return images


def most_orthogonal(scans: Sequence[Image], count: int = MAX_SCANS) -> list[Image]:
    """The ``count`` scans whose slice normals span the most volume (|det|), in their original order."""
    readable = [s for s in scans if not s.problem]
    if len(readable) <= count:
        return list(scans)[:count]

    def spread(combo: tuple[Image, ...]) -> float:
        normals = np.array([s.slice_normal for s in combo])
        return float(np.sqrt(abs(np.linalg.det(normals @ normals.T))))

    best = max(itertools.combinations(readable, count), key=spread)
    return [s for s in scans if s in best]


def group_images(images: Iterable[Image], suffixes: Sequence[str] = ()) -> list[Group]:
    """One :class:`Group` per (subject, session, suffix) with thick scans."""
    images = list(images)
    keyed: dict[tuple, list[Image]] = {}
    for image in images:
        if image.thick and (not suffixes or image.suffix in suffixes):
            keyed.setdefault((image.subject, image.session or "", image.suffix), []).append(image)
    groups = []
    for (subject, session, suffix), scans in sorted(keyed.items()):
        group = Group(subject, session or None, suffix, scans)
        if len(scans) > MAX_SCANS:
            group.scans = most_orthogonal(scans)
            dropped = ", ".join(s.path.name for s in scans if s not in group.scans)
            group.notes.append(f"{len(scans)} thick {suffix} scans: kept the {MAX_SCANS} most mutually "
                               f"orthogonal, left out {dropped}")
        isotropic = {i.suffix: i for i in images if not i.thick and i.subject == subject
                     and (i.session or "") == session and i.suffix != suffix}
        group.reference = next((isotropic[s] for s in REFERENCE_PREFERENCE if s in isotropic),
                               next(iter(isotropic.values()), None))
        groups.append(group)
    return groups
