"""The IsoVox logic: MRML volume nodes in, a super-resolved MRML volume node out.

A thin adapter over :mod:`isovox.api`: it converts nodes to engine volumes, lets the
engine plan and execute, and writes the result (with provenance in node attributes)
into a node of the inputs' scene. ``process`` runs synchronously in this process; the
module's widget runs the same job in a background process (see :mod:`.process`).
"""

from __future__ import annotations

import json
from typing import Any, Optional, Sequence

import numpy as np

from isovox import api, frontend, info
from isovox.errors import InputError
from isovox.grid import Grid
from isovox.options import RunOptions
from isovox.progress import Task
from isovox.volume import Volume

from .convert import add_volume_node, node_label, scan_meta, volume_from_node, world_ijk_to_ras

PROVENANCE_ATTRIBUTE = "isovox.provenance"
METHOD_ATTRIBUTE = "isovox.method"
INPUTS_ATTRIBUTE = "isovox.inputs"


def output_name(input_nodes: Sequence[Any], method: str, suffix: str = "") -> str:
    """Name a result after its inputs and method, e.g. ``T2ax+T2cor isovox-cubeavg``."""
    names = "+".join(node_label(n) for n in input_nodes)
    return f"{names} isovox-{method}{suffix}"


def as_node_list(input_volumes: Any) -> list[Any]:
    """Accept one node or a sequence of nodes (None entries, e.g. empty selectors, dropped)."""
    if input_volumes is None:
        return []
    if hasattr(input_volumes, "IsA"):
        return [input_volumes]
    return [n for n in input_volumes if n is not None]


