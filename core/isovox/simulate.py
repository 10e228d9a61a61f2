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

from .errors import InputError
from .forward import PROFILES, ScanGeometry, SliceProfile, acquire
from .grid import regrid_axis, rotation_matrix
from .intensity import robust_max
from .volume import Volume


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
    tilt: rotation (degrees about x, y, z of the volume's array axes) of the whole slice stack about the
        volume's centre: oblique and non-orthogonal scans.
    """

    axis: int
    scale: float
    gap: float = 0.0
    profile: str = "box"
    profile_samples: tuple[float, ...] | None = None
    inplane_blur: float = 0.0
    noise: float = 0.0
    seed: int = 0
    tilt: tuple[float, float, float] = (0.0, 0.0, 0.0)

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
        tilt = tuple(float(a) for a in self.tilt)
        if len(tilt) != 3 or not np.all(np.isfinite(tilt)):
            raise InputError(f"tilt {self.tilt} must be three finite angles in degrees")
        object.__setattr__(self, "tilt", tilt)

    @property
    def slice_profile(self) -> SliceProfile:
        return SliceProfile(self.profile, self.profile_samples)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Acquisition":
        values = dict(values)
        if values.get("profile_samples") is not None:
            values["profile_samples"] = tuple(values["profile_samples"])
        if values.get("tilt") is not None:
            values["tilt"] = tuple(values["tilt"])
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


def scan_geometry(hr: Volume, acq: Acquisition) -> ScanGeometry:
    """The grid and slice model of the scan ``acq`` describes: slabs from the outer face of the volume's
    field of view, ``scale`` voxels thick, one slice spacing (thickness + gap) apart, tilted as asked."""
    axis = acq.axis
    h = float(hr.spacing[axis])
    thickness_mm = acq.scale * h
    step = (thickness_mm + acq.gap) / h
    if step <= 0:
        raise InputError(f"gap {acq.gap} mm leaves no room between {thickness_mm:g} mm slices")
    centres = slab_layout(hr.shape[axis], acq.scale, step)
    affine = regrid_axis(hr.affine, axis, step, float(centres[0]))
    shape = list(hr.shape)
    shape[axis] = len(centres)
    if any(acq.tilt):
        centre = hr.index_to_world((np.asarray(hr.shape, float) - 1) / 2)
        rotation = hr.directions @ rotation_matrix(*acq.tilt) @ hr.directions.T  # about the volume's own axes
        turn = np.eye(4)
        turn[:3, :3] = rotation
        turn[:3, 3] = centre - rotation @ centre
        affine = turn @ affine
    return ScanGeometry(tuple(shape), affine, axis, thickness_mm, acq.slice_profile,
                        inplane_blur=float(acq.inplane_blur))


def simulate_scan(hr: Volume, acq: Acquisition) -> Volume:
    """Make the thick-slice scan that ``acq`` describes from volume ``hr`` (deterministic).

    The scan is the forward model (:mod:`isovox.forward`) applied to ``hr``, plus Rician noise."""
    geometry = scan_geometry(hr, acq)
    thick = acquire(hr, geometry).astype(np.float64)
    if acq.noise > 0:
        sigma = acq.noise * robust_max(hr.data)
        rng = np.random.default_rng(acq.seed)
        real = thick + rng.normal(0.0, sigma, thick.shape)
        imag = rng.normal(0.0, sigma, thick.shape)
        thick = np.sqrt(real**2 + imag**2)
    thickness_mm = float(geometry.thickness)
    meta = {
        "source": f"simulated from {hr.meta.get('source', 'volume')}",
        "acquisition": acq.to_dict(),
        "slice_thickness": thickness_mm,
        "spacing_between_slices": thickness_mm + acq.gap,
        "description": f"isovox sim axis{acq.axis} x{acq.scale:g} {acq.profile}",
    }
    return Volume(thick.astype(np.float32), geometry.affine, meta)


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


def random_lesions(hr: Volume, count: int = 24, margin: int = 8, seed: int = 3,
                   contrast: float = 0.35) -> tuple[Volume, np.ndarray, np.ndarray]:
    """``hr`` with ``count`` spheres (radius 2-4 voxels, contrast +-``contrast``) placed in the head at least
    ``margin`` voxels from the border; (the volume, their centres, their radii). For lesion benchmarks."""
    from .metrics import foreground_mask

    rng = np.random.default_rng(seed)
    mask = foreground_mask(hr.data)
    inner = np.argwhere(mask[margin:-margin, margin:-margin, margin:-margin]) + margin
    centres = inner[rng.choice(len(inner), count, replace=False)].astype(float)
    radii = rng.uniform(2, 4, count)
    contrasts = rng.choice([-contrast, contrast], count)
    return insert_spheres(hr, centres, radii, contrasts), centres, radii
