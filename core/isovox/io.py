"""Read and write volumes with their exact geometry.

This module owns every convention change: nibabel speaks RAS, ITK/SimpleITK
speaks LPS, ITK arrays come back in (z, y, x) order. Everything else in isovox
sees only :class:`~isovox.volume.Volume` (RAS, (i, j, k) order).

Readers validate what they read (dimensionality, finite voxels, positive
spacing, invertible affine) and raise :class:`InputError` with one readable
line. Writers are atomic and refuse to replace a protected (input) file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from . import headers
from .errors import InputError
from .quiet import native_stderr, quiet_nibabel
from .volume import Volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
WRITABLE_SUFFIXES = NIFTI_SUFFIXES + (".nrrd", ".mha", ".mhd")


def suffix_of(path: str | os.PathLike) -> str:
    """Lower-case file suffix, treating ``.nii.gz`` as one suffix."""
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


# --------------------------------------------------------------------------- reading


def read_volume(path: str | os.PathLike, frame: int | None = None, series: str | None = None) -> Volume:
    """Read a NIfTI, NRRD, MHA/MHD file, a DICOM file or a folder of DICOM series as a RAS volume.

    ``frame`` picks one volume of a 4-D file (or of a DICOM series with several images per slice
    position); without it such data is refused with a message saying how many it holds. ``series``
    (a series number or UID) picks one DICOM series of a folder that holds several (see
    :func:`isovox.dicom.find_series`); a single .dcm file reads the series it belongs to.
    """
    from . import dicom

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if series is not None and not (path.is_dir() or suffix_of(path) == ".dcm"):
        raise InputError(f"{path}: --series picks a series of a DICOM folder; this is a {suffix_of(path)} file")
    if path.is_dir():
        volume = dicom.read_folder(path, frame, series)
    else:
        suffix = suffix_of(path)
        if suffix in NIFTI_SUFFIXES:
            volume = _read_nifti(path, frame)
        elif suffix in ITK_SUFFIXES:
            volume = _read_itk(path, frame)
        elif suffix == ".dcm" or is_dicom_file(path):
            volume = dicom.read_file_series(path, frame, series)
        else:
            raise InputError(
                f"{path}: unsupported file type {suffix or '(none)'}; "
                "use NIfTI (.nii, .nii.gz), NRRD (.nrrd), MetaImage (.mha, .mhd) or DICOM"
            )
    validate_volume(volume, str(path))
    return _with_sidecar(volume, path)


def is_dicom_file(path: Path) -> bool:
    """A DICOM Part 10 file: 'DICM' after the 128-byte preamble."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


# BIDS / dcm2niix sidecar keys that describe the acquisition.
_SIDECAR_KEYS = {"SliceThickness": "slice_thickness", "SpacingBetweenSlices": "spacing_between_slices"}
# isovox's own sidecar keys: which slices of the thick axis were measured, and where (index units), so a
# scan with missing or unevenly spaced slices keeps them when it passes through a file (Slicer's
# background runs, a user's export).
_RECORD_KEYS = {"IsovoxAcquiredSlices": "acquired_slices", "IsovoxMissingSlices": "missing_slices",
                "IsovoxSlicePositions": "slice_positions"}


def scan_record(volume: Volume) -> dict[str, Any]:
    """The acquisition facts of a scan as sidecar keys (BIDS where BIDS has them)."""
    record: dict[str, Any] = {}
    for key, name in {**_SIDECAR_KEYS, **_RECORD_KEYS}.items():
        value = volume.meta.get(name)
        if value is not None and not (isinstance(value, (list, tuple)) and not value):
            record[key] = [float(v) if name == "slice_positions" else int(v) for v in value] \
                if isinstance(value, (list, tuple)) else float(value)
    return record


def with_scan_record(volume: Volume, record: Mapping[str, Any]) -> Volume:
    """``volume`` with the slice facts of a sidecar written by :func:`scan_record` (ignored where they do
    not fit the image: another number of slices, indices out of range)."""
    from .grid import thick_axis

    axis = thick_axis(volume)
    if axis is None:
        return volume
    count = volume.shape[axis]
    extra: dict[str, Any] = {}
    for key, name in _RECORD_KEYS.items():
        value = record.get(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, (int, float)) for v in value):
            continue
        if name == "slice_positions":
            if len(value) == count and np.all(np.diff(value) > 0):
                extra[name] = [float(v) for v in value]
        elif all(float(v).is_integer() and 0 <= v < count for v in value):
            extra[name] = [int(v) for v in value]
    return volume.with_meta(**extra) if extra else volume


