"""Headless logic of the plugin: layers <-> volumes, runs, previews, QA maps, profiles, lesions.

Nothing here imports Qt or napari, so every function is tested without a viewer;
the widgets only collect inputs, call these in a worker and add the returned layers.
A "layer" here is anything with ``.data``, ``.name``, ``.metadata`` and a
``data_to_world(index)`` method (a napari Image layer, or a test double).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence

import numpy as np

from isovox import api, frontend, qa
from isovox.errors import InputError
from isovox.grid import Grid
from isovox.options import RunOptions
from isovox.progress import Task
from isovox.volume import Volume

LayerData = tuple[Any, dict[str, Any], str]
META_KEY = "isovox"  # layer.metadata[META_KEY]: the engine metadata of the volume (thickness, source...)
RAS_LABELS = ("R (mm)", "A (mm)", "S (mm)")


class ImageLike(Protocol):
    data: Any
    name: str
    metadata: dict

    def data_to_world(self, position: Sequence[float]) -> Any: ...


# --------------------------------------------------------------------------- layers <-> volumes


def layer_affine(layer: ImageLike) -> np.ndarray:
    """The 4x4 index-to-RAS matrix of a 3-D layer, read through napari's public ``data_to_world``.

    Composing scale/translate/rotate/affine ourselves would duplicate napari's rules;
    sampling the (affine) transform at the origin and the unit vectors gives it exactly.
    """
    origin = np.asarray(layer.data_to_world([0.0, 0.0, 0.0]), np.float64)
    affine = np.eye(4)
    for axis in range(3):
        unit = np.zeros(3)
        unit[axis] = 1.0
        affine[:3, axis] = np.asarray(layer.data_to_world(unit), np.float64) - origin
    affine[:3, 3] = origin
    return affine


def layer_to_volume(layer: ImageLike) -> Volume:
    """An engine Volume with the layer's voxels and geometry (and the metadata it was read with)."""
    data = np.asarray(layer.data)
    if data.ndim != 3:
        raise InputError(f"layer {layer.name!r} is {data.ndim}-D; isovox needs 3-D image layers")
    meta = dict((layer.metadata or {}).get(META_KEY, {}))
    meta.setdefault("source", layer.name)
    return Volume(data, layer_affine(layer), meta)


def display_order(affine: np.ndarray) -> tuple[int, int, int]:
    """For world axes R, A, S: the array axis that runs most nearly along each.

    napari slices a layer by matching array axis n to world axis n; a file stored in
    another axis order (coronal/sagittal scans, LPS-permuted DICOM) would give a
    singular 2-D view. Transposing to this order keeps every voxel's RAS position.
    """
    weights = np.abs(np.asarray(affine)[:3, :3] / np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))
    order = [-1, -1, -1]
    for _ in range(3):  # greedy: the strongest remaining (world, array) pair first
        world, axis = np.unravel_index(np.argmax(weights), weights.shape)
        order[int(world)] = int(axis)
        weights[world, :] = -1
        weights[:, axis] = -1
    return tuple(order)  # type: ignore[return-value]


def volume_layer_data(volume: Volume, name: str, **kwargs: Any) -> LayerData:
    """A napari LayerData tuple that keeps the full affine, so data_to_world gives RAS mm.

    The array is stored in RAS-nearest axis order (:func:`display_order`), so napari can
    show any file in 2-D; each voxel keeps exactly the RAS position the file gives it.
    """
    order = display_order(volume.affine)
    if order != (0, 1, 2):
        volume = volume.transposed(order).with_meta(file_axis_order=list(order))
    meta = {k: v for k, v in volume.meta.items() if _jsonable(v)}
    attrs: dict[str, Any] = {
        "name": name,
        "affine": np.asarray(volume.affine),
        "metadata": {META_KEY: meta},
        "colormap": "gray",
        "contrast_limits": frontend.display_limits(volume.data),
        "axis_labels": RAS_LABELS,
        "units": ("mm", "mm", "mm"),
    }
    attrs.update(kwargs)
    return np.asarray(volume.data), attrs, "image"


def diverging_layer_data(volume: Volume, name: str, limit: Optional[float] = None) -> LayerData:
    """A signed map in a diverging colormap centred at 0 (NaN = no data, shown transparent)."""
    limit = frontend.diverging_limit(volume.data) if limit is None or limit <= 0 else float(limit)
    return volume_layer_data(volume, name, colormap="bwr", contrast_limits=(-limit, limit))


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def suggest_roles(layers: Sequence[ImageLike]) -> tuple[list[ImageLike], Optional[ImageLike]]:
    """From the image layers' geometry: thick-slice ones are scans (max 3), the finest isotropic one the reference."""
    scans, isotropic = [], []
    for layer in layers:
        if np.asarray(layer.data).ndim != 3 or layer.metadata.get("isovox_role") in ("result", "map"):
            continue
        spacing = np.linalg.norm(layer_affine(layer)[:3, :3], axis=0)
        (scans if spacing.max() >= 1.2 * np.sort(spacing)[1] else isotropic).append((spacing.min(), layer))
    reference = min(isotropic, key=lambda item: item[0])[1] if isotropic else None
    return [layer for _, layer in scans[:3]], reference


