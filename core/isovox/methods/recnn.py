"""ReCNN (Pham et al. 2019): a residual CNN on the fused volume, one network for all scales; with a
registered HR image of another contrast as ``--reference``, its guided model."""

from __future__ import annotations

from ..learned import learned_spec, run_hr_network
from ..registry import register

register(learned_spec(
    "recnn", "ReCNN: residual CNN on the fused/B-spline volume, multiscale (Pham et al. 2019); "
    "--reference uses the model guided by a registered HR image of another contrast.",
    lambda request: run_hr_network(request, "recnn"), scales=(1.5, 8.0), reference="optional", rank_cpu=3,
    rank_gpu=4, rank_adapt=1, bytes_per_voxel=48,
))
