"""Save a result through Slicer's own storage node, with its provenance in a JSON sidecar.

The file is written by vtkMRMLVolumeArchetypeStorageNode (NRRD or NIfTI, as Save
Data would), so the saved geometry is Slicer's; the sidecar next to it
(``out.nrrd`` -> ``out.json``) is the engine's provenance plus where the file went.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from isovox.errors import InputError
from isovox.io import check_output_path, file_sha256, sidecar_path

from .logic import get_provenance

SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


def save_volume(node: Any, path: str | Path, protect: tuple[str, ...] = ()) -> Path:
    """Write ``node`` to ``path`` with its storage node and the provenance sidecar; returns the path."""
    if node is None or node.GetImageData() is None:
        raise InputError("there is no result to save")
    path = Path(path)
    if not str(path).lower().endswith(SUFFIXES):
        raise InputError(f"save as one of {', '.join(SUFFIXES)}, not {path.name!r}")
    out = check_output_path(path, protect)
    scene = node.GetScene()
    storage = node.GetStorageNode()
    if storage is None or not storage.IsA("vtkMRMLVolumeArchetypeStorageNode"):
        storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
        node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(out))
    storage.SetUseCompression(True)
    if not storage.WriteData(node):
        raise InputError(f"Slicer could not write {out}")
    provenance = get_provenance(node) or {}
    provenance["saved"] = {"path": str(out.resolve()), "sha256": file_sha256(out), "node": node.GetName()}
    sidecar = sidecar_path(out)
    sidecar.write_text(json.dumps(provenance, indent=2))
    node.SetAttribute("isovox.saved_path", str(out))
    return out


def input_files(nodes: Any) -> tuple[str, ...]:
    """Files the inputs were loaded from: a save must never overwrite them."""
    paths = []
    for node in nodes:
        storage = node.GetStorageNode() if node is not None else None
        if storage is not None and storage.GetFileName():
            paths.append(storage.GetFileName())
    return tuple(paths)