# --------------------------------------------------------------------------- runs


@dataclass
class RunRequest:
    """Everything the run widget collects: engine volumes plus the chosen options."""

    scans: list[Volume]
    method: Optional[str] = None
    spacing: Optional[float | str] = None  # mm; or use scale
    scale: Optional[float] = None  # coarsest input spacing / target spacing (fractional allowed)
    reference: Optional[Volume] = None
    device: str = "auto"
    options: RunOptions = field(default_factory=RunOptions)

    def target_spacing(self) -> Optional[float | str]:
        if self.spacing not in (None, "", 0):
            return self.spacing
        if self.scale:
            return frontend.spacing_for_scale(self.scans, float(self.scale))
        return None


@dataclass
class RunOutput:
    volume: Volume
    provenance: dict[str, Any]
    name: str


def make_task(progress: Optional[Callable[[float, str], None]], cancelled: Optional[Callable[[], bool]]) -> Task:
    return Task(callback=progress, cancelled=cancelled)


def plan_run(request: RunRequest, grid: Optional[Grid] = None) -> api.Plan:
    return api.plan(request.scans, request.method, spacing=request.target_spacing(), reference=request.reference,
                    device=request.device, grid=grid, options=request.options)


def run_super_resolution(request: RunRequest, task: Optional[Task] = None) -> RunOutput:
    """Super-resolve the whole volume (raises CancelledError when the task is cancelled)."""
    run = plan_run(request)
    result = api.execute(run, task)
    name = f"isovox {run.method.name} {run.grid.spacing.min():.3g}mm"
    provenance = frontend.record_inputs(result.provenance, [scan.meta.get("path") for scan in request.scans],
                                        [scan.meta for scan in request.scans])
    return RunOutput(result.volume.with_meta(provenance=provenance), provenance, name)


def run_preview(request: RunRequest, centre_ras: Sequence[float], half_width_mm: float = 4.0,
                normal_ras: Optional[Sequence[float]] = None, task: Optional[Task] = None) -> RunOutput:
    """Super-resolve only a slab around ``centre_ras`` across the view's ``normal_ras`` (seconds, not minutes;
    see :func:`isovox.frontend.preview_plan`)."""
    run = frontend.preview_plan(request.scans, centre_ras, half_width_mm, normal_ras, request.method,
                                request.target_spacing(), request.reference, request.device, request.options)
    result = api.execute(run, task)
    provenance = dict(result.provenance, preview=True)
    return RunOutput(result.volume.with_meta(provenance=provenance), provenance,
                     f"isovox preview {run.method.name}")


# --------------------------------------------------------------------------- QA maps


def fused_input(scans: Sequence[Volume], result: Volume, task: Optional[Task] = None) -> Volume:
    """CubeAvg of the scans on the result's grid: the 'fused input' to compare against."""
    from isovox.fusion import fuse

    fused = fuse(list(scans), grid=Grid.of(result), task=task).volume
    return Volume(fused.data, fused.affine, {"source": "CubeAvg", "description": "isovox fused input (CubeAvg)"})


@dataclass
class QAMaps:
    """The compare view's layers, all on the result grid."""

    fused: Volume
    added: Volume  # result - CubeAvg: what the method added
    error: Optional[Volume]  # result - reference
    consistency: list[Volume]  # per scan: re-acquired result - scan
    acquired_distance: Volume  # mm to the nearest acquired slice centre


def qa_maps(result: Volume, scans: Sequence[Volume], reference: Optional[Volume] = None,
            task: Optional[Task] = None) -> QAMaps:
    """Every residual/consistency/distance map of the issue, computed headlessly."""
    task = task or Task()
    steps = task.stages([3.0, 1.0, 2.0 * len(scans), 1.0])
    fused = fused_input(scans, result, steps[0])
    added = qa.difference_map(result, fused)
    steps[1].update(0.0, "residual maps")
    error = qa.difference_map(result, reference) if reference is not None else None
    consistency = qa.consistency_maps(result, scans, result.meta.get("provenance"), steps[2])
    steps[-1].update(0.0, "distance to acquired slices")
    distance = qa.acquired_distance_map(Grid.of(result), list(scans))
    task.update(1.0, "maps ready")
    return QAMaps(fused, added, error, consistency,
                  Volume(distance, result.affine, {"source": "acquired distance"}))


MAP_NAMES = {"fused": "fused input (CubeAvg)", "added": "result - CubeAvg", "error": "result - reference",
             "consistency": "consistency scan {}", "distance": "distance to acquired slice (mm)"}