SIDECAR_BYTES = 1 << 20  # a BIDS sidecar is a few kB; anything above a MiB is not one


def _plausible_mm(value: Any) -> float | None:
    """A sidecar length in mm, or None for anything else (text, booleans, huge, non-finite, <= 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if np.isfinite(number) and 0 < number <= headers.MAX_SPACING_MM else None


def _with_sidecar(volume: Volume, path: Path) -> Volume:
    """Add slice thickness and spacing from a JSON sidecar (as dcm2niix writes) when present."""
    side = sidecar_path(path) if not path.is_dir() else None
    if side is None or not side.is_file():
        return volume
    try:
        if side.stat().st_size > SIDECAR_BYTES:
            raise ValueError("larger than 1 MiB")
        info = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError, UnicodeDecodeError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else _reason(exc)
        warning = f"its sidecar {side.name} is not readable JSON ({reason}); ignored"
        return volume.with_meta(warnings=list(volume.meta.get("warnings", [])) + [warning])
    if not isinstance(info, dict):
        return volume
    volume = with_scan_record(volume, info)
    extra: dict[str, Any] = {}
    for key, name in _SIDECAR_KEYS.items():
        value = _plausible_mm(info.get(key))
        if value is not None and name not in volume.meta:
            extra[name] = value
        elif key in info and value is None:
            extra.setdefault("warnings", list(volume.meta.get("warnings", []))).append(
                f"its sidecar's {key} ({str(info[key])[:30]}) is not a plausible size in mm; ignored")
    spacing_tag = extra.get("spacing_between_slices")
    if spacing_tag is not None:  # the file's grid places the slices: it wins over the sidecar, with a word
        from .grid import thick_axis

        axis = thick_axis(volume)
        step = float(volume.spacing[axis if axis is not None else int(np.argmax(volume.spacing))])
        if abs(spacing_tag - step) > 0.01 * step:
            warning = (f"the sidecar's SpacingBetweenSlices says {spacing_tag:g} mm but the image's slices are "
                       f"{step:.4g} mm apart; the image's spacing is used")
            extra["spacing_between_slices"] = step
            extra["warnings"] = extra.get("warnings", list(volume.meta.get("warnings", []))) + [warning]
    return volume.with_meta(**extra) if extra else volume


def validate_volume(volume: Volume, name: str = "volume") -> None:
    """Refuse geometry or voxel values that no method can use."""
    if not np.all(np.isfinite(volume.affine)):
        raise InputError(f"{name}: the affine contains NaN or Inf")
    if np.abs(volume.affine[:3, 3]).max() > headers.MAX_POSITION_MM:
        raise InputError(f"{name}: the origin {_fmt(volume.affine[:3, 3])} mm is absurd (more than "
                         f"{headers.MAX_POSITION_MM:g} mm from the scanner)")
    if np.abs(volume.affine[:3, :3]).max() > headers.MAX_SPACING_MM:
        raise InputError(f"{name}: the affine's voxel axes are absurdly long (more than "
                         f"{headers.MAX_SPACING_MM:g} mm per voxel)")
    spacing = volume.spacing
    if np.any(spacing <= 1e-6):
        raise InputError(f"{name}: voxel spacing {_fmt(spacing)} mm has a zero value")
    small = min(volume.shape)
    if small < 2:
        raise InputError(
            f"{name}: data of shape {volume.shape} is 2-D (a single slice); isovox needs a 3-D volume"
        )
    det = abs(np.linalg.det(volume.affine[:3, :3]))
    if det < 1e-6 * float(np.prod(spacing)):
        raise InputError(f"{name}: the affine is singular (its axes are not independent)")
    bad = int(np.count_nonzero(~np.isfinite(volume.data)))
    if bad:
        raise InputError(
            f"{name}: {bad} voxel{'s' if bad > 1 else ''} are NaN or Inf; clean the volume first"
        )


def _fmt(values: Iterable[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def _check_spacing_values(values: Sequence[float], name: str, what: str) -> None:
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise InputError(f"{name}: {what} {_fmt(values)} is not finite")
    if np.any(values < 0):
        raise InputError(f"{name}: {what} {_fmt(values)} is negative")
    if np.any(values == 0):
        raise InputError(f"{name}: {what} {_fmt(values)} has a zero value")


def _pick_frame(shape: tuple[int, ...], frame: int | None, name: str) -> int | None:
    """Decide which frame of a 4-D shape to use (None: data is 3-D)."""
    if len(shape) <= 3:
        if frame not in (None, 0):
            raise InputError(f"{name}: --frame {frame} given but the data is 3-D")
        return None
    n_frames = int(np.prod(shape[3:]))
    if len(shape) > 4 and n_frames != shape[3]:
        raise InputError(f"{name}: data of shape {shape} has more than 4 dimensions")
    if n_frames == 1:
        return 0
    if frame is None:
        raise InputError(
            f"{name}: 4-D data with {n_frames} volumes (shape {shape}); "
            f"choose one with --frame 0..{n_frames - 1}"
        )
    if not 0 <= frame < n_frames:
        raise InputError(f"{name}: --frame {frame} is out of range 0..{n_frames - 1}")
    return frame


def _read_nifti(path: Path, frame: int | None) -> Volume:
    import nibabel as nib

    try:
        with warnings.catch_warnings(), quiet_nibabel():
            warnings.simplefilter("ignore")
            img = nib.load(str(path))
            raw_header = _raw_nifti_header(path, type(img.header))
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(f"{path}: cannot read as NIfTI ({_reason(exc)})") from None
    if raw_header is not None:
        pixdim = np.asarray(raw_header["pixdim"][1:4], dtype=np.float64)
        ndim = int(raw_header["dim"][0])
        _check_spacing_values(pixdim[: max(1, min(ndim, 3))], str(path), "voxel size (pixdim)")
    shape = tuple(int(n) for n in img.shape)
    headers.check_nifti_size(path, shape, img.get_data_dtype().itemsize, float(img.header.get("vox_offset", 0)))
    if len(shape) < 3:
        raise InputError(f"{path}: data of shape {shape} is 2-D; isovox needs a 3-D volume")
    chosen = _pick_frame(shape, frame, str(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if chosen is None:
                data = np.asanyarray(img.dataobj)
            else:  # trailing singleton dimensions (x, y, z, t, 1...) are dropped
                index = (slice(None),) * 3 + (chosen,) + (0,) * (len(shape) - 4)
                data = np.asanyarray(img.dataobj[index])
    except Exception as exc:
        raise InputError(f"{path}: the file is truncated or corrupt ({_reason(exc)})") from None
    if np.iscomplexobj(data) or data.dtype.fields is not None:
        raise InputError(f"{path}: voxel type {img.get_data_dtype()} is not a scalar intensity")
    header = img.header
    meta: dict[str, Any] = {
        "source": str(path),
        "format": "nifti",
        "sform_code": int(header["sform_code"]),
        "qform_code": int(header["qform_code"]),
        "original_dtype": str(img.get_data_dtype()),
    }
    if frame is not None:
        meta["frame"] = chosen
    descrip = bytes(header["descrip"]).split(b"\0")[0].decode("latin-1", "replace").strip()
    if descrip:
        meta["description"] = descrip
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: Inf, refused by validate_volume
        voxels = np.asarray(data, dtype=np.float32)
    return Volume(voxels, img.affine, meta)


def _raw_nifti_header(path: Path, header_class: type) -> Any:
    """The header as stored, before nibabel silently repairs bad pixdims."""
    from nibabel.openers import ImageOpener

    if not hasattr(header_class, "from_fileobj"):
        return None
    with ImageOpener(str(path)) as fobj:
        return header_class.from_fileobj(fobj, check=False)


def _read_itk(path: Path, frame: int | None) -> Volume:
    import SimpleITK as sitk

    from .dicom import quiet_itk

    quiet_itk()
    if suffix_of(path) in (".mha", ".mhd"):
        headers.check_metaimage(path)
    else:
        headers.check_nrrd(path)
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        with native_stderr():
            reader.ReadImageInformation()
        size = tuple(reversed(reader.GetSize()))  # numpy order of the ITK size, for messages
        dim = reader.GetDimension()
        components = reader.GetNumberOfComponents()
    except Exception as exc:
        raise InputError(f"{path}: cannot read ({_reason(exc)})") from None
    if components != 1:
        raise InputError(f"{path}: {components} components per voxel; isovox needs scalar intensities")
    itk_shape = tuple(reversed(size))
    if dim < 3:
        raise InputError(f"{path}: data of shape {itk_shape} is 2-D; isovox needs a 3-D volume")
    chosen = _pick_frame(itk_shape, frame, str(path))
    try:
        with native_stderr() as said:
            image = reader.Execute()
    except Exception as exc:
        raise InputError(f"{path}: the file is truncated or corrupt ({_reason(exc)})") from None
    if re.search(r"fail|error|cannot|could not", said.text, re.I):  # ITK can return zeros after a failed read
        raise InputError(f"{path}: the file is truncated or corrupt ({said.text.splitlines()[-1].strip()[:120]})")
    if chosen is not None:
        extractor = sitk.ExtractImageFilter()
        extractor.SetSize(list(image.GetSize()[:3]) + [0])
        extractor.SetIndex([0, 0, 0, chosen])
        image = extractor.Execute(image)
    meta = {"source": str(path), "format": suffix_of(path).lstrip(".")}
    if frame is not None:
        meta["frame"] = chosen
    return sitk_to_volume(image, meta)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    lines = [ln.strip() for ln in text if ln.strip()]
    # ITK messages start with a source location; the useful part is the ERROR line.
    for line in lines:
        if "ERROR" in line or "error" in line.lower():
            return line[:200]
    return (lines[-1] if lines else type(exc).__name__)[:200]


# --------------------------------------------------------------------------- SimpleITK bridge


def sitk_to_volume(image: Any, meta: Mapping[str, Any] | None = None) -> Volume:
    """A SimpleITK image (LPS, (z, y, x) array) as a RAS :class:`Volume`."""
    import SimpleITK as sitk

    if image.GetDimension() != 3:
        raise InputError(f"expected a 3-D image, got {image.GetDimension()}-D")
    spacing = np.array(image.GetSpacing(), dtype=np.float64)
    direction = np.array(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    origin = np.array(image.GetOrigin(), dtype=np.float64)
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing
    lps[:3, 3] = origin
    data = sitk.GetArrayViewFromImage(image).transpose(2, 1, 0)
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: Inf, refused by validate_volume
        voxels = np.asarray(data, dtype=np.float32)
    return Volume(voxels, LPS_TO_RAS @ lps, meta or {})


def itk_geometry(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(spacing, 3x3 LPS direction, LPS origin) of a RAS affine; refuses shears."""
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-5):
        raise InputError("this affine has shear, which ITK formats cannot store; write NIfTI instead")
    return spacing, direction, lps[:3, 3]


