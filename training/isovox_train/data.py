"""Training pairs made on the fly by the engine's simulator.

Only Colin27 and the MNI152 T1 template are used; a slab of each (the first
``validation_fraction`` of the left-right axis, plus a margin) is kept out of
training for validation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from isovox import datasets
from isovox.features import hr_inputs, lr_inputs
from isovox.fusion import fuse, resample
from isovox.grid import Grid, regrid_axis
from isovox.intensity import robust_max
from isovox.io import read_volume
from isovox.metrics import foreground_mask
from isovox.simulate import Acquisition, ProtocolRanges, sample_protocol, simulate_scan, simulate_scans
from isovox.volume import Volume

ALLOWED = ("colin27", "mni152", "colin27-sample")  # the training-data rule: nothing else may enter training


def volume_path(name: str):
    """colin27-sample is the bundled crop of Colin27 (for smoke tests without a download)."""
    if name == "colin27-sample":
        from isovox.sample import sample_reference_path

        return sample_reference_path()
    return datasets.fetch(name)


@dataclass
class TrainingVolume:
    name: str
    data: np.ndarray  # normalised to robust max 1
    mask: np.ndarray  # head
    split: int  # x index: [0, split) validation, [split + margin, n) training


def load_volumes(names: list[str], validation_fraction: float, margin: int = 8) -> list[TrainingVolume]:
    volumes = []
    for name in names:
        if name not in ALLOWED:
            raise ValueError(f"{name} may not be used for training (allowed: {ALLOWED})")
        vol = read_volume(volume_path(name))
        data = (vol.data / robust_max(vol.data)).astype(np.float32)
        split = int(round(data.shape[0] * validation_fraction))
        volumes.append(TrainingVolume(name, data, foreground_mask(data), split))
    return volumes


def crop_at(volume: TrainingVolume, centre: np.ndarray, size: tuple[int, int, int]) -> Optional[np.ndarray]:
    lo = [int(c) - s // 2 for c, s in zip(centre, size)]
    if any(l < 0 or l + s > n for l, s, n in zip(lo, size, volume.data.shape)):
        return None
    return volume.data[lo[0]:lo[0] + size[0], lo[1]:lo[1] + size[1], lo[2]:lo[2] + size[2]]


def random_contrast(crop: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A random tissue-intensity remap and a smooth bias field (the SynthSR idea).

    The remap is piecewise linear through random values at fixed intensities, so it may reorder
    tissues (T2-, PD- or FLAIR-like contrasts from a T1 volume); air stays dark. A network trained
    on such remaps learns the acquisition, not one contrast's intensities. Returns the crop and the
    remap's largest value over the head's intensity range (its robust maximum, for normalising).
    """
    knots = np.linspace(0.0, 1.2, 7)
    values = rng.uniform(0.05, 1.0, knots.size)
    values[0] = 0.0
    out = np.interp(crop, knots, values).astype(np.float32)
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in crop.shape]
    log_bias = sum(rng.normal(0.0, 0.1) * a.reshape([-1 if i == j else 1 for j in range(3)])
                   for i, a in enumerate(axes))
    return out * np.exp(log_bias), float(values[knots <= 1.0].max())


def augment(crop: np.ndarray, rng: np.random.Generator, contrast: float = 0.0) -> tuple[np.ndarray, float]:
    """Flips, a random axis order (90-degree rotations), intensity scale and gamma, and with
    probability ``contrast`` a random contrast (:func:`random_contrast`) first.

    Returns the crop and the intensity divisor to normalise it with: the whole augmented
    volume's robust maximum (the scale; gamma keeps a maximum of 1 at 1) times a jitter, so the
    network sees what a whole volume looks like at inference, give or take a different
    robust maximum on unseen scans.
    """
    peak = 1.0
    if contrast and rng.random() < contrast:
        crop, peak = random_contrast(crop, rng)
    crop = np.transpose(crop, rng.permutation(3))
    for axis in range(3):
        if rng.random() < 0.5:
            crop = np.flip(crop, axis)
    scale = rng.uniform(0.8, 1.2)
    gamma = rng.uniform(0.7, 1.4)
    crop = np.clip(crop, 0, None) ** gamma * scale
    return np.ascontiguousarray(crop, dtype=np.float32), float(peak ** gamma * scale * np.exp(rng.uniform(-0.2, 0.2)))


REFERENCE_MAX = 1.2  # robust maximum of other_contrast() over a whole head


