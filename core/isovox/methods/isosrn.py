"""isoSRN (Tian et al., Sensors 2024): a 3-D CNN on the fused volume in HR space; --ensemble = isoSRN+."""

from __future__ import annotations

from ..learned import learned_spec, run_hr_network
from ..registry import register

# Default ranks follow benchmarks/learned.py (held-out slabs): isoSRN gains most over CubeAvg and makes a
# 256^3 volume within the 60 s CPU target, so it is the default on CPU and GPU; ReCNN and ArSSR gain less.
register(learned_spec(
    "isosrn", "isoSRN: 3-D CNN on the fused volume of 1-3 orthogonal scans (Tian et al. 2024); --ensemble = isoSRN+.",
    lambda request: run_hr_network(request, "isosrn"), scales=(1.5, 8.0), rank_cpu=4, rank_gpu=5, rank_adapt=2,
    bytes_per_voxel=40,
))
