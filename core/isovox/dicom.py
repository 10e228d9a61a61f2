"""DICOM in: every series under a folder, with its geometry taken from the slice positions.

A series' slice order and spacing come from ImagePositionPatient projected on the slice normal
(the cross product of ImageOrientationPatient's two directions), never from file names,
InstanceNumber or SpacingBetweenSlices (0018,0088), which some vendors fill with the gap. A tag
that disagrees with the positions is reported in one warning that says which was used.

Missing slices (an incomplete transfer) keep every acquired slice at its true position: the volume
holds the full stack with each missing slice interpolated from its neighbours and listed in
``meta["missing_slices"]``; ``meta["acquired_slices"]`` tells the forward model which slices were
measured, so the reconstruction uses only those; other methods refuse such a scan, naming the
missing positions. Slices whose spacing is neither even nor a multiple of one spacing keep only
their measured slices and their positions (``meta["slice_positions"]``). A gantry tilt (slices
offset in-plane along the stack) gives a sheared grid, kept as it is. Enhanced (multi-frame) MR
files are read from their per-frame functional groups.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .errors import InputError
from .volume import Volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
SAME_POSITION_MM = 1e-3
EVEN_TOLERANCE = 0.02  # relative: slice spacings within 2 % of their median are even
INTEGER_TOLERANCE = 0.05  # of a spacing: positions this close to whole spacings mean missing slices
TAG_TOLERANCE = 0.01  # relative: a spacing tag further from the positions' spacing than this is reported


@dataclass
class Frame:
    """One 2-D image of a series: where it is and how to get its pixels."""

    path: Path
    index: Optional[int]  # frame number in an enhanced multi-frame file, None for a single-frame file
    position: np.ndarray  # ImagePositionPatient (LPS mm)
    orientation: np.ndarray  # ImageOrientationPatient (row direction, column direction)
    pixel_spacing: np.ndarray  # (between rows, between columns) mm
    rows: int
    columns: int
    instance: int = 0
    thickness: Optional[float] = None
    spacing_tag: Optional[float] = None


@dataclass
class Series:
    """A DICOM series found under a folder."""

    uid: str
    number: Optional[int]
    description: str
    modality: str
    frames: list[Frame] = field(default_factory=list)
    tags: dict[str, Any] = field(default_factory=dict)  # sequence parameters, study and patient identity

    @property
    def files(self) -> list[Path]:
        return sorted({f.path for f in self.frames})

    def summary(self) -> dict[str, Any]:
        """Number, description, orientation, thickness, spacing and slice count, for listings."""
        out: dict[str, Any] = {"number": self.number, "uid": self.uid, "description": self.description,
                               "modality": self.modality, "slices": len(self.frames)}
        try:
            geometry = stack_geometry(self.frames)
        except InputError as exc:
            out["problem"] = str(exc)
            return out
        from .grid import orientation_code

        out.update(orientation=orientation_code(geometry.affine), slice_thickness_mm=geometry.thickness,
                   slice_spacing_mm=round(geometry.spacing, 4),
                   pixel_mm=[round(float(v), 4) for v in self.frames[0].pixel_spacing[::-1]],
                   volumes=geometry.volumes)
        out.update({k: v for k, v in self.tags.items() if k in ("echo_time", "repetition_time", "inversion_time",
                                                              "sequence", "contrast")})
        return out


# --------------------------------------------------------------------------- finding series


def quiet_itk() -> None:
    """ITK and GDCM write warnings straight to the terminal; isovox reports what matters itself."""
    import SimpleITK as sitk

    sitk.ProcessObject_SetGlobalWarningDisplay(False)


def find_series(folder: str | os.PathLike) -> list[Series]:
    """Every DICOM image series under ``folder`` (recursively; a DICOMDIR's files are found with the rest),
    by series number then UID."""
    import pydicom

    found: dict[str, Series] = {}
    for path in _files_under(Path(folder)):
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not DICOM, or unreadable: not part of any series
            continue
        if not _is_image(ds):
            continue  # a DICOMDIR, a report, a presentation state
        uid = str(getattr(ds, "SeriesInstanceUID", "") or f"no-uid:{path.parent}")
        series = found.get(uid)
        if series is None:
            series = found[uid] = Series(uid, _int(getattr(ds, "SeriesNumber", None)),
                                         str(getattr(ds, "SeriesDescription", "") or ""),
                                         str(getattr(ds, "Modality", "") or ""), tags=_series_tags(ds, path))
        series.frames.extend(_frames(ds, path))
    return sorted(found.values(), key=lambda s: (s.number is None, s.number or 0, s.uid))


def _files_under(folder: Path):
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            if name.upper() == "DICOMDIR" or name.startswith("."):
                continue
            yield Path(root) / name


def _is_image(ds) -> bool:
    """An image placed in space: classic (orientation on the image) or enhanced (in functional groups)."""
    placed = any(key in ds for key in ("ImageOrientationPatient", "SharedFunctionalGroupsSequence",
                                       "PerFrameFunctionalGroupsSequence"))
    return "Rows" in ds and "Columns" in ds and placed


def _int(value) -> Optional[int]:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _series_tags(ds, path: Path) -> dict[str, Any]:
    """What later steps need: sequence parameters (contrast checks) and identity (derived series)."""
    tags: dict[str, Any] = {"first_file": str(path)}
    for key, attr in (("echo_time", "EchoTime"), ("repetition_time", "RepetitionTime"),
                      ("inversion_time", "InversionTime")):
        value = _float(getattr(ds, attr, None))
        if value is not None:
            tags[key] = value
    for key, attr in (("sequence", "SequenceName"), ("scanning_sequence", "ScanningSequence"),
                      ("study_uid", "StudyInstanceUID"), ("frame_of_reference_uid", "FrameOfReferenceUID")):
        value = getattr(ds, attr, None)
        if value not in (None, ""):
            tags[key] = str(value)
    return tags


def _frames(ds, path: Path) -> list[Frame]:
    """The 2-D images of one file: itself, or each frame of an enhanced multi-frame file."""
    count = _int(getattr(ds, "NumberOfFrames", None)) or 1
    if count > 1 or "PerFrameFunctionalGroupsSequence" in ds:
        return _enhanced_frames(ds, path, count)
    position = _vector(getattr(ds, "ImagePositionPatient", None), 3)
    orientation = _vector(getattr(ds, "ImageOrientationPatient", None), 6)
    spacing = _vector(getattr(ds, "PixelSpacing", None), 2)
    if position is None or orientation is None or spacing is None:
        raise InputError(f"{path}: a DICOM image without ImagePositionPatient, ImageOrientationPatient or "
                         "PixelSpacing; isovox cannot place it in space")
    return [Frame(path, None, position, orientation, spacing, int(ds.Rows), int(ds.Columns),
                  _int(getattr(ds, "InstanceNumber", None)) or 0, _float(getattr(ds, "SliceThickness", None)),
                  _float(getattr(ds, "SpacingBetweenSlices", None)))]


def _enhanced_frames(ds, path: Path, count: int) -> list[Frame]:
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    per_frame = ds.PerFrameFunctionalGroupsSequence if "PerFrameFunctionalGroupsSequence" in ds else []
    if len(per_frame) != count:
        raise InputError(f"{path}: an enhanced DICOM file with {count} frames but {len(per_frame)} frame groups")

    def item(group, sequence: str):
        for source in (group, shared):
            if source is not None and sequence in source and len(getattr(source, sequence)):
                return getattr(source, sequence)[0]
        return None

    frames = []
    for index, group in enumerate(per_frame):
        plane = item(group, "PlanePositionSequence")
        orient = item(group, "PlaneOrientationSequence")
        measures = item(group, "PixelMeasuresSequence")
        position = _vector(getattr(plane, "ImagePositionPatient", None), 3) if plane is not None else None
        orientation = _vector(getattr(orient, "ImageOrientationPatient", None), 6) if orient is not None else None
        spacing = _vector(getattr(measures, "PixelSpacing", None), 2) if measures is not None else None
        if position is None or orientation is None or spacing is None:
            raise InputError(f"{path}: frame {index + 1} has no plane position, orientation or pixel spacing")
        frames.append(Frame(path, index, position, orientation, spacing, int(ds.Rows), int(ds.Columns), index,
                            _float(getattr(measures, "SliceThickness", None)),
                            _float(getattr(measures, "SpacingBetweenSlices", None))))
    return frames


def _vector(value, size: int) -> Optional[np.ndarray]:
    try:
        out = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return out if out.shape == (size,) and np.all(np.isfinite(out)) else None


# --------------------------------------------------------------------------- geometry


@dataclass
class StackGeometry:
    """Where a stack of frames lies: its order, the acquired slices' indices on an even grid, the affine."""

    order: list[int]  # frame indices sorted along the slice normal (first frame of each position)
    affine: np.ndarray  # RAS, (column, row, slice) index order
    spacing: float  # median distance between neighbouring slices (mm)
    positions: np.ndarray  # each slice's position along the stack in units of ``spacing`` (0 first)
    thickness: Optional[float]
    volumes: int  # images per position (echoes, time points)
    warnings: list[str] = field(default_factory=list)

    @property
    def even(self) -> bool:
        return bool(np.allclose(self.positions, np.arange(len(self.positions)), atol=INTEGER_TOLERANCE))

    @property
    def whole(self) -> bool:
        """Every position lies on the even grid (so missing slices are whole spacings)."""
        return bool(np.all(np.abs(self.positions - np.round(self.positions)) < INTEGER_TOLERANCE))


def stack_geometry(frames: Sequence[Frame], volume: int = 0) -> StackGeometry:
    """The geometry of a stack from its frames' positions (see the module's docstring)."""
    if not frames:
        raise InputError("a DICOM series without images")
    orientation = frames[0].orientation
    if any(np.abs(f.orientation - orientation).max() > 1e-3 for f in frames):
        raise InputError("its images have different orientations (a localiser or a multi-plane series); "
                         "choose another series")
    if any((f.rows, f.columns) != (frames[0].rows, frames[0].columns) for f in frames):
        raise InputError("its images have different sizes")
    row, column = orientation[:3], orientation[3:]
    normal = np.cross(row, column)
    if np.linalg.norm(normal) < 0.5:
        raise InputError("ImageOrientationPatient does not give two independent directions")
    normal /= np.linalg.norm(normal)
    distance = np.array([f.position @ normal for f in frames])
    chosen, volumes = _one_image_per_position(frames, distance, volume)
    if len(chosen) < 2:
        raise InputError(f"the DICOM series has {len(chosen)} slice; isovox needs a 3-D volume")
    warnings: list[str] = []
    steps = np.diff(distance[chosen])
    spacing = float(np.median(steps))
    positions = (distance[chosen] - distance[chosen[0]]) / spacing
    first, last = frames[chosen[0]].position, frames[chosen[-1]].position
    slice_vector = (last - first) / positions[-1]  # per unit of ``spacing`` along the stack
    offset = slice_vector - (slice_vector @ normal) * normal
    if np.linalg.norm(offset) > 0.01 * spacing:
        tilt = float(np.degrees(np.arctan2(np.linalg.norm(offset), slice_vector @ normal)))
        warnings.append(f"the slices are offset in-plane along the stack (gantry tilt {tilt:.1f} degrees); "
                        "kept as a sheared grid")
    else:
        slice_vector = normal * spacing
    spacing_pixels = frames[0].pixel_spacing  # (between rows, between columns)
    lps = np.eye(4)
    lps[:3, 0] = row * spacing_pixels[1]
    lps[:3, 1] = column * spacing_pixels[0]
    lps[:3, 2] = slice_vector
    lps[:3, 3] = first
    thickness = frames[chosen[0]].thickness
    tag = frames[chosen[0]].spacing_tag
    if tag is not None and abs(tag - spacing) > TAG_TOLERANCE * spacing:
        warnings.append(f"SpacingBetweenSlices (0018,0088) says {tag:g} mm but the slice positions are "
                        f"{spacing:.4g} mm apart; the positions are used")
    if thickness is not None and not (0 < thickness < 100):
        warnings.append(f"SliceThickness (0018,0050) of {thickness:g} mm is not plausible; the slice spacing "
                        "is used as the thickness")
        thickness = None
    return StackGeometry([int(i) for i in chosen], LPS_TO_RAS @ lps, spacing, positions, thickness, volumes,
                         warnings)


def _one_image_per_position(frames: Sequence[Frame], distance: np.ndarray, volume: int) -> tuple[list[int], int]:
    """(the ``volume``-th image at each slice position, in order along the normal; images per position)."""
    order = np.argsort(distance, kind="stable")
    groups: list[list[int]] = []
    for idx in order:
        if groups and abs(distance[idx] - distance[groups[-1][0]]) < SAME_POSITION_MM:
            groups[-1].append(int(idx))
        else:
            groups.append([int(idx)])
    counts = {len(g) for g in groups}
    if len(counts) != 1:
        raise InputError("some slice positions hold more images than others; the series is incomplete")
    volumes = counts.pop()
    if not 0 <= volume < volumes:
        raise InputError(f"--frame {volume} is out of range 0..{volumes - 1}")
    chosen = [sorted(g, key=lambda i: (frames[i].instance, str(frames[i].path), frames[i].index or 0))[volume]
              for g in groups]
    return chosen, volumes


# --------------------------------------------------------------------------- reading


def read_series(series: Series, frame: Optional[int] = None, source: str = "") -> Volume:
    """The series as a RAS volume (see the module's docstring for uneven and missing slices)."""
    source = source or series.description or series.uid
    try:
        geometry = stack_geometry(series.frames, frame or 0)
    except InputError as exc:
        raise InputError(f"{source}: {exc}") from None
    if geometry.volumes > 1 and frame is None:
        raise InputError(f"{source}: the series holds {geometry.volumes} volumes at the same slice positions "
                         f"(echoes or time points); choose one with --frame 0..{geometry.volumes - 1}")
    pixels = [_pixels(series.frames[i]) for i in geometry.order]
    stack = np.stack([p.T for p in pixels], axis=2).astype(np.float32)  # (column, row, slice)
    meta: dict[str, Any] = {"source": source, "format": "dicom", "series_uid": series.uid,
                            "series_number": series.number, "series_description": series.description,
                            "modality": series.modality, "spacing_between_slices": geometry.spacing,
                            "dicom": dict(series.tags), "source_files": [str(p) for p in series.files]}
    meta.update({k: series.tags[k] for k in ("echo_time", "repetition_time", "inversion_time") if k in series.tags})
    if geometry.thickness is not None:
        meta["slice_thickness"] = geometry.thickness
    if frame is not None:
        meta["frame"] = frame
    warnings = list(geometry.warnings)
    affine = geometry.affine
    if not geometry.even:
        if geometry.whole:
            stack, meta["acquired_slices"], meta["missing_slices"] = _fill_missing(stack, geometry.positions)
            missing_mm = ", ".join(f"{p * geometry.spacing:.4g}" for p in meta["missing_slices"])
            warnings.append(f"{len(meta['missing_slices'])} slice(s) missing at {missing_mm} mm along the stack "
                            "(from the first slice); every acquired slice is kept at its position and only srr "
                            "uses the scan as acquired")
        else:
            meta["slice_positions"] = [round(float(p), 6) for p in geometry.positions]
            warnings.append(f"the slices are unevenly spaced ({_spread(geometry)}); only srr models their "
                            "positions")
    if warnings:
        meta["warnings"] = warnings
    return Volume(stack, affine, meta)


def _spread(geometry: StackGeometry) -> str:
    steps = np.diff(geometry.positions) * geometry.spacing
    return f"{steps.min():.4g} to {steps.max():.4g} mm apart"


def _fill_missing(stack: np.ndarray, positions: np.ndarray):
    """The even stack with each acquired slice at its whole-spacing index and each missing one
    interpolated linearly from its neighbours; (stack, acquired indices, missing indices)."""
    index = np.round(positions).astype(int)
    full = np.empty(stack.shape[:2] + (int(index[-1]) + 1,), np.float32)
    full[:, :, index] = stack
    missing = [int(i) for i in range(full.shape[2]) if i not in set(index.tolist())]
    for m in missing:
        below = index[index < m].max()
        above = index[index > m].min()
        w = (m - below) / (above - below)
        full[:, :, m] = (1 - w) * full[:, :, below] + w * full[:, :, above]
    return full, [int(i) for i in index], missing


def _pixels(frame: Frame) -> np.ndarray:
    """Rescaled pixel values of one frame (pydicom; SimpleITK for encodings pydicom cannot decode)."""
    import pydicom

    ds = pydicom.dcmread(str(frame.path))
    try:
        array = ds.pixel_array
    except Exception:  # noqa: BLE001 - a compressed transfer syntax without a pydicom handler
        array = _pixels_by_itk(frame)
        return array.astype(np.float32)
    if frame.index is not None:
        array = array[frame.index]
        slope, intercept = _frame_rescale(ds, frame.index)
    else:
        slope = _float(getattr(ds, "RescaleSlope", None)) or 1.0
        intercept = _float(getattr(ds, "RescaleIntercept", None)) or 0.0
    if array.ndim != 2:
        raise InputError(f"{frame.path}: pixel data of shape {array.shape} is not one 2-D image")
    return array.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def _frame_rescale(ds, index: int) -> tuple[float, float]:
    for source in (ds.PerFrameFunctionalGroupsSequence[index],
                   ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None):
        if source is not None and "PixelValueTransformationSequence" in source:
            item = source.PixelValueTransformationSequence[0]
            return (_float(getattr(item, "RescaleSlope", None)) or 1.0,
                    _float(getattr(item, "RescaleIntercept", None)) or 0.0)
    return _float(getattr(ds, "RescaleSlope", None)) or 1.0, _float(getattr(ds, "RescaleIntercept", None)) or 0.0


def _pixels_by_itk(frame: Frame) -> np.ndarray:
    import SimpleITK as sitk

    quiet_itk()
    try:
        image = sitk.ReadImage(str(frame.path))
    except RuntimeError as exc:
        raise InputError(f"{frame.path}: cannot decode its pixels ({str(exc).strip().splitlines()[-1][:120]})") \
            from None
    array = sitk.GetArrayFromImage(image)
    array = array[frame.index or 0] if array.ndim == 3 else array
    return array


# --------------------------------------------------------------------------- choosing series


def choose(series: Sequence[Series], wanted: Sequence[str], folder: str) -> list[Series]:
    """The series picked by ``--series`` (numbers or UIDs), in the order given."""
    out = []
    for key in wanted:
        match = [s for s in series if s.uid == key or (s.number is not None and str(s.number) == str(key))]
        if not match:
            raise InputError(f"{folder}: no series {key!r}; it holds {listing_line(series)}")
        if len(match) > 1:
            raise InputError(f"{folder}: series number {key} is ambiguous ({len(match)} series); give its UID")
        out.append(match[0])
    return out


def listing_line(series: Sequence[Series]) -> str:
    return ", ".join(f"{s.number if s.number is not None else '?'} ({s.description or s.uid})" for s in series)


def read_folder(folder: Path, frame: Optional[int] = None, series_key: Optional[str] = None) -> Volume:
    """The one series under ``folder`` (or the one ``series_key`` names)."""
    quiet_itk()
    try:
        found = find_series(folder)
    except InputError as exc:
        raise InputError(f"{folder}: {exc}") from None
    if not found:
        raise InputError(f"{folder}: a folder with no DICOM series in it")
    if series_key is not None:
        chosen = choose(found, [series_key], str(folder))[0]
    elif len(found) > 1:
        raise InputError(f"{folder}: holds {len(found)} DICOM series: {listing_line(found)}; pick with --series "
                         "NUMBER (see 'isovox info FOLDER')")
    else:
        chosen = found[0]
    label = f"{folder} series {chosen.number}" if chosen.number is not None else str(folder)
    return read_series(chosen, frame, label)


def read_file_series(path: Path, frame: Optional[int] = None, series_key: Optional[str] = None) -> Volume:
    """The series that the DICOM file ``path`` belongs to (found among the files of its folder)."""
    if series_key is not None:
        return read_folder(path.parent, frame, series_key)
    quiet_itk()
    found = find_series(path.parent)
    owner = [s for s in found if any(f.path.resolve() == path.resolve() for f in s.frames)]
    if not owner:
        raise InputError(f"{path}: not a DICOM image that isovox can read")
    chosen = owner[0]
    return read_series(chosen, frame, f"{path.parent} series {chosen.number}" if chosen.number is not None
                       else str(path.parent))
