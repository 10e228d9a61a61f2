"""ArSSR (Wu et al. 2022) as a method: the fused scans on an isotropic input grid at their finest
spacing, decoded on whatever output grid the run asks for (``--spacing 0.7``, ``0.5,0.5,1.2``)."""

from __future__ import annotations

import numpy as np

from ..features import hr_inputs, through_plane_scale
from ..fusion import fuse
from ..grid import Grid
from ..implicit import decode_grid
from ..learned import (
    adaptation_weight, adapted_network, baseline_result, learned_spec, method_result, precision,
    validated_on_these_scans,
)
from ..metrics import on_grid
from ..models import load_model
from ..nets import spec as network_spec
from ..registry import MethodRequest, register
from ..volume import Volume


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


def run_arssr(request: MethodRequest) -> Volume:
    module, card = load_model("arssr")
    options = request.options
    adapt_task, fuse_task, net_task = request.task.stages([adaptation_weight(request), 1.0, 6.0])
    module, adapted = adapted_network(module, "implicit", request, adapt_task)
    k = through_plane_scale(request.scans, float(request.grid.spacing.min()))
    reason = "" if validated_on_these_scans(adapted) else card.outside_validated_range(k, len(request.scans))
    if reason:
        fusion = fuse(request.scans, grid=request.grid, register=options.register,
                      match_intensities=options.match_intensity, task=fuse_task)
        return baseline_result(fusion, "arssr", reason, adapted)
    finest = float(min(s.spacing.min() for s in request.scans))
    in_grid = input_grid(request.grid, finest)
    inputs = hr_inputs(request.scans, in_grid, None, options.register, options.match_intensity, fuse_task)
    out = decode_grid(module, inputs.array, in_grid, request.grid, device=request.device,
                      precision=precision(request), task=net_task, ensemble=options.ensemble,
                      bytes_per_voxel=network_spec(card.architecture).bytes_per_tile_voxel)
    covered, _ = on_grid(Volume(inputs.fusion.coverage.astype(np.float32), in_grid.affine), request.grid)
    values = np.where(covered > 0.5, out * inputs.scale, 0.0).astype(np.float32)
    return method_result(values, request.grid, "arssr", inputs.fusion, adapted, input_spacing_mm=finest)


register(learned_spec(
    "arssr", "ArSSR: RDN encoder + implicit MLP decoder, one model for any output spacing, fractional or "
    "anisotropic, from 1-3 scans (Wu et al. 2022); --ensemble averages the 8 flips.",
    run_arssr, scales=(1.0, 8.0), rank_cpu=2, rank_gpu=3, rank_adapt=1, bytes_per_voxel=48,
))
