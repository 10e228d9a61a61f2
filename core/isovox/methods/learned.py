"""The learned methods: isoSRN, ReCNN (optionally reference-guided), MRL and the CT-guided SRNet.

Each runs its shipped model with tiled inference; ``ensemble=True`` averages the
predictions over the 8 flips of the array axes (isoSRN+ and the like).
"""

from __future__ import annotations

import itertools
from typing import Callable, Optional

import numpy as np

from ..features import hr_inputs, lr_inputs
from ..fusion import fuse
from ..grid import regrid_axis
from ..models import has_model, load_model, model_card
from ..progress import Task
from ..registry import MethodRequest, MethodSpec, register
from ..tiling import run_tiled
from ..volume import Volume

# Peak activation memory per tile voxel (fp32 inference); isoSRN and ReCNN measured at 380 and 190 B.
BYTES_PER_TILE_VOXEL = {"isosrn": 450.0, "recnn": 300.0, "mrl": 2400.0, "ctguided": 1200.0}


def _precision(request: MethodRequest) -> str:
    # bf16 autocast is only fast on CPUs with native bf16 (AVX512-BF16/AMX); fp32 is the safe CPU default.
    return str(request.options.get("precision") or ("fp16" if request.device.startswith("cuda") else "fp32"))


def _flip_inputs(inputs: np.ndarray, axes: tuple[int, ...], subslice_channels: int = 0) -> np.ndarray:
    """Flip spatial ``axes`` (1-3); channels 2..2+r hold sub-slices, whose order reverses with axis 1."""
    out = np.flip(inputs, axes)
    if subslice_channels and 1 in axes:
        out = out.copy()
        out[2:2 + subslice_channels] = out[2:2 + subslice_channels][::-1]
    return np.ascontiguousarray(out)


def _flip_slice(box: slice, n: int) -> slice:
    """The same box along an axis of length ``n`` after flipping that axis."""
    return slice(n - box.stop, n - box.start)


def _ensemble(run: Callable[..., np.ndarray], inputs: np.ndarray, enabled: bool, task: Task,
              subslice_channels: int = 0, pass_flips: bool = False) -> np.ndarray:
    """Average of ``run`` over the 8 flips of the three spatial axes (or one plain run).

    ``pass_flips``: ``run`` also takes ``flipped=`` (the flipped array axes), to flip its output box."""
    if not enabled:
        return run(inputs, task)
    total = None
    flips = list(itertools.product((False, True), repeat=3))
    for idx, flip in enumerate(flips):
        axes = tuple(a + 1 for a, f in enumerate(flip) if f)
        sub = task.sub(idx / len(flips), (idx + 1) / len(flips))
        flipped = _flip_inputs(inputs, axes, subslice_channels) if axes else inputs
        out = run(flipped, sub, flipped=axes) if pass_flips else run(flipped, sub)
        out = np.flip(out, axes) if axes else out
        total = out.astype(np.float64) if total is None else total + out
    return (total / len(flips)).astype(np.float32)


def outside_validated_range(card: dict, k: Optional[float], n_scans: int) -> str:
    """Why this run gets the baseline instead of the network ("" when the network runs).

    The model card records where the model beat CubeAvg on held-out data (``min_scale``,
    ``single_scan``); cards without these fields run everywhere.
    """
    if n_scans == 1 and card.get("single_scan") is False:
        return "single scan: the model did not beat the B-spline on held-out data; B-spline used"
    if n_scans > 1 and card.get("multi_scan") is False:
        return f"{n_scans} scans: the model did not beat CubeAvg on held-out data; CubeAvg used"
    if k is not None and k < float(card.get("min_scale", 0)) - 1e-6:
        return f"x{k:.2f} is below x{card['min_scale']}, where the model beat CubeAvg on held-out data; CubeAvg used"
    return ""


SIGNAL_FRACTION = 0.05  # of the robust maximum, after smoothing: above it is anatomy, below it air


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


