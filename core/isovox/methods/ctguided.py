"""CT-guided unsupervised SR (Wang et al. 2023): an RDN (SRNet) trained without any HR MRI."""

from __future__ import annotations

from ..learned import learned_spec, run_hr_network
from ..registry import register

register(learned_spec(
    "ctguided", "CT-guided unsupervised SR (Wang et al. 2023): an RDN trained without any HR MRI, on HR CT, "
    "self-supervision on thick-slice MR and joint MR-CT translation (CITNet); made for single scans.",
    lambda request: run_hr_network(request, "ctguided"), scales=(1.5, 8.0), rank_cpu=0, rank_gpu=0, rank_adapt=1,
    bytes_per_voxel=40,
))
