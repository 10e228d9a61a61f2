"""What every learned method shares: its registry entry, precision per device, the validated
range, the anatomy box, the adaptation hook, the result with its metadata, and the runner of
the HR-space networks (isoSRN, ReCNN, the CT-guided SRNet).

A learned method is a file in :mod:`isovox.methods` that builds its
:class:`~isovox.registry.MethodSpec` with :func:`learned_spec`; its network declares itself
in :mod:`isovox.nets`; its weights and card live in a model folder.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from .errors import InputError
from .features import hr_inputs
from .fusion import FusionResult
from .grid import Grid
from .models import has_model, load_model, model_card
from .nets import spec as network_spec
from .progress import Task
from .registry import MethodRequest, MethodSpec
from .tiling import default_precision, run_tiled
from .volume import Volume

SIGNAL_FRACTION = 0.05  # of the robust maximum, after smoothing: above it is anatomy, below it air
ADAPT_PROGRESS_PER_SECOND = 0.1  # progress weight of one second of adaptation (fusion weighs 1)


def learned_spec(name: str, description: str, run: Callable[[MethodRequest], Volume], **fields: Any) -> MethodSpec:
    """The registry entry of a method whose model folder is ``models/<name>/``."""
    fields.setdefault("consistency", True)
    return MethodSpec(name=name, description=description, run=run, needs_weights=True,
                      available=lambda: has_model(name), model_card=lambda: _card_dict(name),
                      advise=advice(name), **fields)


def _card_dict(name: str) -> Optional[dict[str, Any]]:
    card = model_card(name)
    return card.to_dict() if card is not None else None


def advice(name: str) -> Callable[[Optional[float], int], str]:
    """Why a run of model ``name`` gets the baseline instead (see ModelCard.outside_validated_range)."""

    def advise(scale: Optional[float], n_scans: int) -> str:
        card = model_card(name) if has_model(name) else None
        return card.outside_validated_range(scale, n_scans) if card else ""

    return advise


def precision(request: MethodRequest) -> str:
    """The run's network precision: asked for, else the device's default."""
    return request.options.precision or default_precision(request.device)


def signal_box(fused: np.ndarray, margin: int = 3) -> tuple[slice, slice, slice]:
    """The bounding box of the anatomy in a fused volume divided by its robust maximum, grown by
    ``margin`` voxels.

    HR-space networks compute their output only inside it (reading context from the whole
    volume, so there it equals whole-volume inference); the air around a head, often half of a
    padded field of view, keeps the fused input. Smoothing first keeps background noise from
    spreading the box.
    """
    from scipy import ndimage

    smooth = ndimage.uniform_filter(np.asarray(fused, np.float32), size=5, mode="nearest")
    where = np.argwhere(smooth > SIGNAL_FRACTION)
    if not len(where):
        return (slice(None),) * 3
    lo = np.maximum(where.min(0) - margin, 0)
    hi = np.minimum(where.max(0) + margin + 1, fused.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))  # type: ignore[return-value]


# --------------------------------------------------------------------------- adaptation


def adaptation_weight(request: MethodRequest) -> float:
    """Progress weight of the adaptation stage (0 without --adapt)."""
    return request.options.seconds_to_adapt * ADAPT_PROGRESS_PER_SECOND


def adapted_network(module, kind: str, request: MethodRequest, task: Task):
    """(``module`` fine-tuned on the request's own scans, the record) with --adapt; else (``module``, None).

    See :mod:`isovox.adapt`; ``kind`` is "hr", "implicit" or "lr"."""
    if not request.options.adapt:
        return module, None
    from .adapt import adapt

    adapted = adapt(module, kind, request.scans, request.options.seconds_to_adapt, task)
    return adapted.module, adapted


def validated_on_these_scans(adapted) -> bool:
    """Whether adaptation beat the shipped network on a held-out slab of these very scans."""
    return adapted is not None and adapted.used and adapted.gain_after_db > 0


# --------------------------------------------------------------------------- results


def method_result(values: np.ndarray, grid: Grid, model: Optional[str] = None,
                  fusion: Optional[FusionResult] = None, adapted=None,
                  registrations: Optional[list] = None, **extra: Any) -> Volume:
    """A method's output volume with the metadata the provenance records.

    ``registrations`` (RAS 4x4 per scan 2..) default to the fusion's; ``extra`` adds
    method-specific entries (e.g. ``fallback``, ``input_spacing_mm``)."""
    if registrations is None:
        registrations = list(fusion.registrations) if fusion is not None else []
    meta = {
        "model": model,
        "registrations": [np.asarray(t).tolist() for t in registrations],
        "intensity_maps": list(fusion.intensity_maps) if fusion is not None else [],
        "adaptation": adapted.summary() if adapted is not None else None,
        **extra,
    }
    return Volume(values, grid.affine, meta)


def baseline_result(fusion: FusionResult, model: str, reason: str, adapted=None) -> Volume:
    """The run handed to its baseline (CubeAvg / B-spline), saying why."""
    return method_result(fusion.volume.data, fusion.grid, model, fusion, adapted, fallback=reason)


# --------------------------------------------------------------------------- HR-space networks


def run_hr_network(request: MethodRequest, model_name: str) -> Volume:
    """A 3-D CNN on the fused volume (plus slice-geometry channels) in HR space, tiled, anatomy box only.

    With a reference, the model's ``-guided`` variant takes it as an extra channel."""
    if request.reference is not None:
        if not has_model(f"{model_name}-guided"):
            raise InputError(f"method {model_name} has no reference-guided model installed")
        model_name = f"{model_name}-guided"
    module, card = load_model(model_name)
    adapt_task, fuse_task, net_task = request.task.stages([adaptation_weight(request), 1.0, 9.0])
    module, adapted = adapted_network(module, "hr", request, adapt_task)
    reference = request.reference if card.guided else None
    options = request.options
    inputs = hr_inputs(request.scans, request.grid, reference, options.register, options.match_intensity, fuse_task)
    reason = "" if validated_on_these_scans(adapted) else card.outside_validated_range(inputs.k, len(request.scans))
    if reason:
        net_task.update(1.0, reason)
        return baseline_result(inputs.fusion, model_name, reason, adapted)
    box = signal_box(inputs.array[0])
    out = inputs.array[:1].copy()  # outside the box (air): the fused input itself
    out[(slice(None),) + box] = run_tiled(
        module, inputs.array, (module.receptive_radius,) * 3, device=request.device, precision=precision(request),
        bytes_per_voxel=network_spec(card.architecture).bytes_per_tile_voxel, task=net_task, region=box,
        ensemble=options.ensemble)
    values = np.where(inputs.fusion.coverage > 0, out[0] * inputs.scale, 0.0).astype(np.float32)
    return method_result(values, request.grid, model_name, inputs.fusion, adapted)