def qa_layer_data(maps: QAMaps, result_name: str) -> list[LayerData]:
    """The maps as napari layers (diverging maps centred at 0), tagged with the result they belong to."""
    tag = {"isovox_role": "map", "isovox_result": result_name}
    layers = [volume_layer_data(maps.fused, MAP_NAMES["fused"])]
    layers[0][1]["metadata"].update(tag)
    signed = [(maps.added, MAP_NAMES["added"])]
    if maps.error is not None:
        signed.append((maps.error, MAP_NAMES["error"]))
    signed += [(m, MAP_NAMES["consistency"].format(i + 1)) for i, m in enumerate(maps.consistency)]
    for volume, name in signed:
        data = diverging_layer_data(volume, name)
        data[1]["metadata"].update(tag)
        layers.append(data)
    finite = maps.acquired_distance.data[np.isfinite(maps.acquired_distance.data)]
    top = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    dist = volume_layer_data(maps.acquired_distance, MAP_NAMES["distance"],
                             colormap="viridis", contrast_limits=(0.0, top))
    dist[1]["metadata"].update(tag)
    layers.append(dist)
    return layers


# --------------------------------------------------------------------------- profiles


def profile_along(volumes: Sequence[Volume], start_ras: Sequence[float], end_ras: Sequence[float],
                  samples: Optional[int] = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Distances in mm and each volume's values along a RAS segment (NaN outside a volume)."""
    return qa.line_profile(list(volumes), np.asarray(start_ras, float), np.asarray(end_ras, float), samples)


def line_endpoints_ras(line_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last vertex of a shapes-layer line (world coordinates, i.e. RAS mm here)."""
    points = np.asarray(line_world, float)
    if points.ndim != 2 or points.shape[0] < 2 or points.shape[1] < 3:
        raise InputError("draw a line with two ends in a 3-D view")
    return points[0, -3:], points[-1, -3:]


# --------------------------------------------------------------------------- lesions


def lesion_records(points_world: np.ndarray, labels: Optional[Sequence[str]] = None,
                   values: Optional[dict[str, Sequence[float]]] = None) -> list[dict[str, Any]]:
    """One record per marked lesion: label and RAS position in mm (plus sampled values)."""
    points = np.asarray(points_world, float).reshape(len(points_world), -1) if len(points_world) else np.zeros((0, 3))
    records = []
    for idx, point in enumerate(points):
        record: dict[str, Any] = {
            "id": idx + 1,
            "label": (labels[idx] if labels is not None and idx < len(labels) and labels[idx] else f"lesion {idx + 1}"),
            "R_mm": round(float(point[-3]), 3), "A_mm": round(float(point[-2]), 3), "S_mm": round(float(point[-1]), 3),
        }
        for name, vals in (values or {}).items():
            record[name] = None if not np.isfinite(vals[idx]) else round(float(vals[idx]), 4)
        records.append(record)
    return records


def sample_at(volume: Volume, points_ras: np.ndarray) -> np.ndarray:
    """Linear-interpolated values of ``volume`` at RAS points (NaN outside its field of view)."""
    from scipy import ndimage

    points = np.atleast_2d(np.asarray(points_ras, float))
    if points.size == 0:
        return np.zeros(0)
    ijk = volume.world_to_index(points).T
    values = ndimage.map_coordinates(np.asarray(volume.data, np.float64), ijk, order=1, mode="nearest")
    outside = np.zeros(points.shape[0], bool)
    for p in range(3):
        outside |= (ijk[p] < -0.5) | (ijk[p] > volume.shape[p] - 0.5)
    values[outside] = np.nan
    return values


def export_lesions(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write the marks as CSV or JSON (by suffix) with their RAS positions in mm."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps({"coordinate_system": "RAS", "units": "mm", "lesions": list(records)}, indent=2))
        return path
    if path.suffix.lower() != ".csv":
        raise InputError(f"{path.name}: export lesions as .csv or .json")
    keys: list[str] = []
    for record in records:
        keys += [k for k in record if k not in keys]
    keys = keys or ["id", "label", "R_mm", "A_mm", "S_mm"]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(records)
    return path


def lesion_crops(volumes: dict[str, Volume], centre_ras: Sequence[float], half_size_mm: float = 10.0,
                 pixel_mm: Optional[float] = None) -> dict[str, np.ndarray]:
    """Axial, coronal and sagittal crops around a lesion for every layer, side by side (2-D arrays).

    Each panel is resampled on the same RAS-aligned plane so all layers line up
    regardless of their own grids (``isovox.figures.plane_image``).
    """
    from isovox.figures import plane_image

    if not volumes:
        return {}
    pixel = pixel_mm or min(float(v.spacing.min()) for v in volumes.values())
    centre = np.asarray(centre_ras, float)
    panels = {}
    for name, volume in volumes.items():
        rows = [plane_image(volume, centre, plane, (2 * half_size_mm, 2 * half_size_mm), pixel, 1)
                for plane in ("axial", "coronal", "sagittal")]
        panels[name] = np.concatenate(rows, axis=1)
    return panels
