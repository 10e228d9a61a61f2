"""Image-quality metrics for super-resolved volumes.

Normalisation (documented in the README): both volumes are divided by the
reference's robust maximum (99.5th percentile of its positive voxels, see
:func:`isovox.intensity.robust_max`), so the reference spans about [0, 1] and
PSNR uses a peak of 1. No clipping is applied.

* ``psnr`` / ``psnr_masked``: 10 log10(1 / MSE), over all voxels or the head.
* ``ssim``: 3-D SSIM with a Gaussian window (sigma 1.5 voxels), K1 = 0.01,
  K2 = 0.03, data range 1, averaged over the head mask.
* ``sharpness``: mean gradient magnitude (per mm) in the head mask, normalised
  by the reference's; 1.0 means as sharp as the reference.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from .errors import InputError
from .grid import Grid, axis_correspondence
from .intensity import robust_max
from .volume import Volume


def foreground_mask(data: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """The head: voxels above ``fraction`` of the robust maximum, holes filled,
    largest connected component kept, so background noise does not dilute metrics."""
    data = np.asarray(data)
    mask = data > fraction * robust_max(data)
    if not mask.any():
        return np.ones(data.shape, dtype=bool)
    mask = ndimage.binary_closing(mask, iterations=2)
    labels, n = ndimage.label(mask)
    if n > 1:
        sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
        mask = labels == (1 + int(np.argmax(sizes)))
    return ndimage.binary_fill_holes(mask)


def psnr(result: np.ndarray, reference: np.ndarray, mask: Optional[np.ndarray] = None,
         peak: Optional[float] = None) -> float:
    """PSNR in dB over ``mask``: 10 log10(peak^2 / MSE).

    Without ``peak`` both arrays are divided by the reference's robust maximum and the peak is 1
    (the README's convention); with ``peak`` they are compared as they are (e.g. already
    normalised training crops, ``peak=1``)."""
    scale = robust_max(reference) if peak is None else float(peak)
    diff = (np.asarray(result, np.float64) - np.asarray(reference, np.float64)) / scale
    if mask is not None:
        diff = diff[mask]
    mse = float(np.mean(diff**2)) if diff.size else float("nan")
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def ssim(result: np.ndarray, reference: np.ndarray, mask: Optional[np.ndarray] = None, sigma: float = 1.5) -> float:
    scale = robust_max(reference)
    x = np.asarray(result, np.float64) / scale
    y = np.asarray(reference, np.float64) / scale
    c1, c2 = 0.01**2, 0.03**2
    blur = lambda a: ndimage.gaussian_filter(a, sigma, truncate=3.5, mode="nearest")  # noqa: E731
    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(np.mean(index[mask] if mask is not None else index))


def gradient_energy(data: np.ndarray, spacing: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    grads = np.gradient(np.asarray(data, np.float64), *[float(s) for s in spacing])
    magnitude = np.sqrt(sum(g * g for g in grads))
    return float(np.mean(magnitude[mask] if mask is not None else magnitude))


def aligned_to(volume: Volume, grid: Grid) -> tuple[np.ndarray, np.ndarray] | None:
    """``volume`` re-indexed onto ``grid`` when their voxel centres coincide.

    Returns (values, covered) with no interpolation (axis permutations, flips
    and integer shifts only), or None when the grids do not share voxel centres.
    """
    order = axis_correspondence(volume.affine, grid.affine)
    if order is None:
        return None
    mapping = np.linalg.inv(volume.affine) @ grid.affine
    index = []
    covered = []
    for t in range(3):
        p = int(order[t])
        step, offset = mapping[p, t], mapping[p, 3]
        if abs(abs(step) - 1.0) > 1e-4 or abs(offset - round(offset)) > 1e-3:
            return None
        src = np.rint(step * np.arange(grid.shape[t]) + offset).astype(int)
        ok = (src >= 0) & (src < volume.shape[p])
        index.append(np.clip(src, 0, volume.shape[p] - 1))
        covered.append(ok)
    data = np.asarray(volume.data).transpose(order)
    values = data[np.ix_(*index)]
    mask = covered[0][:, None, None] & covered[1][None, :, None] & covered[2][None, None, :]
    return np.where(mask, values, 0.0).astype(np.float32), mask


def on_grid(volume: Volume, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """``volume`` on ``grid`` as (values, covered): exact re-indexing when voxel centres coincide,
    else cubic B-spline resampling."""
    aligned = aligned_to(volume, grid)
    if aligned is not None:
        return aligned
    from .fusion import resample

    part = resample(volume, grid)
    return part.values, part.full_mask()


def evaluate(result: Volume, reference: Volume) -> dict:
    """PSNR (whole and head), SSIM and relative sharpness of ``result`` against ``reference``.

    Voxels of the reference outside the result's field of view are excluded.
    Grids that share voxel centres are compared without interpolation; others
    are compared after cubic B-spline resampling onto the reference grid.
    """
    grid = Grid.of(reference)
    resampled = aligned_to(result, grid) is None
    values, covered = on_grid(result, grid)
    if not covered.any():
        raise InputError("the result and the reference do not overlap in space")
    ref = np.asarray(reference.data)
    head = foreground_mask(ref) & covered
    sharp_ref = gradient_energy(ref, reference.spacing, head)
    sharp_res = gradient_energy(values, reference.spacing, head)
    return {
        "psnr": psnr(values, ref, covered),
        "psnr_masked": psnr(values, ref, head),
        "ssim": ssim(values, ref, head),
        "sharpness": sharp_res / sharp_ref if sharp_ref > 0 else float("nan"),
        "voxels_compared": int(np.count_nonzero(covered)),
        "head_voxels": int(np.count_nonzero(head)),
        "resampled": resampled,
    }


def contrast_kept(values: np.ndarray, truth: np.ndarray, centres: np.ndarray, radii: Sequence[float]) -> float:
    """Median over lesions of (lesion mean - shell mean) in ``values`` over the same in ``truth`` (both on
    one grid; the shell is 1-3 voxels outside the lesion): 1 keeps the contrast, 0 blurs it away."""
    grid = np.indices(truth.shape, dtype=np.float32)
    ratios = []
    for centre, radius in zip(centres, radii):
        distance = np.sqrt(sum((grid[a] - centre[a]) ** 2 for a in range(3)))
        core, shell = distance <= radius, (distance > radius + 1) & (distance <= radius + 3)
        ratios.append((values[core].mean() - values[shell].mean()) / (truth[core].mean() - truth[shell].mean()))
    return float(np.median(ratios))
