"""The interpolation baselines every learned method is measured against."""

from __future__ import annotations

from ..fusion import fuse
from ..registry import MethodRequest, MethodSpec, register
from ..volume import Volume


def _run_fusion(request: MethodRequest) -> Volume:
    result = fuse(
        request.scans,
        grid=request.grid,
        register=bool(request.options.get("register")),
        match_intensities=bool(request.options.get("match_intensity")),
        task=request.task,
    )
    return result.volume.with_meta(
        registrations=[t.tolist() for t in result.registrations],
        intensity_maps=result.intensity_maps,
    )


register(MethodSpec(
    name="bspline",
    description="Cubic B-spline interpolation of one scan onto the isotropic grid (no learning).",
    run=_run_fusion,
    min_scans=1,
    max_scans=1,
    scales=(0.0, float("inf")),
    rank_cpu=1,
    rank_gpu=1,
))

register(MethodSpec(
    name="cubeavg",
    description="CubeAvg: cubic B-spline of each scan onto one grid, averaged where scans overlap.",
    run=_run_fusion,
    min_scans=1,
    max_scans=3,
    scales=(0.0, float("inf")),
))