class IsoVoxLogic:
    """Super-resolve MRML volumes with the isovox engine (no Qt needed)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple, Volume]] = {}

    # ------------------------------------------------------------------ conversion
    def volume(self, node: Any) -> Volume:
        """The node as an engine volume, cached until the node's voxels or geometry change."""
        if node is None:
            raise InputError("select a scalar volume")
        image = node.GetImageData()
        if image is None:
            return volume_from_node(node)  # raises the clear "no voxels" message
        stamp = (node.GetMTime(), image.GetMTime(), tuple(world_ijk_to_ras(node).ravel()))  # any transform above it too
        key = node.GetID() or str(id(node))
        cached = self._cache.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        volume = volume_from_node(node)
        self._cache[key] = (stamp, volume)
        return volume

    def clear_cache(self) -> None:
        """Drop the converted copies (e.g. when the scene closes), freeing their memory."""
        self._cache.clear()

    def scans(self, input_volumes: Sequence[Any]) -> list[Volume]:
        nodes = as_node_list(input_volumes)
        if not nodes:
            raise InputError("select at least one input volume")
        if len(nodes) > 3:
            raise InputError(f"isovox fuses 1 to 3 scans, got {len(nodes)}")
        scene = nodes[0].GetScene()
        if any(n.GetScene() is not scene for n in nodes):
            raise InputError("the input volumes belong to different scenes")
        if len({n.GetID() for n in nodes}) != len(nodes):
            raise InputError("the same volume is selected twice")
        return [self.volume(n) for n in nodes]

    # ------------------------------------------------------------------ planning
    def plan(self, input_volumes: Sequence[Any], method: Optional[str] = "cubeavg", spacing: Any = None,
             reference: Any = None, device: str = "cpu", grid: Optional[Grid] = None, **options: Any) -> api.Plan:
        """Validate a run (raises InputError/ResourceError with a message for the user)."""
        scans = self.scans(input_volumes)
        ref = self.volume(reference) if reference is not None else None
        return api.plan(scans, method or None, spacing=spacing, reference=ref, device=device, grid=grid, **options)

    def spacing_for_scale(self, input_volumes: Sequence[Any], scale: float) -> float:
        """Target spacing that makes the thickest input slices ``scale`` times finer (the engine's Plan.scale)."""
        return frontend.spacing_for_scale(self.scans(input_volumes), scale)

    def preflight(self, input_volumes: Sequence[Any]) -> dict[str, Any]:
        """The engine's pre-flight report (geometry facts and warnings) for the selected scans."""
        return info.preflight(self.scans(input_volumes))

    def warnings(self, input_volumes: Sequence[Any], method: Optional[str] = None, spacing: Any = None,
                 reference: Any = None, device: str = "cpu") -> list[str]:
        """Pre-flight and plan warnings; a refusal becomes the single warning."""
        try:
            found = list(self.preflight(input_volumes)["warnings"])
            found += self.plan(input_volumes, method, spacing, reference, device).warnings
        except InputError as error:
            return [str(error)]
        return found

    # ------------------------------------------------------------------ running
    def process(self, inputVolumes: Sequence[Any], method: Optional[str] = "cubeavg", spacing: Any = None,
                reference: Any = None, outputVolume: Any = None, device: str = "cpu",
                task: Optional[Task] = None, **options: Any) -> Any:
        """Super-resolve ``inputVolumes`` into ``outputVolume`` (new node if None); returns the node."""
        run = self.plan(inputVolumes, method, spacing, reference, device, **options)
        return self._execute(run, inputVolumes, reference, outputVolume, task, suffix="")

    def preview(self, inputVolumes: Sequence[Any], centre_ras: Sequence[float], half_width_mm: float = 5.0,
                normal_ras: Optional[Sequence[float]] = None, method: Optional[str] = "cubeavg",
                spacing: Any = None, reference: Any = None, outputVolume: Any = None, device: str = "cpu",
                task: Optional[Task] = None, **options: Any) -> Any:
        """A slab of the full result around ``centre_ras``, across the grid axis nearest ``normal_ras``.

        Previews skip ``adapt`` (minutes of fine-tuning): they show the shipped network."""
        scans = self.scans(inputVolumes)
        ref = self.volume(reference) if reference is not None else None
        chosen = options.pop("options", None)
        run = frontend.preview_plan(scans, centre_ras, half_width_mm, normal_ras, method or None, spacing, ref, device,
                                    RunOptions.of(chosen, **options))
        return self._execute(run, inputVolumes, reference, outputVolume, task, suffix=" preview")

    def _execute(self, run: api.Plan, inputs: Sequence[Any], reference: Any, output: Any,
                 task: Optional[Task], suffix: str) -> Any:
        nodes = as_node_list(inputs)
        result = api.execute(run, task)
        scene = nodes[0].GetScene()
        node = add_volume_node(scene, result.volume, output_name(nodes, run.method.name, suffix), output)
        provenance = dict(result.provenance)
        provenance["inputs"] = [dict(entry, node=node_label(n)) for entry, n in zip(provenance["inputs"], nodes)]
        provenance = record_sources(provenance, nodes)
        if reference is not None:
            provenance["reference"] = node_label(reference)
        set_provenance(node, provenance)
        return node


def record_sources(provenance: dict[str, Any], nodes: Sequence[Any]) -> dict[str, Any]:
    """The provenance with the files each input node was read from (path, SHA-256, DICOM series),
    where the engine recorded them when loading it."""
    metas = [scan_meta(n) for n in nodes]
    return frontend.record_inputs(provenance, [meta.get("path") for meta in metas], metas)


def set_provenance(node: Any, provenance: dict[str, Any]) -> None:
    """Record how a node was made in its attributes (saved with the scene and in the sidecar)."""
    node.SetAttribute(PROVENANCE_ATTRIBUTE, json.dumps(provenance, default=_plain))
    node.SetAttribute(METHOD_ATTRIBUTE, str(provenance.get("method", "")))
    node.SetAttribute(INPUTS_ATTRIBUTE, ",".join(str(e.get("node") or e.get("source")) for e in provenance.get("inputs", [])))


def get_provenance(node: Any) -> Optional[dict[str, Any]]:
    text = node.GetAttribute(PROVENANCE_ATTRIBUTE) if node is not None else None
    return json.loads(text) if text else None


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