def other_contrast(hr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A synthetic second contrast of the same anatomy (T2-like inverted tissue ordering)."""
    head = hr > 0.08
    gamma = rng.uniform(0.7, 1.5)
    ref = head * (0.2 + np.clip(1.0 - hr, 0, 1) ** gamma)
    return (ref + rng.normal(0, 0.01, ref.shape)).astype(np.float32)


class Sampler:
    """Draws crops inside the head from the training (or validation) region."""

    def __init__(self, volumes: list[TrainingVolume], validation: bool, margin: int, rng: np.random.Generator,
                 contrast: float = 0.0):
        self.volumes = volumes
        self.rng = rng
        self.contrast = contrast  # probability of a random contrast per crop (see augment)
        self.centres = []
        for vol in volumes:
            region = np.zeros_like(vol.mask)
            if validation:
                region[: vol.split] = True
            else:
                region[vol.split + margin:] = True
            self.centres.append(np.argwhere(vol.mask & region))

    def crop(self, size: tuple[int, int, int], tries: int = 2000) -> np.ndarray:
        for _ in range(tries):
            v = int(self.rng.integers(len(self.volumes)))
            centre = self.centres[v][self.rng.integers(len(self.centres[v]))]
            crop = crop_at(self.volumes[v], centre, size)
            if crop is not None:
                return crop
        raise ValueError(f"no {size} crop centred in the head fits in the sampling region; use smaller patches")


def hr_pair(hr: np.ndarray, protocol: list[Acquisition], guided: bool, rng: np.random.Generator,
            divisor: float = 1.0):
    """(inputs C x P^3, target 1 x P^3, loss mask) for HR-space networks.

    ``divisor``: the whole volume's robust maximum (1 for the normalised, unaugmented volumes).
    """
    volume = Volume(hr, np.eye(4))
    scans = simulate_scans(volume, protocol)
    reference = Volume(other_contrast(hr, rng), np.eye(4)) if guided else None
    reference_divisor = REFERENCE_MAX * float(np.exp(rng.uniform(-0.2, 0.2))) if guided else None
    inputs = hr_inputs(scans, Grid.of(volume), reference, divisor=divisor, reference_divisor=reference_divisor)
    target = (hr / inputs.scale)[None].astype(np.float32)
    mask = (inputs.fusion.coverage > 0)[None]
    return inputs.array, target, mask


def lr_pair(hr: np.ndarray, acq: Acquisition, factor: int, divisor: float = 1.0):
    """(LR inputs 2 x D x H x W, target on the x``factor`` grid) for MRL; slices along axis 0."""
    volume = Volume(hr, np.eye(4))
    scan = simulate_scan(volume, acq)
    fine = Grid((scan.shape[0] * factor, scan.shape[1], scan.shape[2]),
                regrid_axis(scan.affine, 0, 1.0 / factor, -0.5 + 0.5 / factor))
    target = resample(volume, fine).values
    lr = lr_inputs(scan, 1.0, axis=0, factor=factor, divisor=divisor)
    return lr.array, (target / lr.scale)[None].astype(np.float32)


def draw_protocol(rng: np.random.Generator, ranges: ProtocolRanges, clean_fraction: float = 0.0,
                  spacing: float = 1.0) -> list[Acquisition]:
    """A random protocol; with probability ``clean_fraction`` noise-free, so the network also learns
    to leave clean thin-slice detail alone instead of always denoising."""
    protocol = sample_protocol(rng, ranges, spacing=spacing)
    if rng.random() < clean_fraction:
        protocol = [replace(acq, noise=0.0) for acq in protocol]
    return protocol


def hr_batch(sampler: Sampler, size: int, patch: int, ranges: ProtocolRanges, guided: bool, augment_data: bool = True,
             clean_fraction: float = 0.0):
    xs, ys, ms = [], [], []
    for _ in range(size):
        crop = sampler.crop((patch, patch, patch))
        divisor = 1.0
        if augment_data:
            crop, divisor = augment(crop, sampler.rng, sampler.contrast)
        x, y, m = hr_pair(crop, draw_protocol(sampler.rng, ranges, clean_fraction), guided, sampler.rng, divisor)
        xs.append(x), ys.append(y), ms.append(m)
    return np.stack(xs), np.stack(ys), np.stack(ms)


def lr_batch(sampler: Sampler, size: int, slices: int, inplane: int, ranges: ProtocolRanges, factor: int,
             clean_fraction: float = 0.0):
    """A batch at one integer factor r; the slice thickness k is drawn from (r - 1, r]."""
    xs, ys = [], []
    for _ in range(size):
        k = float(sampler.rng.uniform(max(1.0, factor - 1) + 1e-3, factor))
        gap = float(sampler.rng.uniform(*ranges.gap_fraction)) * k
        step = k + gap
        length = int(np.ceil((slices - 1) * step + k)) + 1
        side = max(length, inplane)
        cube, divisor = augment(sampler.crop((side, side, side)), sampler.rng, sampler.contrast)  # any axis may be the slice axis
        a, b = (side - length) // 2, (side - inplane) // 2
        crop = np.ascontiguousarray(cube[a:a + length, b:b + inplane, b:b + inplane])
        acq = Acquisition(axis=0, scale=k, gap=gap, profile=str(sampler.rng.choice(ranges.profiles)),
                          noise=float(sampler.rng.uniform(*ranges.noise)) * (sampler.rng.random() >= clean_fraction),
                          seed=int(sampler.rng.integers(2**31)))
        x, y = lr_pair(crop, acq, factor, divisor)
        xs.append(x[:, :slices]), ys.append(y[:, : slices * factor])
    return np.stack(xs), np.stack(ys)


@dataclass
class ImplicitSample:
    """One ArSSR training item: encoder inputs, query points with their truth and CubeAvg values."""

    inputs: np.ndarray  # (C, *input grid)
    points: np.ndarray  # (P, 3) continuous input-grid indices of HR voxel centres
    target: np.ndarray  # (P,) HR truth / divisor
    baseline: np.ndarray  # (P,) CubeAvg of the same scans on the HR grid / divisor
    cell: np.ndarray  # (3,) HR voxel size in input voxels


def coarsen(volume: Volume, factor: float) -> Volume:
    """The volume as if acquired with isotropic voxels ``factor`` times larger (box average per axis)."""
    for axis in range(3):
        volume = simulate_scan(volume, Acquisition(axis=axis, scale=factor))
    return volume


def implicit_pair(hr: np.ndarray, protocol: list[Acquisition], rng: np.random.Generator, divisor: float = 1.0,
                  coarsening: float = 1.0, points: Optional[int] = 4096, border: int = 4) -> ImplicitSample:
    """Scans simulated from ``hr`` first coarsened by ``coarsening`` (so outputs finer than the input
    grid are learned too); queries at HR voxel centres at least ``border`` voxels inside the crop."""
    from isovox.implicit import index_map, output_cell

    volume = Volume(hr, np.eye(4))
    base = coarsen(volume, coarsening) if coarsening > 1.001 else volume
    scans = simulate_scans(base, protocol)
    in_grid, hr_grid = Grid.of(base), Grid.of(volume)
    inputs = hr_inputs(scans, in_grid, divisor=divisor)
    cubeavg = fuse(scans, grid=hr_grid).volume.data / divisor
    mapping = index_map(in_grid, hr_grid)
    idx = np.argwhere(np.ones(tuple(n - 2 * border for n in hr.shape), bool)) + border
    where = idx @ mapping[:3, :3].T + mapping[:3, 3]
    inside = np.all((where >= 0) & (where <= np.asarray(in_grid.shape) - 1), axis=1)
    idx, where = idx[inside], where[inside]
    if points is not None and points < len(idx):
        pick = rng.choice(len(idx), points, replace=False)
        idx, where = idx[pick], where[pick]
    ii = tuple(idx.T)
    return ImplicitSample(inputs.array, where.astype(np.float32), (hr[ii] / divisor).astype(np.float32),
                          cubeavg[ii].astype(np.float32), output_cell(mapping).astype(np.float32))


def implicit_batch(sampler: Sampler, size: int, patch: int, ranges: ProtocolRanges, coarsening: tuple[float, float],
                   points: int, clean_fraction: float = 0.0) -> list[ImplicitSample]:
    """Half the batches keep the HR in-plane spacing (output = input grid); the rest coarsen it first.

    One coarsening per batch, so every item's inputs have one shape and the encoder runs batched.
    """
    factor = 1.0 if sampler.rng.random() < 0.5 else float(sampler.rng.uniform(*coarsening))
    items = []
    for _ in range(size):
        crop, divisor = augment(sampler.crop((patch, patch, patch)), sampler.rng, sampler.contrast)
        protocol = draw_protocol(sampler.rng, ranges, clean_fraction, spacing=factor)
        items.append(implicit_pair(crop, protocol, sampler.rng, divisor, factor, points))
    return items
