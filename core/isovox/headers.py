"""Header checks before any native reader allocates or parses: what a malformed file gets instead of a crash.

ITK's MetaImage and NRRD readers trust their headers: ``NDims = -1`` crashes the process, a
``DimSize`` of 4 Gi voxels in a tiny file makes ITK allocate it before failing. These checks parse the
text header first and refuse, with one clear line, dimensions that are not 1-4 whole numbers of sane
size, voxel counts the file cannot hold (raw data shorter than the header promises, or a compressed
stream that would have to expand more than zlib ever can), non-finite or absurd spacings, origins and
directions, and detached data files that do not exist. NIfTI sizes are checked against the file the
same way before nibabel reads the voxels.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Optional, Sequence

from .errors import InputError

MAX_VOXELS = 2**31  # 8 GiB of float32: far beyond any MR volume, still refused before allocation
MAX_SPACING_MM = 1000.0  # no MR voxel is a metre wide
MAX_POSITION_MM = 1e6  # a kilometre from the scanner's origin
ZLIB_MAX_RATIO = 1032  # deflate cannot expand data more than this
HEADER_BYTES = 1 << 16  # a text header longer than this is not an image header

MET_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
             "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
             "MET_DOUBLE": 8}
NRRD_BYTES = {"int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4, "int64": 8, "uint64": 8,
              "float": 4, "double": 8}
NRRD_TYPES = {"signed char": "int8", "int8": "int8", "int8_t": "int8", "uchar": "uint8", "unsigned char": "uint8",
              "uint8": "uint8", "uint8_t": "uint8", "short": "int16", "short int": "int16", "signed short": "int16",
              "signed short int": "int16", "int16": "int16", "int16_t": "int16", "ushort": "uint16",
              "unsigned short": "uint16", "unsigned short int": "uint16", "uint16": "uint16", "uint16_t": "uint16",
              "int": "int32", "signed int": "int32", "int32": "int32", "int32_t": "int32", "uint": "uint32",
              "unsigned int": "uint32", "uint32": "uint32", "uint32_t": "uint32", "longlong": "int64",
              "long long": "int64", "long long int": "int64", "signed long long": "int64",
              "signed long long int": "int64", "int64": "int64", "int64_t": "int64", "ulonglong": "uint64",
              "unsigned long long": "uint64", "unsigned long long int": "uint64", "uint64": "uint64",
              "uint64_t": "uint64", "float": "float", "double": "double"}


def _numbers(text: str, name: str, field: str, count: Optional[int] = None) -> list[float]:
    """The whitespace-separated finite numbers of a header field (exactly ``count`` of them)."""
    try:
        values = [float(v) for v in text.replace(",", " ").replace("(", " ").replace(")", " ").split()]
    except ValueError:
        raise InputError(f"{name}: unreadable {field} in the header ({text[:40]!r})") from None
    if count is not None and len(values) < count:
        raise InputError(f"{name}: {field} has {len(values)} values, the header's dimensions need {count}")
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"{name}: {field} in the header is not finite")
    return values


def check_dimensions(sizes: Sequence[float], name: str) -> int:
    """Whole, positive sizes whose product is a volume isovox could hold; returns the voxel count."""
    if not 1 <= len(sizes) <= 4:
        raise InputError(f"{name}: the header declares {len(sizes)} dimensions; isovox reads 3-D or 4-D images")
    if any(s != int(s) or s < 1 for s in sizes):
        raise InputError(f"{name}: the header's image size {_shape(sizes)} is not whole positive numbers")
    count = math.prod(int(s) for s in sizes)
    if count > MAX_VOXELS:
        raise InputError(f"{name}: the header declares {_shape(sizes)} = {count:.3g} voxels, more than isovox "
                         f"reads ({MAX_VOXELS:.3g}); the header is corrupt or the image is not an MR volume")
    return count


def check_geometry(spacing: Sequence[float], origin: Sequence[float], directions: Sequence[float],
                   name: str) -> None:
    """Finite, positive, plausible spacing; an origin within a kilometre; direction entries of sane size."""
    if any(not math.isfinite(v) for v in [*spacing, *origin, *directions]):
        raise InputError(f"{name}: the header's geometry is not finite")
    if any(v <= 0 for v in spacing):
        raise InputError(f"{name}: voxel spacing {_shape(spacing, 'g')} mm in the header is not positive")
    if any(v > MAX_SPACING_MM for v in spacing):
        raise InputError(f"{name}: voxel spacing {_shape(spacing, 'g')} mm in the header is absurd "
                         f"(more than {MAX_SPACING_MM:g} mm)")
    if any(abs(v) > MAX_POSITION_MM for v in origin):
        raise InputError(f"{name}: the header's origin is more than {MAX_POSITION_MM:g} mm from the scanner")
    if any(abs(v) > MAX_SPACING_MM for v in directions):
        raise InputError(f"{name}: the header's axis directions hold absurd values")


def check_data_size(needed: int, available: int, compressed: bool, name: str, where: str) -> None:
    """Refuse a header that promises more voxel bytes than the data can hold."""
    if compressed:
        if needed > available * ZLIB_MAX_RATIO + 1024:
            raise InputError(f"{name}: the header promises {needed} bytes of voxels but {where} holds only "
                             f"{available} compressed bytes; the header is corrupt or the file truncated")
    elif needed > available:
        raise InputError(f"{name}: the header promises {needed} bytes of voxels but {where} holds {available}; "
                         "the file is truncated")


def check_voxel_bytes(path: Path, data_file: Optional[str], offset: int, needed: int, compressed: bool) -> None:
    """The voxels a header promises fit in its file after ``offset`` or in its detached ``data_file``."""
    if data_file is None:
        check_data_size(needed, os.path.getsize(path) - offset, compressed, str(path), "the file")
        return
    target = path.parent / data_file
    if not target.is_file():
        raise InputError(f"{path}: its data file {data_file} is missing")
    check_data_size(needed, target.stat().st_size, compressed, str(path), f"its data file {data_file}")


def _shape(values: Sequence[float], fmt: str = "d") -> str:
    return "x".join(format(int(v) if fmt == "d" and float(v).is_integer() else v, fmt if fmt != "d" or
                           float(v).is_integer() else "g") for v in values)


# --------------------------------------------------------------------------- MetaImage


def metaimage_fields(path: Path) -> tuple[dict[str, str], int]:
    """The ``Key = value`` fields of a MetaImage header and the byte offset where its data begin."""
    with open(path, "rb") as fh:
        head = fh.read(HEADER_BYTES)
    fields: dict[str, str] = {}
    offset = 0
    for raw in head.splitlines(keepends=True):
        offset += len(raw)
        line = raw.decode("latin-1").strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise InputError(f"{path}: not a MetaImage header (line {line[:40]!r})")
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            return fields, offset
    raise InputError(f"{path}: the MetaImage header has no ElementDataFile line (not MetaImage, or truncated)")


def check_metaimage(path: Path) -> None:
    """Every MetaImage field ITK would trust, checked against the file (see the module's docstring)."""
    name = str(path)
    fields, offset = metaimage_fields(path)
    ndims = _numbers(fields.get("NDims", ""), name, "NDims", 1)[0]
    if ndims != int(ndims) or not 1 <= ndims <= 4:
        raise InputError(f"{name}: NDims = {fields.get('NDims')} in the header; isovox reads 3-D or 4-D images")
    n = int(ndims)
    sizes = _numbers(fields.get("DimSize", ""), name, "DimSize", n)[:n]
    count = check_dimensions(sizes, name)
    spacing = _numbers(fields.get("ElementSpacing") or fields.get("ElementSize") or " ".join(["1"] * n), name,
                       "ElementSpacing", n)[:n]
    origin = _numbers(fields.get("Offset") or fields.get("Position") or fields.get("Origin") or "0", name, "Offset")
    directions = _numbers(fields.get("TransformMatrix") or fields.get("Rotation") or fields.get("Orientation")
                          or "1", name, "TransformMatrix")
    if spacing and any(v < 0 for v in spacing):
        raise InputError(f"{name}: voxel spacing {_shape(spacing, 'g')} is negative")
    if spacing and any(v == 0 for v in spacing):
        raise InputError(f"{name}: voxel spacing {_shape(spacing, 'g')} has a zero value")
    check_geometry(spacing, origin, directions, name)
    element = fields.get("ElementType", "")
    if element not in MET_BYTES:
        raise InputError(f"{name}: ElementType {element or '(missing)'} is not a MetaImage voxel type")
    channels = _numbers(fields.get("ElementNumberOfChannels", "1"), name, "ElementNumberOfChannels", 1)[0]
    if channels != int(channels) or not 1 <= channels <= 64:
        raise InputError(f"{name}: ElementNumberOfChannels = {fields['ElementNumberOfChannels']} is not plausible")
    needed = count * MET_BYTES[element] * int(channels)
    compressed = fields.get("CompressedData", "False").lower() in ("true", "1")
    data_file = fields["ElementDataFile"]
    if data_file.upper().startswith("LIST") or "%" in data_file:
        raise InputError(f"{name}: MetaImage with a list of data files is not supported; convert it to .mha")
    check_voxel_bytes(path, None if data_file == "LOCAL" else data_file, offset, needed, compressed)


# --------------------------------------------------------------------------- NRRD


def nrrd_fields(path: Path) -> tuple[dict[str, str], int]:
    """The ``field: value`` lines of a NRRD header and the byte offset where its data begin."""
    with open(path, "rb") as fh:
        head = fh.read(HEADER_BYTES)
    if not head.startswith(b"NRRD000"):
        raise InputError(f"{path}: not a NRRD file (no NRRD magic)")
    lines = head.split(b"\n")
    fields: dict[str, str] = {}
    offset = len(lines[0]) + 1
    for raw in lines[1:]:
        offset += len(raw) + 1
        line = raw.decode("latin-1").rstrip("\r")
        if not line:
            return fields, offset
        if line.startswith("#") or ":=" in line:
            continue
        key, sep, value = line.partition(": ")
        if not sep:
            raise InputError(f"{path}: unreadable NRRD header line {line[:40]!r}")
        fields[key.strip().lower()] = value.strip()
    if path.suffix.lower() == ".nhdr":
        return fields, len(head)
    raise InputError(f"{path}: the NRRD header does not end (truncated, or not NRRD)")


def check_nrrd(path: Path) -> None:
    """The NRRD fields ITK would trust, checked against the file (see the module's docstring)."""
    name = str(path)
    fields, offset = nrrd_fields(path)
    dimension = _numbers(fields.get("dimension", ""), name, "dimension", 1)[0]
    if dimension != int(dimension) or not 1 <= dimension <= 4:
        raise InputError(f"{name}: dimension: {fields.get('dimension')} in the header; isovox reads 3-D or 4-D "
                         "images")
    n = int(dimension)
    count = check_dimensions(_numbers(fields.get("sizes", ""), name, "sizes", n)[:n], name)
    kind = NRRD_TYPES.get(fields.get("type", "").lower())
    if kind is None:
        raise InputError(f"{name}: type: {fields.get('type') or '(missing)'} is not a NRRD voxel type")
    spacing = []  # "nan" marks a non-spatial axis
    for text in fields.get("spacings", "").split():
        if text.lower() != "nan":
            spacing += _numbers(text, name, "spacings")
    origin = _numbers(fields["space origin"], name, "space origin") if "space origin" in fields else [0.0]
    directions, step = [], []
    for vector in re.findall(r"\(([^)]*)\)", fields.get("space directions", "")):
        values = _numbers(vector, name, "space directions")
        directions += values
        step.append(math.sqrt(sum(c * c for c in values)))
    check_geometry(spacing + [s for s in step if s > 0], origin, directions, name)
    encoding = fields.get("encoding", "raw").lower()
    compressed = encoding in ("gzip", "gz", "bzip2", "bz2")
    if encoding not in ("raw", "gzip", "gz", "bzip2", "bz2", "ascii", "text", "txt"):
        raise InputError(f"{name}: NRRD encoding {encoding} is not supported")
    needed = count * NRRD_BYTES[kind] if encoding not in ("ascii", "text", "txt") else count
    data_file = fields.get("data file") or fields.get("datafile")
    if data_file and (data_file.upper().startswith("LIST") or len(data_file.split()) > 1):
        raise InputError(f"{name}: NRRD with a list of data files is not supported; convert it to .nrrd")
    check_voxel_bytes(path, data_file or None, offset, needed, compressed)


def detached_data_files(path: Path) -> list[Path]:
    """The data files a .mhd or .nhdr header points to (empty for attached data or unreadable headers)."""
    try:
        if path.suffix.lower() == ".mhd":
            data = metaimage_fields(path)[0].get("ElementDataFile", "LOCAL")
        elif path.suffix.lower() == ".nhdr":
            fields = nrrd_fields(path)[0]
            data = fields.get("data file") or fields.get("datafile") or ""
        else:
            return []
    except (InputError, OSError):
        return []
    if not data or data == "LOCAL" or data.upper().startswith("LIST") or len(data.split()) != 1:
        return []
    return [path.parent / data]


# --------------------------------------------------------------------------- NIfTI


def check_nifti_size(path: Path, shape: Sequence[int], bytes_per_voxel: int, offset: float) -> None:
    """The NIfTI header's image fits in the file (sizes first, before nibabel reads any voxel)."""
    check_dimensions([float(s) for s in shape[:4]], str(path))
    if len(shape) > 4 and math.prod(shape[4:]) > 1:
        raise InputError(f"{path}: data of shape {tuple(shape)} has more than 4 dimensions")
    needed = math.prod(int(s) for s in shape) * bytes_per_voxel
    compressed = str(path).lower().endswith(".gz")
    available = os.path.getsize(path) - (0 if compressed else int(offset))
    check_data_size(needed, available, compressed, str(path), "the file")
