"""Multi-resolution learning CNN (paper 004): each scan super-resolved along its own slice axis on its
low-resolution grid, then the results fused (CubeAvg) on the target grid."""

from __future__ import annotations

import numpy as np

from ..features import lr_inputs
from ..fusion import fuse
from ..grid import regrid_axis
from ..learned import (
    adaptation_weight, adapted_network, learned_spec, method_result, precision, validated_on_these_scans,
)
from ..models import load_model
from ..nets import spec as network_spec
from ..registry import MethodRequest, register
from ..tiling import run_tiled
from ..volume import Volume


def run_mrl(request: MethodRequest) -> Volume:
    from ..nets.mrl import FixedFactor

    module, card = load_model("mrl")
    scans = list(request.scans)
    adapt_task, *stages = request.task.stages([adaptation_weight(request)] + [1.0] * len(scans) + [0.3])
    module, adapted = adapted_network(module, "lr", request, adapt_task)
    min_factor = 2 if validated_on_these_scans(adapted) else int(card.min_factor or 2)
    registrations = []
    if request.options.register and len(scans) > 1:
        from ..registration import register_rigid

        for idx in range(1, len(scans)):
            transform = register_rigid(scans[0], scans[idx])
            registrations.append(transform)
            scans[idx] = Volume(scans[idx].data, np.linalg.inv(transform) @ scans[idx].affine, scans[idx].meta)
    spacing = float(request.grid.spacing.min())
    per_voxel = network_spec(card.architecture).bytes_per_tile_voxel
    upsampled = []
    for scan, stage in zip(scans, stages):
        lr = lr_inputs(scan, spacing, max(module.factors), with_base=module.base == "bspline")
        if lr.factor < max(2, min_factor) or lr.factor not in module.factors:
            upsampled.append(scan)  # B-spline in the fusion: the model did not beat it at this factor
            continue
        out = run_tiled(FixedFactor(module, lr.factor), lr.array, (module.receptive_radius,) * 3,
                        scale=(lr.factor, 1, 1), device=request.device, precision=precision(request),
                        bytes_per_voxel=per_voxel * lr.factor, task=stage, ensemble=request.options.ensemble,
                        subslice_channels=lr.factor if module.base == "bspline" else 0)
        data = (out[0] * lr.scale).transpose(np.argsort(lr.order))
        affine = regrid_axis(scan.affine, lr.axis, 1.0 / lr.factor, -0.5 + 0.5 / lr.factor)
        upsampled.append(Volume(data, affine, scan.meta))
    result = fuse(upsampled, grid=request.grid, match_intensities=request.options.match_intensity, task=stages[-1])
    return method_result(result.volume.data, request.grid, "mrl", result, adapted, registrations=registrations)


# MRL lost to CubeAvg at x3-x4 on held-out slabs (benchmarks/learned.py), so it stays opt-in (negative rank);
# with --adapt it gained most (+1.81 dB over the B-spline on one x4 scan of both volumes, RESULTS.md), so
# it is what --adapt without --method picks.
register(learned_spec(
    "mrl", "Multi-resolution LR-space CNN: each scan super-resolved along its slice axis on its own grid, "
    "then fused (fast on CPU; helps for slices >= 5x the in-plane spacing).",
    run_mrl, scales=(1.5, 8.0), rank_cpu=-1, rank_gpu=-1, rank_adapt=3, bytes_per_voxel=32,
    why_default="it gained most from fine-tuning: one x4 scan of a head it never saw, 300 s: +1.46 / +1.04 dB "
    "over the B-spline (Colin27 / MNI152; srr +1.01 / +0.85); the other networks, 60 s each, gained less "
    "(benchmarks/RESULTS.md)",
))