def volume_to_sitk(volume: Volume) -> Any:
    """A RAS :class:`Volume` as a SimpleITK image with the same physical geometry."""
    import SimpleITK as sitk

    spacing, direction, origin = itk_geometry(volume.affine)
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.data.transpose(2, 1, 0)))
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(d) for d in direction.ravel()])
    image.SetOrigin([float(o) for o in origin])
    return image


# --------------------------------------------------------------------------- writing


def _companion_files(path: Path) -> list[Path]:
    """All files a write to ``path`` creates (MetaImage headers have a .raw beside them)."""
    if suffix_of(path) == ".mhd":
        return [path.with_suffix(".raw"), path]
    return [path]


def check_output_path(path: str | os.PathLike, protect: Iterable[str | os.PathLike] = ()) -> Path:
    """Refuse an output path that is unwritable, unsupported or an input file."""
    path = Path(path)
    if suffix_of(path) not in WRITABLE_SUFFIXES:
        raise InputError(
            f"{path}: unsupported output type; use .nii.gz, .nii, .nrrd, .mha or .mhd"
        )
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name for the output")
    protected = protected_paths(protect)
    for target in _companion_files(path) + [sidecar_path(path)]:
        if target.resolve() in protected:
            what = "an input" if target.resolve() in {Path(p).resolve() for p in protect} else \
                "a companion of an input (its sidecar or detached data file)"
            raise InputError(f"{target}: refusing to overwrite {what}; choose another output name")
    return path


