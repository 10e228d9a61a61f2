"""Acquisition simulator: thick-slice scans from an isotropic volume.

A scan is described by an :class:`Acquisition` (the parameters) and made by
:func:`simulate_scan` (a deterministic function of volume and parameters), so
every simulated scan can be replayed from its recorded parameters. Random
protocols for training come from :func:`sample_protocol`, which only samples.

Geometry: thick slice ``j`` integrates the slab that starts at the outer face of
the high-resolution field of view plus ``j`` slice spacings; its voxel centre is
the slab centre, so the output affine puts each thick slice at the centre of its
slab (tested).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy import ndimage, special

from .errors import InputError
from .grid import regrid_axis
from .intensity import robust_max
from .volume import Volume

PROFILES = ("box", "gaussian", "custom")


@dataclass(frozen=True)
class Acquisition:
    """How one thick-slice scan is acquired from the high-resolution volume.

    axis: array axis that becomes the slice (through-plane) axis.
    scale: slice thickness in units of the input voxel size along ``axis`` (k; fractional allowed).
    gap: extra distance between slabs in mm (negative: overlapping slices).
    profile: slice sensitivity profile: "box", "gaussian" (FWHM = thickness) or
        "custom", given by ``profile_samples`` evenly spaced over [-thickness, +thickness].
    inplane_blur: Gaussian sigma in mm applied along the two in-plane axes.
    noise: Rician noise sigma relative to the volume's robust maximum (0.03 = 3 %).
    seed: seed of the noise, so the scan can be replayed exactly.
    """

    axis: int
    scale: float
    gap: float = 0.0
    profile: str = "box"
    profile_samples: tuple[float, ...] | None = None
    inplane_blur: float = 0.0
    noise: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.axis not in (0, 1, 2):
            raise InputError(f"slice axis must be 0, 1 or 2, got {self.axis}")
        if not np.isfinite(self.scale) or self.scale < 1.0 or self.scale > 32.0:
            raise InputError(f"scale {self.scale} must be between 1 and 32")
        if self.profile not in PROFILES:
            raise InputError(f"slice profile {self.profile!r} must be one of {', '.join(PROFILES)}")
        if self.profile == "custom":
            samples = np.asarray(self.profile_samples or (), dtype=float)
            if samples.size < 3 or np.any(samples < 0) or samples.sum() <= 0:
                raise InputError("a custom slice profile needs at least 3 non-negative samples")
            object.__setattr__(self, "profile_samples", tuple(float(s) for s in samples))
        if not np.isfinite(self.noise) or self.noise < 0:
            raise InputError(f"noise sigma {self.noise} must be >= 0")
        if not np.isfinite(self.inplane_blur) or self.inplane_blur < 0:
            raise InputError(f"in-plane blur {self.inplane_blur} must be >= 0")
        if not np.isfinite(self.gap):
            raise InputError(f"gap {self.gap} must be finite")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Acquisition":
        values = dict(values)
        if values.get("profile_samples") is not None:
            values["profile_samples"] = tuple(values["profile_samples"])
        return cls(**values)


@dataclass(frozen=True)
class ProtocolRanges:
    """Ranges from which :func:`sample_protocol` draws random acquisitions."""

    scale: tuple[float, float] = (2.0, 7.0)
    n_axes: tuple[int, ...] = (1, 2, 3)
    gap_fraction: tuple[float, float] = (-0.2, 0.3)  # of the thickness
    profiles: tuple[str, ...] = ("box", "gaussian")
    inplane_blur: tuple[float, float] = (0.0, 0.0)
    noise: tuple[float, float] = (0.0, 0.05)
    fractional: bool = True


def sample_protocol(rng: np.random.Generator, ranges: ProtocolRanges = ProtocolRanges(), spacing: float = 1.0) -> list[Acquisition]:
    """Draw a random scan protocol: 1-3 orthogonal scans sharing one scale and profile."""
    lo, hi = ranges.scale
    scale = float(rng.uniform(lo, hi)) if ranges.fractional else float(rng.integers(int(lo), int(hi) + 1))
    n_axes = int(rng.choice(ranges.n_axes))
    axes = sorted(int(a) for a in rng.choice(3, size=n_axes, replace=False))
    profile = str(rng.choice(ranges.profiles))
    gap = float(rng.uniform(*ranges.gap_fraction)) * scale * spacing
    blur = float(rng.uniform(*ranges.inplane_blur))
    noise = float(rng.uniform(*ranges.noise))
    seeds = rng.integers(0, 2**31 - 1, size=n_axes)
    return [
        Acquisition(axis=a, scale=scale, gap=gap, profile=profile, inplane_blur=blur, noise=noise, seed=int(s))
        for a, s in zip(axes, seeds)
    ]


def slab_layout(n: int, scale: float, step: float) -> np.ndarray:
    """Centres (in input voxel units) of the thick slices that fit in ``n`` voxels."""
    if n + 1e-9 < scale:
        raise InputError(f"the volume has {n} voxels along the slice axis, fewer than one slice of {scale:g}")
    if step <= 0:
        raise InputError("slice spacing (thickness + gap) must be positive")
    count = int(np.floor((n - scale) / step + 1e-9)) + 1
    return -0.5 + scale / 2.0 + step * np.arange(count)


def slice_weights(n: int, centres: np.ndarray, scale: float, acq: Acquisition) -> np.ndarray:
    """Matrix (slices x input voxels): how much each input voxel contributes to each slice.

    Each input voxel is a box of width 1; weights are the integral of the slice
    profile over it, normalised to sum 1 per slice.
    """
    lower = np.arange(n) - 0.5
    upper = lower + 1.0
    rel_lo = lower[None, :] - centres[:, None]
    rel_hi = upper[None, :] - centres[:, None]
    if acq.profile == "box":
        half = scale / 2.0
        weights = np.clip(np.minimum(rel_hi, half) - np.maximum(rel_lo, -half), 0.0, None)
    elif acq.profile == "gaussian":
        sigma = scale / (2.0 * np.sqrt(2.0 * np.log(2.0)))
        cdf = lambda x: 0.5 * (1.0 + special.erf(x / (sigma * np.sqrt(2.0))))  # noqa: E731
        weights = cdf(rel_hi) - cdf(rel_lo)
        weights[np.abs(centres[:, None] - np.arange(n)[None, :]) > 3 * scale] = 0.0
    else:
        samples = np.asarray(acq.profile_samples, dtype=float)
        positions = np.linspace(-scale, scale, samples.size)
        sub = (np.arange(32) + 0.5) / 32.0  # midpoint rule inside each input voxel
        points = rel_lo[..., None] + sub
        weights = np.interp(points, positions, samples, left=0.0, right=0.0).mean(axis=-1)
    totals = weights.sum(axis=1, keepdims=True)
    if np.any(totals <= 0):
        raise InputError("the slice profile covers no voxel of the volume")
    return weights / totals


def simulate_scan(hr: Volume, acq: Acquisition) -> Volume:
    """Make the thick-slice scan that ``acq`` describes from volume ``hr`` (deterministic)."""
    axis = acq.axis
    h = float(hr.spacing[axis])
    thickness_mm = acq.scale * h
    step = (thickness_mm + acq.gap) / h
    if step <= 0:
        raise InputError(f"gap {acq.gap} mm leaves no room between {thickness_mm:g} mm slices")
    data = np.asarray(hr.data, dtype=np.float64)
    if acq.inplane_blur > 0:
        sigmas = [acq.inplane_blur / s if a != axis else 0.0 for a, s in enumerate(hr.spacing)]
        data = ndimage.gaussian_filter(data, sigmas, mode="nearest")
    n = hr.shape[axis]
    centres = slab_layout(n, acq.scale, step)
    weights = slice_weights(n, centres, acq.scale, acq)
    thick = np.moveaxis(np.tensordot(weights, data, axes=([1], [axis])), 0, axis)
    if acq.noise > 0:
        sigma = acq.noise * robust_max(hr.data)
        rng = np.random.default_rng(acq.seed)
        real = thick + rng.normal(0.0, sigma, thick.shape)
        imag = rng.normal(0.0, sigma, thick.shape)
        thick = np.sqrt(real**2 + imag**2)
    affine = regrid_axis(hr.affine, axis, step, float(centres[0]))
    meta = {
        "source": f"simulated from {hr.meta.get('source', 'volume')}",
        "acquisition": acq.to_dict(),
        "slice_thickness": thickness_mm,
        "spacing_between_slices": thickness_mm + acq.gap,
        "description": f"isovox sim axis{axis} x{acq.scale:g} {acq.profile}",
    }
    return Volume(thick.astype(np.float32), affine, meta)


def simulate_scans(hr: Volume, acquisitions: Iterable[Acquisition]) -> list[Volume]:
    return [simulate_scan(hr, acq) for acq in acquisitions]


def orthogonal_protocol(
    scale: float,
    axes: Sequence[int] = (0, 1, 2),
    profile: str = "box",
    gap: float = 0.0,
    noise: float = 0.0,
    inplane_blur: float = 0.0,
    seed: int = 0,
) -> list[Acquisition]:
    """The classic protocol: the same thick acquisition along each of ``axes``."""
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**31 - 1, size=len(axes))
    return [
        Acquisition(axis=int(a), scale=scale, gap=gap, profile=profile, noise=noise,
                    inplane_blur=inplane_blur, seed=int(s))
        for a, s in zip(axes, seeds)
    ]



def insert_spheres(hr: Volume, centres: np.ndarray, radii: Sequence[float], contrasts: Sequence[float]) -> Volume:
    """Small spherical lesions: voxels within ``radius`` (voxels) of a centre scaled by 1 + contrast.

    Used to check that super-resolution keeps small-lesion contrast that thick slices blur away.
    """
    data = np.array(hr.data, dtype=np.float32)
    grid = np.indices(hr.shape, dtype=np.float32)
    for centre, radius, contrast in zip(np.asarray(centres, float), radii, contrasts):
        dist2 = sum((grid[a] - centre[a]) ** 2 for a in range(3))
        data[dist2 <= radius**2] *= 1.0 + float(contrast)
    return hr.with_data(data)
