"""The interpolation baselines every learned method is measured against."""

from __future__ import annotations

from ..fusion import fuse
from ..learned import method_result
from ..registry import MethodRequest, MethodSpec, register
from ..volume import Volume


def run_fusion(request: MethodRequest) -> Volume:
    """Each scan's cubic B-spline on the target grid, averaged where scans overlap."""
    result = fuse(request.scans, grid=request.grid, register=request.options.register,
                  match_intensities=request.options.match_intensity, task=request.task)
    return method_result(result.volume.data, request.grid, fusion=result)


register(MethodSpec(
    name="bspline",
    description="Cubic B-spline interpolation of one scan onto the isotropic grid (no learning).",
    run=run_fusion,
    min_scans=1,
    max_scans=1,
    scales=(0.0, float("inf")),
    rank_cpu=1,
    rank_gpu=1,
))

register(MethodSpec(
    name="cubeavg",
    description="CubeAvg: cubic B-spline of each scan onto one grid, averaged where scans overlap.",
    run=run_fusion,
    min_scans=1,
    max_scans=3,
    scales=(0.0, float("inf")),
))
