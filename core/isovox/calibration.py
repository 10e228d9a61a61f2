"""What the reconstruction learns about its input before the final solve, with no ground truth:
the smoothness lambda, each scan's intensity map to scan 1, and per-slice weights.

* lambda = max(what the geometry needs, what the noise needs). The geometry's share grows with the
  through-plane scale k: ``FLOOR (k / 4)^2``. The noise's share comes from each scan's noise level,
  measured in-plane as the median absolute finest diagonal (Haar HH) wavelet coefficient over the
  head (Donoho's estimator); tissue texture alone reads as about ``TEXTURE`` and is taken off in
  quadrature; lambda = ``NOISE_GAIN * sigma^NOISE_POWER``. The constants were fitted to the lambda
  that maximised PSNR on Colin27 crops (TGV prior; x2-x6, 1-3 scans, Rician sigma 0-0.05) and
  checked on MNI152 (benchmarks/RESULTS.md). Leaving slices out and predicting them was tried
  first and measured worse: it under-smooths at low noise and failed at x6 with noise.
* intensity maps: scans 2-3 regressed on their prediction from scan 1 alone, both low-passed alike.
* slice weights: each scan's slices against their prediction from the other scans; slices whose
  residual stands far above the scan's median (motion, signal dropout) count less.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from .grid import Grid, thick_axis
from .intensity import robust_max
from .priors import TV
from .progress import Task, ensure_task
from .solver import ScanTerm, back_projection, scan_terms, set_slice_weights, solve
from .volume import Volume

OUTLIER_SCALE = 3.0  # a slice whose residual exceeds this many times the scan's median is down-weighted
FLOOR = 2e-3  # lambda for x4 scans without noise; scaled by (k / 4)^2
TEXTURE = 0.01  # what brain texture alone reads as noise (of the robust maximum)
NOISE_GAIN, NOISE_POWER = 5.3, 1.46
FOREGROUND = 0.1  # of scan 1's robust maximum: the head, for residual statistics


def _torch():
    import torch

    return torch


def noise_level(scan: Volume) -> float:
    """Noise sigma of a scan as a fraction of its robust maximum: the median absolute Haar HH
    coefficient of its in-plane slices over the head, / 0.6745."""
    data = np.asarray(scan.data, np.float64) / robust_max(scan.data)
    axis = thick_axis(scan)
    data = np.moveaxis(data, 2 if axis is None else axis, 0)
    n1, n2 = data.shape[1] // 2 * 2, data.shape[2] // 2 * 2
    if n1 < 2 or n2 < 2:
        return 0.0
    data = data[:, :n1, :n2]
    a, b, c, d = data[:, 0::2, 0::2], data[:, 1::2, 0::2], data[:, 0::2, 1::2], data[:, 1::2, 1::2]
    head = (a + b + c + d) / 4 > FOREGROUND
    if head.sum() < 100:
        return 0.0
    return float(np.median(np.abs((a - b - c + d)[head] / 2)) / 0.6745)


def acquisition_noise(levels: Sequence[float]) -> float:
    """The scans' noise sigma (fraction of the robust maximum) from their :func:`noise_level` values,
    less what brain texture alone reads as noise."""
    return float(np.sqrt(max(float(np.mean(levels)) ** 2 - TEXTURE**2, 0.0)))


def floor_smoothness(scale: float) -> float:
    """The smallest lambda for a geometry: grows with the through-plane scale k."""
    return FLOOR * (max(scale, 1.0) / 4.0) ** 2


def choose_smoothness(scans: Sequence[Volume], through_plane: float) -> tuple[float, dict[str, Any]]:
    """Lambda for this input (see the module's docstring) and how it was found."""
    levels = [noise_level(scan) for scan in scans]
    sigma = acquisition_noise(levels)
    noise_term = NOISE_GAIN * sigma**NOISE_POWER if sigma > 0 else 0.0
    floor = floor_smoothness(through_plane)
    chosen = max(floor, noise_term)
    report = {"method": "max(geometry floor, noise term); noise from the in-plane Haar HH band",
              "noise_per_scan": [round(v, 5) for v in levels], "noise_sigma": round(sigma, 5),
              "floor": floor, "noise_term": noise_term, "chosen": chosen}
    return chosen, report


# --------------------------------------------------------------------------- intensities and slice weights


def calibrate(terms: Sequence[ScanTerm], scans: Sequence, grid: Grid, geometries: Sequence, scale: float,
              prior, smoothness: float, start: np.ndarray, robust: bool = True, match_intensity: bool = True,
              device: str = "cpu", task: Optional[Task] = None) -> dict[str, Any]:
    """Set each term's intensity map and slice weights, estimated on a twice coarser grid."""
    import torch.nn.functional as F

    torch = _torch()
    task = ensure_task(task)
    factor = 2 if min(grid.shape) >= 16 else 1
    shape = tuple(max(2, int(np.ceil(n / factor))) for n in grid.shape)
    coarse = Grid(shape, _coarse_affine(grid, shape))
    coarse_terms = scan_terms(scans, coarse, geometries, scale, device)
    lam = smoothness * factor**2  # per coarse voxel
    prior = TV()  # residual statistics need no finer prior than TV; it is three times cheaper
    x = torch.as_tensor(np.asarray(start, np.float32))
    x = (F.interpolate(x[None, None], size=shape, mode="area")[0, 0] if factor > 1 else x).contiguous().to(device)
    n = len(coarse_terms)
    steps = task.stages([0.5 * max(n, 2) if robust else 0.0, 1.0 if n > 1 and match_intensity else 0.0])
    weights = [np.ones(term.slices) for term in coarse_terms]
    if robust:  # first, so a corrupt slice cannot bias the intensity fit
        weights = _slice_check(coarse_terms, x, prior, lam, coarse, steps[0])
    for term, weight in zip(coarse_terms, weights):
        set_slice_weights(term, weight, term.mask)
    maps = [(1.0, 0.0)] * n
    if n > 1 and match_intensity:
        steps[1].update(0.0, "matching the scans' intensities")
        blur = max(float(g.kernel(t).width) for g in geometries for t in range(3))  # the thickest slice
        maps = intensity_maps(scans, geometries, weights, coarse, blur, scale)
    for term, (gain, offset), weight in zip(terms, maps, weights):
        term.data = term.data * gain + offset
        term.gain, term.offset = gain, offset
        set_slice_weights(term, weight, term.mask)
    return {"grid": list(shape), "intensity_reference": "scan 1, compared after a common low-pass",
            "slice_check": "left-out scans" if n > 1 else "own fit, reweighted twice"}


def intensity_maps(scans: Sequence[Volume], geometries: Sequence, weights: Sequence[np.ndarray], grid: Grid,
                   blur_mm: float, scale: float) -> list[tuple[float, float]]:
    """(gain, offset) taking each scan to scan 1's intensities (in units of ``scale``).

    Every scan is resampled onto ``grid`` and low-passed by a Gaussian of ``blur_mm`` (normalised by its
    own coverage), wide enough that their different slice blurs no longer matter; then each scan is
    regressed on scan 1 over the head where both have good slices, and the line inverted."""
    from scipy import ndimage

    from .fusion import resample

    sigma = [blur_mm / s for s in grid.spacing]
    smooth = []
    for scan, geometry, weight in zip(scans, geometries, weights):
        good = np.ones(scan.shape, np.float32)
        if geometry.slice_axis is not None:
            shape = [1, 1, 1]
            shape[geometry.slice_axis] = -1
            per_slice = np.zeros(scan.shape[geometry.slice_axis], np.float32)  # filled-in slices: never good
            per_slice[list(geometry.acquired) if geometry.acquired else slice(None)] = np.asarray(weight) >= 0.5
            good = good * per_slice.reshape(shape)
        values = resample(scan.with_data(np.asarray(scan.data) * good), grid)
        support = resample(scan.with_data(good), grid)
        inside = support.full_mask() & (support.values > 0.5)
        total = ndimage.gaussian_filter(np.where(inside, values.values, 0.0), sigma, mode="constant")
        share = ndimage.gaussian_filter(np.where(inside, support.values, 0.0), sigma, mode="constant")
        smooth.append((total, share))
    reference, reference_share = smooth[0]
    maps = [(1.0, 0.0)]
    for total, share in smooth[1:]:
        keep = (share > 0.95) & (reference_share > 0.95)
        ref = reference[keep] / reference_share[keep]
        other = total[keep] / share[keep]
        head = ref > FOREGROUND * scale
        if head.sum() < 50:
            maps.append((1.0, 0.0))
            continue
        slope, intercept = np.polyfit(ref[head].astype(np.float64), other[head].astype(np.float64), 1)
        if not (np.isfinite(slope) and 0.2 < slope < 5):
            maps.append((1.0, 0.0))
            continue
        gain, offset = 1.0 / slope, -intercept / slope / scale
        maps.append((1.0, 0.0) if abs(gain - 1) < 0.01 and abs(offset) < 0.005 else (float(gain), float(offset)))
    return maps


def _slice_check(terms: Sequence[ScanTerm], x, prior, smoothness: float, grid: Grid, task: Task) -> list[np.ndarray]:
    """Slice weights of each scan from its residual against the other scans' reconstruction (one scan:
    against its own fit, reweighted twice)."""
    n = len(terms)
    rounds = task.stages([1.0] * max(n, 2))
    if n == 1:
        term, coverage = terms[0], terms[0].mask
        for step in rounds:
            set_slice_weights(term, slice_weights(term, term.operator.forward(x)), coverage)
            x = solve(x, terms, prior, smoothness, grid.spacing, 10, step, label="checking the slices")
        term.mask = coverage
        return [slice_weights(term, term.operator.forward(x))]
    out = []
    for idx, step in enumerate(rounds[:n]):
        others = [term for k, term in enumerate(terms) if k != idx]
        # from the others' back-projection: a start that has seen scan idx would keep its faults
        left_out = solve(back_projection(others, grid.shape), others, prior, smoothness, grid.spacing, 8, step,
                         label=f"checking the slices of scan {idx + 1}")
        out.append(slice_weights(terms[idx], terms[idx].operator.forward(left_out)))
    return out


def slice_weights(term: ScanTerm, predicted) -> np.ndarray:
    """Per-slice weights from the residual: 1 for slices near the scan's median residual, falling as
    (OUTLIER_SCALE x median / residual)^4 above it. Slices with little head are not judged."""
    torch = _torch()
    covered = term.mask.gt(0)
    residual = ((predicted - term.data) ** 2) * covered
    signal = (term.data > FOREGROUND) & covered
    axes = tuple(a for a in range(3) if a != term.slice_axis)
    counts = signal.sum(dim=axes).cpu().numpy()
    rms = torch.sqrt((residual * signal).sum(dim=axes) / signal.sum(dim=axes).clamp(min=1)).cpu().numpy()
    judged = counts >= max(20, 0.02 * counts.max())
    weights = np.ones(term.slices)  # slices of the whole scan; those outside the term keep weight 1
    if judged.sum() < 3:
        return weights
    typical = float(np.median(rms[judged]))
    if typical <= 0:
        return weights
    ratio = rms / (OUTLIER_SCALE * typical)
    outliers = judged & (ratio > 1)
    kept = np.ones(len(rms))
    kept[outliers] = 1.0 / ratio[outliers] ** 4
    start = term.origin[term.slice_axis]
    weights[start:start + len(kept)] = kept
    return weights


def _coarse_affine(grid: Grid, shape: Sequence[int]) -> np.ndarray:
    """The same box as ``grid`` cut into ``shape`` voxels."""
    steps = np.asarray(grid.shape, float) / np.asarray(shape, float)
    affine = grid.affine.copy()
    affine[:3, :3] = grid.affine[:3, :3] * steps
    affine[:3, 3] = grid.affine[:3, :3] @ (-0.5 + steps / 2) + grid.affine[:3, 3]
    return affine
