"""Reader and writer contributions: files through the isovox engine, geometry intact.

Layers carry the volume's full 4x4 affine, so ``layer.data_to_world(ijk)`` is the
RAS position in mm that the file states. The writer writes the layer's voxels with
that same affine plus a JSON sidecar with provenance.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from isovox import frontend
from isovox.io import ITK_SUFFIXES, NIFTI_SUFFIXES, WRITABLE_SUFFIXES, is_dicom_file, suffix_of

from ._core import META_KEY, LayerData, volume_layer_data

READABLE = NIFTI_SUFFIXES + ITK_SUFFIXES + (".dcm",)


def _readable(path: str) -> bool:
    p = Path(path)
    if p.is_dir():  # a folder with DICOM anywhere under it (a PACS export, a DICOMDIR tree)
        for root, _, names in os.walk(p):
            for name in names:
                if name.lower().endswith(".dcm") or name.upper() == "DICOMDIR" or \
                        ("." not in name and is_dicom_file(Path(root) / name)):
                    return True
        return False
    return suffix_of(p) in READABLE


def get_reader(path: str | list[str]) -> Optional[Callable[[Any], list[LayerData]]]:
    """napari reader hook: a reader function for NIfTI/NRRD/MHA files and DICOM folders, else None."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or not all(_readable(str(p)) for p in paths):
        return None
    return read_layers


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Read each path with the engine into image layers with their affines: one layer per file, and
    one per DICOM series in a folder (a PACS export holds several)."""
    from isovox.errors import IsovoxError

    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers = []
    for item in paths:
        try:
            found = frontend.read_all(item)
        except IsovoxError as error:  # a malformed file: one notification, no traceback
            from napari.utils.notifications import show_error

            show_error(frontend.user_message(error))
            continue
        layers.extend(volume_layer_data(volume, name) for volume, name in found)
    return layers or [(None,)]  # napari's "read, nothing to add" (the errors were shown)


layer_name = frontend.display_name  # the name of a file's layer (``isovox view`` uses it too)


def write_image(path: str, data: Any, attributes: dict) -> list[str]:
    """napari single-layer writer: the voxels with the layer's affine, plus a provenance sidecar."""
    from isovox.io import write_volume
    from isovox.volume import Volume

    if suffix_of(path) not in WRITABLE_SUFFIXES:
        path = path + ".nii.gz"
    affine = np.asarray(attributes.get("affine", np.eye(4)))
    affine = _full_affine(affine, attributes)
    volume = Volume(np.asarray(data), affine, {"description": attributes.get("name", "isovox")})
    write_volume(volume, path, sidecar=sidecar_for(attributes))
    return [path]


def _full_affine(affine: Any, attributes: dict) -> np.ndarray:
    """Compose napari's scale/translate/rotate/shear with the layer affine: data index -> world (RAS mm)."""
    from napari.utils.transforms import CompositeAffine

    affine = np.array(affine.affine_matrix if hasattr(affine, "affine_matrix") else affine, float)
    if affine.shape != (4, 4):
        raise ValueError("isovox writes 3-D image layers only")
    inner = CompositeAffine(
        scale=attributes.get("scale", (1, 1, 1)), translate=attributes.get("translate", (0, 0, 0)),
        rotate=attributes.get("rotate"), shear=attributes.get("shear"), ndim=3,
    )
    return affine @ inner.affine_matrix


def sidecar_for(attributes: dict) -> dict[str, Any]:
    """Provenance for the sidecar: the engine's run record when the layer is an isovox result."""
    from isovox import __version__

    meta = dict((attributes.get("metadata") or {}).get(META_KEY, {}))
    side: dict[str, Any] = {"isovox_version": __version__, "layer": attributes.get("name"),
                            "written_by": "napari-isovox"}
    if "provenance" in meta:
        side["provenance"] = meta["provenance"]
    for key in ("source", "path", "description"):
        if key in meta:
            side[key] = meta[key]
    return side


def write_dicom(path: str, data: Any, attributes: dict) -> list[str]:
    """napari DICOM writer: the layer as one new DERIVED MR series in the folder ``path`` (without ".dcm"),
    in the study of the DICOM scans it was computed from, plus the provenance sidecar ``FOLDER.json``."""
    from isovox import __version__
    from isovox.dicom_out import write_series
    from isovox.io import check_output_folder, write_sidecar
    from isovox.volume import Volume

    folder = Path(path[: -len(".dcm")] if path.lower().endswith(".dcm") else path)
    check_output_folder(folder)
    affine = _full_affine(np.asarray(attributes.get("affine", np.eye(4))), attributes)
    meta = dict((attributes.get("metadata") or {}).get(META_KEY, {}))
    provenance = meta.get("provenance") or {}
    volume = Volume(np.asarray(data, dtype=np.float32), affine, {})
    method = str(provenance.get("method") or attributes.get("name") or "isovox")
    description = str(meta.get("series_description") or attributes.get("name") or "")
    sources = frontend.dicom_sources(provenance) or ([meta["dicom"]["first_file"]] if "dicom" in meta else [])
    written, notes = write_series(volume, folder, method, sources, description, __version__)
    if notes:
        import warnings

        for note in notes:
            warnings.warn(note, stacklevel=2)
    write_sidecar(written, dict(sidecar_for(attributes), dicom_notes=notes))
    return [str(written)]


def write_many(path: str, layers: Sequence[LayerData]) -> list[str]:
    """napari multi-layer writer: a folder with one file (+ sidecar) per image layer."""
    folder = Path(path)
    if suffix_of(folder):
        folder = folder.with_name(folder.name[: -len(suffix_of(folder))])
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for data, attributes, kind in layers:
        if kind != "image":
            continue
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(attributes.get("name", "layer")))
        written += write_image(str(folder / f"{name}.nii.gz"), data, attributes)
    return written