def _run_hr(request: MethodRequest, model_name: str) -> Volume:
    if request.reference is not None:
        if not has_model(f"{model_name}-guided"):
            from ..errors import InputError

            raise InputError(f"method {model_name} has no reference-guided model installed")
        model_name = f"{model_name}-guided"
    module, card = load_model(model_name)
    adapt_task, fuse_task, net_task = request.task.stages([adapt_weight(request), 1.0, 9.0])
    module, adapted = maybe_adapt(module, "hr", request, adapt_task)
    reference = request.reference if card.get("guided") else None
    inputs = hr_inputs(request.scans, request.grid, reference, bool(request.options.get("register")),
                       bool(request.options.get("match_intensity")), fuse_task)
    validated_here = adapted is not None and adapted.used and adapted.gain_after_db > 0
    fallback = "" if validated_here else outside_validated_range(card, inputs.k, len(request.scans))
    if fallback:
        net_task.update(1.0, fallback)
        return inputs.fusion.volume.with_meta(model=model_name, fallback=fallback,
                                              registrations=[t.tolist() for t in inputs.fusion.registrations],
                                              intensity_maps=inputs.fusion.intensity_maps,
                                              adaptation=adapted.summary() if adapted else None)
    halo = (module.receptive_radius,) * 3
    precision = _precision(request)

    box = signal_box(inputs.array[0])

    def run(x: np.ndarray, task: Task, flipped: tuple[int, ...] = ()) -> np.ndarray:
        region = tuple(_flip_slice(b, n) if a + 1 in flipped else b for a, (b, n) in enumerate(zip(box, x.shape[1:])))
        return run_tiled(module, x, halo, device=request.device, precision=precision,
                         bytes_per_voxel=BYTES_PER_TILE_VOXEL[card["architecture"]], task=task, region=region)

    out = inputs.array[:1].copy()  # outside the box (air): the fused input itself
    out[(slice(None),) + box] = _ensemble(run, inputs.array, bool(request.options.get("ensemble")), net_task,
                                          pass_flips=True)
    values = np.where(inputs.fusion.coverage > 0, out[0] * inputs.scale, 0.0).astype(np.float32)
    return Volume(values, request.grid.affine, {"model": model_name,
                                                 "registrations": [t.tolist() for t in inputs.fusion.registrations],
                                                 "intensity_maps": inputs.fusion.intensity_maps,
                                                 "adaptation": adapted.summary() if adapted else None})


def adapt_weight(request: MethodRequest) -> float:
    """Progress weight of the adaptation stage (0 without --adapt)."""
    return float(request.options.get("adapt_seconds") or 300.0) / 10.0 if request.options.get("adapt") else 0.0


def maybe_adapt(module, kind: str, request: MethodRequest, task: Task):
    """``module`` fine-tuned on the request's own scans when --adapt is on (see :mod:`isovox.adapt`)."""
    if not request.options.get("adapt"):
        return module, None
    from ..adapt import DEFAULT_SECONDS, adapt

    seconds = float(request.options.get("adapt_seconds") or DEFAULT_SECONDS)
    adapted = adapt(module, kind, request.scans, seconds, task)
    return adapted.module, adapted