def protected_paths(inputs: Iterable[str | os.PathLike]) -> set[Path]:
    """Every file a run must leave untouched: the inputs, the files of input folders, each input's JSON
    sidecar and the detached data files its header names (.nhdr, .mhd)."""
    protected: set[Path] = set()
    for item in map(Path, inputs):
        protected.add(item.resolve())
        if item.is_dir():  # a DICOM folder: protect the files inside
            protected.update(p.resolve() for p in item.rglob("*") if p.is_file())
        protected.add(sidecar_path(item).resolve())
        protected.update(p.resolve() for p in headers.detached_data_files(item))
    return protected


def check_output_folder(path: str | os.PathLike, protect: Iterable[str | os.PathLike] = ()) -> Path:
    """Refuse a DICOM output folder that exists with anything in it, or that is (inside) an input."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise InputError(f"{path}: exists and is not an empty folder; DICOM output needs a new folder")
    resolved = path.resolve()
    for item in protect:
        item = Path(item).resolve()
        if resolved == item or item in resolved.parents:
            raise InputError(f"{path}: inside an input; choose another output folder")
    side = sidecar_path(path)
    if side.resolve() in protected_paths(protect) or side.exists() and side.is_dir():
        raise InputError(f"{side}: refusing to overwrite an input or a companion of an input with the run's "
                         "provenance; choose another output folder")
    return path


def write_sidecar(path: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """The provenance JSON beside ``path`` (``OUT.json``), written atomically."""
    side = sidecar_path(path)
    staged = side.with_name(f".{side.name}.tmp")
    staged.write_text(json.dumps(record, indent=2, default=_json_default))
    os.replace(staged, side)
    return side


def write_volume(
    volume: Volume,
    path: str | os.PathLike,
    *,
    protect: Iterable[str | os.PathLike] = (),
    sidecar: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``volume`` atomically, keeping its affine exactly.

    The file (and its JSON ``sidecar``, if given) appears complete or not at all;
    a path in ``protect`` (the inputs) is never overwritten.
    """
    path = check_output_path(path, protect)
    staging = staging_folder(path, ".isovox-")
    try:
        staged = staging / path.name
        if suffix_of(path) in NIFTI_SUFFIXES:
            _write_nifti(volume, staged)
        else:
            _write_itk(volume, staged)
        moves = [(staging / t.name, t) for t in _companion_files(path)]
        if sidecar is not None:
            side = sidecar_path(path)
            (staging / side.name).write_text(json.dumps(sidecar, indent=2, default=_json_default))
            moves.append((staging / side.name, side))
        for src, dst in moves:
            os.replace(src, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def staging_folder(output: Path, prefix: str) -> Path:
    """A new hidden folder beside ``output`` (its parent made if needed) where the output is written
    before it is moved in place whole."""
    parent = output.parent if str(output.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{parent}: cannot create the output folder ({exc.strerror or exc})") from None
    try:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    except OSError as exc:
        raise InputError(f"{parent}: cannot write there ({exc.strerror or exc})") from None


def sidecar_path(path: str | os.PathLike) -> Path:
    """``out.nii.gz`` → ``out.json``: where provenance for an output lives."""
    path = Path(path)
    stem = path.name[: -len(suffix_of(path))] if suffix_of(path) else path.name
    return path.with_name(stem + ".json")


def file_sha256(path: str | os.PathLike, files: Sequence[str | os.PathLike] | None = None) -> str:
    """SHA-256 of a file, of ``files`` (a DICOM series) in name order, or of a folder's files in name order."""
    import hashlib

    digest = hashlib.sha256()
    path = Path(path)
    if files:
        files = sorted(Path(f) for f in files)
    else:
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for item in files:
        with open(item, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _write_nifti(volume: Volume, path: Path) -> None:
    import nibabel as nib

    affine = np.asarray(volume.affine, dtype=np.float64)
    img = nib.Nifti1Image(np.asarray(volume.data, dtype=np.float32), affine)
    header = img.header
    header.set_xyzt_units("mm", "sec")
    header.set_sform(affine, code=1)
    rotation = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    if np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-5):
        header.set_qform(affine, code=1)
    else:  # qform cannot hold a shear: leave it unset rather than inconsistent
        header.set_qform(None, code=0)
    description = str(volume.meta.get("description", "isovox"))[:79]
    header["descrip"] = description.encode("ascii", "replace")
    nib.save(img, str(path))


def _write_itk(volume: Volume, path: Path) -> None:
    import SimpleITK as sitk

    image = volume_to_sitk(volume)
    sitk.WriteImage(image, str(path), useCompression=suffix_of(path) in (".nrrd", ".mha"))
