"""DICOM out: a result as one new, DERIVED MR series that viewers and PACS take.

The series keeps the patient, StudyInstanceUID and FrameOfReferenceUID of the first source series
(inputs that were not DICOM get placeholders, and the run says so), with a new SeriesInstanceUID
and SOP Instance UIDs, ImageType DERIVED\\SECONDARY, a SeriesDescription naming the method, a
DerivationDescription and a ReferencedSeriesSequence naming the sources, and the statement that
the images are computed, not acquired. Every slice carries its exact ImagePositionPatient,
ImageOrientationPatient, PixelSpacing, SliceThickness and SpacingBetweenSlices; pixels are int16
with RescaleSlope/Intercept chosen so every value survives within one stored step. The folder is
written next to its destination and moved in place whole, so it appears complete or not at all.
"""

from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .errors import InputError
from .io import staging_folder
from .volume import Volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
COMPUTED = "computed by isovox from the source series, not acquired"
PLACEHOLDER_NOTE = ("the inputs were not DICOM: the series carries placeholder patient and study identity "
                    "(patient 'isovox^placeholder', a new study); merge it into the right study before archiving")


def scaling(values: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) mapping int16 stored values onto ``values``' range (one stored step of error)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    if hi <= lo:
        return 1.0, lo
    return (hi - lo) / 65534.0, (hi + lo) / 2.0


def source_files(scans: Sequence[Volume]) -> list[str]:
    """One file of each DICOM source series among ``scans`` (scans read from other formats have none)."""
    return [str(first) for scan in scans if (first := (scan.meta.get("dicom") or {}).get("first_file"))]


def source_identity(sources: Sequence[str | os.PathLike]) -> tuple[Optional[Any], list[Any]]:
    """(the first source's header, every readable source's header) from one file of each source series."""
    import pydicom

    headers = []
    for path in sources:
        if Path(path).is_file():
            try:
                headers.append(pydicom.dcmread(str(path), stop_before_pixels=True))
            except Exception:  # a source that moved or changed since the run: placeholders instead
                continue
    return (headers[0] if headers else None), headers


