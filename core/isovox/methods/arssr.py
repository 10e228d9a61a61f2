"""ArSSR as a method: the fused scans on an isotropic input grid at their finest spacing,
decoded on whatever output grid the run asks for (``--spacing 0.7``, ``0.5,0.5,1.2``)."""

from __future__ import annotations

import itertools

import numpy as np

from ..features import hr_inputs, through_plane_scale
from ..fusion import fuse
from ..grid import Grid
from ..implicit import decode_grid
from ..metrics import on_grid
from ..models import has_model, load_model, model_card
from ..registry import MethodRequest, MethodSpec, register
from ..volume import Volume
from .learned import _advice, _precision, adapt_weight, maybe_adapt, outside_validated_range


def input_grid(grid: Grid, spacing: float) -> Grid:
    """The box of ``grid`` (same outer faces and axes) cut into voxels of ``spacing`` mm."""
    directions = grid.affine[:3, :3] / grid.spacing
    extent = np.asarray(grid.shape) * grid.spacing
    shape = tuple(int(max(2, np.ceil(e / spacing - 1e-6))) for e in extent)
    corner = grid.affine[:3, :3] @ np.full(3, -0.5) + grid.affine[:3, 3]
    affine = np.eye(4)
    affine[:3, :3] = directions * spacing
    affine[:3, 3] = corner + affine[:3, :3] @ np.full(3, 0.5)
    return Grid(shape, affine)  # type: ignore[arg-type]


def flip_grid(grid: Grid, axes: tuple[int, ...]) -> Grid:
    """The same voxels indexed in reverse along ``axes`` (as :meth:`Volume.flipped`)."""
    affine = np.array(grid.affine)
    for a in axes:
        affine[:3, 3] += grid.affine[:3, a] * (grid.shape[a] - 1)
        affine[:3, a] = -grid.affine[:3, a]
    return Grid(grid.shape, affine)


def run_arssr(request: MethodRequest) -> Volume:
    module, card = load_model("arssr")
    adapt_task, fuse_task, net_task = request.task.stages([adapt_weight(request), 1.0, 6.0])
    module, adapted = maybe_adapt(module, "implicit", request, adapt_task)
    k = through_plane_scale(request.scans, float(request.grid.spacing.min()))
    validated_here = adapted is not None and adapted.used and adapted.gain_after_db > 0
    fallback = "" if validated_here else outside_validated_range(card, k, len(request.scans))
    if fallback:
        result = fuse(request.scans, grid=request.grid, register=bool(request.options.get("register")),
                      match_intensities=bool(request.options.get("match_intensity")), task=fuse_task)
        return result.volume.with_meta(model="arssr", fallback=fallback, intensity_maps=result.intensity_maps,
                                       registrations=[t.tolist() for t in result.registrations],
                                       adaptation=adapted.summary() if adapted else None)
    finest = float(min(s.spacing.min() for s in request.scans))
    in_grid = input_grid(request.grid, finest)
    inputs = hr_inputs(request.scans, in_grid, None, bool(request.options.get("register")),
                       bool(request.options.get("match_intensity")), fuse_task)
    precision = _precision(request)
    flips = list(itertools.product((False, True), repeat=3)) if request.options.get("ensemble") else [(False,) * 3]
    total = np.zeros(request.grid.shape, np.float64)
    for idx, flip in enumerate(flips):
        axes = tuple(a for a, f in enumerate(flip) if f)
        array = np.ascontiguousarray(np.flip(inputs.array, tuple(a + 1 for a in axes))) if axes else inputs.array
        out = decode_grid(module, array, flip_grid(in_grid, axes), flip_grid(request.grid, axes),
                          device=request.device, precision=precision,
                          task=net_task.sub(idx / len(flips), (idx + 1) / len(flips)))
        total += np.flip(out, axes) if axes else out
    covered, _ = on_grid(Volume(inputs.fusion.coverage.astype(np.float32), in_grid.affine), request.grid)
    values = np.where(covered > 0.5, total / len(flips) * inputs.scale, 0.0).astype(np.float32)
    return Volume(values, request.grid.affine, {"model": "arssr", "input_spacing_mm": finest,
                                                 "registrations": [t.tolist() for t in inputs.fusion.registrations],
                                                 "intensity_maps": inputs.fusion.intensity_maps,
                                                 "adaptation": adapted.summary() if adapted else None})


register(MethodSpec(
    name="arssr",
    description="ArSSR: RDN encoder + implicit MLP decoder, one model for any output spacing, fractional or "
    "anisotropic, from 1-3 scans (Wu et al. 2022); --ensemble averages the 8 flips.",
    run=run_arssr, scales=(1.0, 8.0), needs_weights=True, rank_cpu=2, rank_gpu=3, bytes_per_voxel=48,
    available=lambda: has_model("arssr"), model_card=lambda: model_card("arssr"), advise=_advice("arssr"),
))
