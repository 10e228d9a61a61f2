"""Unpaired data for the CT-guided method: a thick-slice MR volume and a real HR CT head.

No HR MRI enters training: the MR side is Colin27 re-sliced x4 along one axis (only its LR
scan is kept, and only the region outside the validation slab is sampled); the CT side is
the CT head from Debian's ``invesalius-examples``. The degradation ``degrade`` is the
engine's own simulator followed by the engine's own network inputs, so the pairs the SRNet
learns from are made exactly as its inputs are made at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isovox import datasets
from isovox.features import hr_inputs
from isovox.grid import Grid
from isovox.intensity import robust_max
from isovox.io import read_volume
from isovox.simulate import Acquisition, simulate_scan
from isovox.volume import Volume

from .data import volume_path

CT_WINDOW_HU = (-50.0, 150.0)  # a brain window: CSF dark, grey/white matter mid-grey, bone bright, as T1 MR
MR_ALLOWED = ("colin27", "colin27-sample")  # degraded before use; no HR MRI is ever sampled
CT_ALLOWED = ("ct_head", "ct-sample")


def window_ct(hu: np.ndarray) -> np.ndarray:
    lo, hi = CT_WINDOW_HU
    return np.clip((np.asarray(hu, np.float32) - lo) / (hi - lo), 0.0, 1.0)


def degrade(image: np.ndarray, axis: int, k: float) -> np.ndarray:
    """D(.): the network inputs of ``image`` (normalised, 1 mm voxels) re-acquired k-fold thick along ``axis``."""
    volume = Volume(np.ascontiguousarray(image, dtype=np.float32), np.eye(4))
    scan = simulate_scan(volume, Acquisition(axis=axis, scale=float(k)))
    return hr_inputs([scan], Grid.of(volume), divisor=1.0).array


@dataclass
class MRSource:
    """The LR MR as the SRNet sees it: network inputs on the 1 mm grid (fused / robust max, distance, k)."""

    inputs: np.ndarray  # (3, X, Y, Z)
    axis: int  # the thick axis
    k: int
    centres: np.ndarray  # crop centres: inside the head, outside the validation slab


@dataclass
class CTSource:
    image: np.ndarray  # windowed to [0, 1], native grid (0.96 x 0.96 x 1.5 mm treated as 1 voxel)
    inplane: tuple[int, int]  # the sharp axes, the only ones re-sliced thick
    centres: np.ndarray


def load_mr(name: str, axis: int, k: int, validation_fraction: float, margin: int = 8) -> MRSource:
    if name not in MR_ALLOWED:
        raise ValueError(f"{name} may not be the MR side of CT-guided training (allowed: {MR_ALLOWED})")
    hr = read_volume(volume_path(name)).data
    hr = (hr / robust_max(hr)).astype(np.float32)
    grid_volume = Volume(hr, np.eye(4))
    scan = simulate_scan(grid_volume, Acquisition(axis=axis, scale=float(k)))
    del hr  # from here on only the thick-slice scan exists
    inputs = hr_inputs([scan], Grid.of(grid_volume)).array
    split = int(round(inputs.shape[1] * validation_fraction))
    region = np.zeros(inputs.shape[1:], bool)
    region[split + margin:] = True
    return MRSource(inputs, axis, k, np.argwhere(region & (inputs[0] > 0.1)))


def load_ct(name: str) -> CTSource:
    if name not in CT_ALLOWED:
        raise ValueError(f"{name} may not be the CT side of CT-guided training (allowed: {CT_ALLOWED})")
    if name == "ct-sample":  # a small synthetic CT-like head for smoke tests
        from isovox.phantoms import phantom

        image = window_ct(phantom((40, 40, 24)))  # values around 100 "HU"
    else:
        vol = read_volume(datasets.fetch(name))
        image = window_ct(vol.data)
        thin = np.argsort(vol.spacing)[:2]
        inplane = (int(min(thin)), int(max(thin)))
        return CTSource(image, inplane, np.argwhere(image > 0.2))
    return CTSource(image, (0, 1), np.argwhere(image > 0.2))


def _crop(array: np.ndarray, centres: np.ndarray, size: int, rng: np.random.Generator, step_axis: int = -1,
          step: int = 1) -> np.ndarray:
    """A ``size``^3 crop (last three axes) centred near a random centre; along ``step_axis`` it
    starts on a multiple of ``step`` (so thick slices stay where they were acquired)."""
    shape = array.shape[-3:]
    if any(n < size for n in shape):
        raise ValueError(f"volume {shape} is smaller than the {size}^3 training crop")
    centre = centres[int(rng.integers(len(centres)))]
    start = [int(np.clip(c - size // 2, 0, n - size)) for c, n in zip(centre, shape)]
    if step_axis >= 0:
        start[step_axis] = int(np.clip(round(start[step_axis] / step) * step, 0, (shape[step_axis] - size) // step * step))
    index = (Ellipsis,) + tuple(slice(s, s + size) for s in start)
    return np.ascontiguousarray(array[index])


def _orient(array: np.ndarray, axis: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Random axis order and flips of the last three axes; returns where ``axis`` went."""
    order = rng.permutation(3)
    out = np.transpose(array, tuple(range(array.ndim - 3)) + tuple(array.ndim - 3 + order))
    for a in range(3):
        if rng.random() < 0.5:
            out = np.flip(out, array.ndim - 3 + a)
    return np.ascontiguousarray(out), int(np.where(order == axis)[0][0])


def mr_crop(source: MRSource, size: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """(network inputs 3 x size^3, thick axis in the crop); ``size`` must be a multiple of k."""
    crop = _crop(source.inputs, source.centres, size, rng, source.axis, source.k)
    return _orient(crop, source.axis, rng)


def ct_pair(source: CTSource, size: int, k: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stage 1: (inputs D(y_H), target y_H) with a sharp in-plane axis of the CT re-sliced k-fold."""
    crop = _crop(source.image, source.centres, size, rng)
    crop, thick = _orient(crop, source.inplane[int(rng.integers(2))], rng)
    return degrade(crop, thick, k), crop[None]


def ct_crop(source: CTSource, size: int, rng: np.random.Generator) -> np.ndarray:
    crop = _crop(source.image, source.centres, size, rng)
    return _orient(crop, source.inplane[0], rng)[0][None]


def mr_inplane_pair(source: MRSource, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """(inputs, target, the scan's slice axis in the crop) from the LR MR alone: one of its sharp
    in-plane axes re-sliced k-fold thick.

    The target is the thick-slice scan itself (still blurred along its real slice axis), so the
    pair holds no HR MRI; it shows the SRNet MR contrast at the degradation it must undo (SMORE).
    """
    crop = _crop(source.inputs[0], source.centres, size, rng)
    crop, thick = _orient(crop, source.axis, rng)
    inplane = [a for a in range(3) if a != thick]
    return degrade(crop, inplane[int(rng.integers(2))], source.k), crop[None], thick