def write_series(volume: Volume, folder: str | os.PathLike, method: str,
                 sources: Sequence[str | os.PathLike] = (), description: str = "",
                 version: str = "") -> tuple[Path, list[str]]:
    """Write ``volume`` as a derived DICOM series into the new folder ``folder``; (folder, notes).

    ``sources`` are one file of each source DICOM series (see :func:`source_files`); the patient, study
    and frame of reference come from the first of them.
    """

    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(f"{folder}: exists and is not an empty folder; DICOM output needs a new folder")
    first, headers = source_identity(sources)
    notes = [] if first is not None else [PLACEHOLDER_NOTE]
    steps = np.linalg.norm(np.asarray(volume.affine)[:3, :3], axis=0)
    thick = int(np.argmax(steps))
    if thick != 2 and steps[thick] > 1.01 * np.delete(steps, thick).max():  # slices across the thick axis
        volume = volume.transposed(tuple(a for a in range(3) if a != thick) + (thick,))
    lps = LPS_TO_RAS @ np.asarray(volume.affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    directions = lps[:3, :3] / spacing
    if abs(float(np.cross(directions[:, 0], directions[:, 1]) @ directions[:, 2])) < 0.999:
        raise InputError("the result's grid is sheared or its slices are not perpendicular to its planes; "
                         "write it as NIfTI instead")
    slope, intercept = scaling(volume.data)
    base = _base_dataset(first, headers, method, description, version, spacing, directions, slope, intercept)
    staging = staging_folder(folder, ".isovox-dicom-")
    try:
        for k in range(volume.shape[2]):
            ds = _slice_dataset(base, volume, lps, k, slope, intercept)
            _save(ds, staging / f"IM{k + 1:05d}.dcm")
        if folder.exists():
            folder.rmdir()  # empty (checked above)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder, notes


def _base_dataset(first, headers: Sequence[Any], method: str, description: str, version: str,
                  spacing: np.ndarray, directions: np.ndarray, slope: float, intercept: float):
    """Everything the slices share."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import generate_uid

    ds = _identity(first)
    now = datetime.datetime.now()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPClassUID = MR_IMAGE_STORAGE
    ds.Modality = "MR"
    ds.SeriesNumber = 1000 + int(getattr(first, "SeriesNumber", 0) or 0) if first is not None else 1000
    source_description = str(getattr(first, "SeriesDescription", "") or description or "scan") if first else (
        description or "scan")
    ds.SeriesDescription = f"{source_description} isovox {method}"[:64]
    ds.ImageType = ["DERIVED", "SECONDARY"]
    sources = ", ".join(f"series {getattr(h, 'SeriesNumber', '?')}" for h in headers) or "non-DICOM scans"
    ds.DerivationDescription = (f"isovox {version} {method}: isotropic super-resolution of {sources}; "
                                f"{COMPUTED}")[:1024]
    ds.ImageComments = f"{COMPUTED}; method {method}"[:10240]
    ds.BurnedInAnnotation = "NO"
    if headers:
        items = []
        for header in headers:
            item = Dataset()
            item.SeriesInstanceUID = header.SeriesInstanceUID
            item.StudyInstanceUID = getattr(header, "StudyInstanceUID", ds.StudyInstanceUID)
            items.append(item)
        ds.ReferencedSeriesSequence = DicomSequence(items)
    ds.ImageOrientationPatient = [_ds(v) for v in np.concatenate([directions[:, 0], directions[:, 1]])]
    ds.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]  # between rows, between columns
    ds.SliceThickness = _ds(spacing[2])
    ds.SpacingBetweenSlices = _ds(spacing[2])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope = _ds(slope)
    ds.RescaleIntercept = _ds(intercept)
    ds.RescaleType = "US"
    for key, value in (("ScanningSequence", "RM"), ("SequenceVariant", "NONE"), ("ScanOptions", ""),
                       ("MRAcquisitionType", "3D"), ("EchoTrainLength", "")):
        setattr(ds, key, value)
    ds.ContentDate = ds.SeriesDate = now.strftime("%Y%m%d")
    ds.ContentTime = ds.SeriesTime = now.strftime("%H%M%S")
    return ds


def _identity(first):
    """Patient, study and frame of reference of the first source (placeholders and new UIDs without one)."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    ds = Dataset()
    identity = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "StudyInstanceUID",
                "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName", "StudyDescription",
                "FrameOfReferenceUID", "Manufacturer", "InstitutionName", "MagneticFieldStrength", "BodyPartExamined")
    if first is not None:
        for key in identity:
            if key in first:
                setattr(ds, key, getattr(first, key))
    ds.PatientName = ds.get("PatientName", "isovox^placeholder")
    ds.PatientID = ds.get("PatientID", "ISOVOX")
    now = datetime.datetime.now()
    for key, value in (("StudyDate", now.strftime("%Y%m%d")), ("StudyTime", now.strftime("%H%M%S")),
                       ("StudyID", "1"), ("PatientBirthDate", ""), ("PatientSex", ""), ("AccessionNumber", ""),
                       ("ReferringPhysicianName", "")):
        if key not in ds or (first is None and value):
            setattr(ds, key, value)
    ds.StudyInstanceUID = ds.get("StudyInstanceUID") or generate_uid()
    ds.FrameOfReferenceUID = ds.get("FrameOfReferenceUID") or generate_uid()
    return ds


def _slice_dataset(base, volume: Volume, lps: np.ndarray, k: int, slope: float, intercept: float):
    import copy

    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = copy.deepcopy(base)
    ds.SOPInstanceUID = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.InstanceNumber = k + 1
    position = lps @ np.array([0.0, 0.0, float(k), 1.0])
    ds.ImagePositionPatient = [_ds(v) for v in position[:3]]
    normal = np.cross(lps[:3, 0], lps[:3, 1])
    ds.SliceLocation = _ds(float(position[:3] @ normal / np.linalg.norm(normal)))
    plane = np.asarray(volume.data[:, :, k], dtype=np.float64).T  # (rows = j, columns = i)
    stored = np.clip(np.round((plane - intercept) / slope), -32767, 32767).astype(np.int16)
    ds.Rows, ds.Columns = stored.shape
    ds.PixelData = stored.tobytes()
    return ds


def _save(ds, path: Path) -> None:
    """A Part 10 file (preamble, file meta) with pydicom 3 or the pydicom 2 that Slicer may ship."""
    try:
        ds.save_as(str(path), enforce_file_format=True)
    except TypeError:  # pydicom < 3
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(str(path), write_like_original=False)


def _ds(value: float) -> str:
    """A DICOM decimal string (at most 16 characters) as exact as it allows."""
    for digits in range(16, 4, -1):
        text = f"{float(value):.{digits}g}"
        if len(text) <= 16:
            return text
    return f"{float(value):.6g}"