def _run_mrl(request: MethodRequest) -> Volume:
    from ..nets.mrl import FixedFactor

    module, card = load_model("mrl")
    scans = list(request.scans)
    adapt_task, *stages = request.task.stages([adapt_weight(request)] + [1.0] * len(scans) + [0.3])
    module, adapted = maybe_adapt(module, "lr", request, adapt_task)
    min_factor = int(card.get("min_factor", 2))
    if adapted is not None and adapted.used and adapted.gain_after_db > 0:
        min_factor = 2  # validated on this very scan's held-out slab
    if request.options.get("register") and len(scans) > 1:
        from ..registration import register_rigid

        for idx in range(1, len(scans)):
            transform = register_rigid(scans[0], scans[idx])
            scans[idx] = Volume(scans[idx].data, np.linalg.inv(transform) @ scans[idx].affine, scans[idx].meta)
    spacing = float(request.grid.spacing.min())
    precision = _precision(request)
    upsampled = []
    for scan, stage in zip(scans, stages):
        lr = lr_inputs(scan, spacing, max(module.factors), with_base=module.base == "bspline")
        if lr.factor < max(2, min_factor) or lr.factor not in module.factors:
            upsampled.append(scan)  # B-spline in the fusion: the model did not beat it at this factor
            continue
        wrapped = FixedFactor(module, lr.factor)
        halo = (module.receptive_radius,) * 3

        def run(x: np.ndarray, task: Task, wrapped=wrapped, factor=lr.factor) -> np.ndarray:
            return run_tiled(wrapped, x, halo, scale=(factor, 1, 1), device=request.device, precision=precision,
                             bytes_per_voxel=BYTES_PER_TILE_VOXEL["mrl"] * factor, task=task)

        subslices = lr.factor if module.base == "bspline" else 0
        out = _ensemble(run, lr.array, bool(request.options.get("ensemble")), stage, subslices)[0] * lr.scale
        data = out.transpose(np.argsort(lr.order))
        affine = regrid_axis(scan.affine, lr.axis, 1.0 / lr.factor, -0.5 + 0.5 / lr.factor)
        upsampled.append(Volume(data, affine, scan.meta))
    result = fuse(upsampled, grid=request.grid, match_intensities=bool(request.options.get("match_intensity")),
                  task=stages[-1])
    return result.volume.with_meta(model="mrl", intensity_maps=result.intensity_maps,
                                   adaptation=adapted.summary() if adapted else None)


def _advice(name: str) -> Callable[[Optional[float], int], str]:
    def advise(scale: Optional[float], n_scans: int) -> str:
        card = model_card(name) if has_model(name) else None
        return outside_validated_range(card, scale, n_scans) if card else ""

    return advise


def _spec(name: str, description: str, run, **kw) -> MethodSpec:
    return MethodSpec(name=name, description=description, run=run, needs_weights=True,
                      available=lambda: has_model(name), model_card=lambda: model_card(name), **kw)


register(_spec(
    "isosrn", "isoSRN: 3-D CNN on the fused volume of 1-3 orthogonal scans (Tian et al. 2024); --ensemble = isoSRN+.",
    lambda r: _run_hr(r, "isosrn"), scales=(1.5, 8.0), rank_cpu=4, rank_gpu=5, bytes_per_voxel=40,
    advise=_advice("isosrn"),
))
register(_spec(
    "recnn", "ReCNN: residual CNN on the fused/B-spline volume, multiscale (Pham et al. 2019); "
    "--reference uses the model guided by a registered HR image of another contrast.",
    lambda r: _run_hr(r, "recnn"), scales=(1.5, 8.0), reference="optional", rank_cpu=3, rank_gpu=4,
    bytes_per_voxel=48, advise=_advice("recnn"),
))
# Default ranks follow benchmarks/learned.py (held-out slabs): isoSRN gains most over CubeAvg and makes a
# 256^3 volume within the 60 s CPU target, so it is the default on CPU and GPU; ReCNN and ArSSR gain less.
# MRL lost to CubeAvg at x3-x4, so it stays opt-in (negative rank).
register(_spec(
    "mrl", "Multi-resolution LR-space CNN: each scan super-resolved along its slice axis on its own grid, "
    "then fused (fast on CPU; helps for slices >= 5x the in-plane spacing).",
    _run_mrl, scales=(1.5, 8.0), rank_cpu=-1, rank_gpu=-1, bytes_per_voxel=32,
))
register(_spec(
    "ctguided", "CT-guided unsupervised SR (Wang et al. 2023): an RDN trained without any HR MRI, on HR CT, "
    "self-supervision on thick-slice MR and joint MR-CT translation (CITNet); made for single scans.",
    lambda r: _run_hr(r, "ctguided"), scales=(1.5, 8.0), rank_cpu=0, rank_gpu=0, bytes_per_voxel=40,
    advise=_advice("ctguided"),
))
