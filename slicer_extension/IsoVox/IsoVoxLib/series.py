"""DICOM in and out for the Slicer module: list and load the series of a folder, save a result as a
derived DICOM series.

Slicer's own DICOM browser loads series too, but a scan loaded here keeps what the engine read from
its headers (slice thickness, missing or unevenly spaced slices, the source files) in a node attribute,
so a run in Slicer sees the acquisition exactly as ``isovox run FOLDER --series N`` does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from isovox import __version__, frontend
from isovox.dicom import find_series
from isovox.dicom_out import write_series
from isovox.errors import InputError
from isovox.io import check_output_folder, read_volume, write_sidecar
from isovox.volume import Volume

from .convert import SCAN_ATTRIBUTE, add_volume_node, volume_from_node
from .logic import get_provenance

KEPT = ("source", "path", "format", "series_uid", "series_number", "series_description", "slice_thickness",
        "spacing_between_slices", "acquired_slices", "missing_slices", "slice_positions", "dicom", "source_files",
        "warnings", "contrast", "echo_time", "repetition_time", "inversion_time")


def list_series(folder: str | Path) -> list[dict[str, Any]]:
    """Number, UID, description, orientation, thickness, spacing and slice count of every series under
    ``folder`` (recursively, also through a DICOMDIR)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    found = find_series(folder)
    if not found:
        raise InputError(f"{folder}: a folder with no DICOM series in it")
    return [series.summary() for series in found]


def series_label(summary: dict[str, Any]) -> str:
    """One line per series for a chooser: '3  FSE PD AXIAL OBL  axial  20 slices  5 mm / 7 mm'."""
    parts = [str(summary.get("number", "?")), summary.get("description") or summary["uid"],
             str(summary.get("orientation", "")), f"{summary.get('slices', '?')} slices"]
    if summary.get("slice_thickness_mm") is not None:
        parts.append(f"{summary['slice_thickness_mm']:g} mm thick, {summary.get('slice_spacing_mm', 0):g} mm apart")
    if summary.get("problem"):
        parts.append(f"({summary['problem']})")
    return "  ".join(p for p in parts if p)


def load_series(scene: Any, folder: str | Path, keys: Sequence[str]) -> list[Any]:
    """Load the series ``keys`` (numbers or UIDs) of ``folder`` as scalar volume nodes of ``scene``; each
    node keeps the engine's record of its acquisition (see :func:`.convert.scan_meta`)."""
    if not keys:
        raise InputError("choose at least one series")
    folder = Path(folder)
    volumes = [read_volume(folder, series=str(key)).with_meta(path=str(folder.resolve())) for key in keys]
    nodes = []
    for volume in volumes:
        name = f"{volume.meta.get('series_number', '')} {volume.meta.get('series_description', '')}".strip()
        node = add_volume_node(scene, volume, name or folder.name)
        node.SetAttribute(SCAN_ATTRIBUTE, json.dumps(_record(volume)))
        nodes.append(node)
    return nodes


def _record(volume: Volume) -> dict[str, Any]:
    record = {k: volume.meta[k] for k in KEPT if k in volume.meta}
    record["shape"] = list(volume.shape)
    return json.loads(json.dumps(record, default=str))


def save_dicom(node: Any, folder: str | Path, protect: Sequence[str] = ()) -> Path:
    """Write the result ``node`` as a new DERIVED MR series into the new folder ``folder``, in the study of
    the DICOM scans it came from (placeholders, and a warning in the sidecar, for other inputs), with the
    provenance sidecar ``FOLDER.json``; returns the folder."""
    if node is None or node.GetImageData() is None:
        raise InputError("there is no result to save")
    folder = check_output_folder(folder, protect)
    provenance = get_provenance(node) or {}
    volume = volume_from_node(node)
    sources = frontend.dicom_sources(provenance)
    description = next((e.get("series_description") for e in provenance.get("inputs", [])
                        if e.get("series_description")), "")
    written, notes = write_series(volume, folder, str(provenance.get("method") or "isovox"), sources,
                                  description, __version__)
    write_sidecar(written, dict(provenance, saved={"path": str(written.resolve()), "node": node.GetName()},
                                dicom_notes=notes))
    node.SetAttribute("isovox.saved_path", str(written))
    return written
