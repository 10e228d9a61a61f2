"""Tiled inference: run a network on a volume of any size in bounded memory.

:func:`tiled_inference` is a pure function of arrays and a predictor. Tiles
overlap by a halo at least the network's receptive-field radius and only each
tile's core is kept, so the stitched output equals whole-volume inference (the
networks use zero padding, and tiles are clipped at the volume border exactly
where the whole volume ends). The output grid may be finer than the input grid
by an integer factor per axis (LR-space networks).
"""

from __future__ import annotations

import itertools
from typing import Callable, Optional, Sequence

import numpy as np

from .progress import Task, ensure_task

Predictor = Callable[[np.ndarray], np.ndarray]
TILE_BUDGET_BYTES = 1.5e9  # activation memory tiles may use; the engine's memory check counts it
FLIPS: tuple[tuple[int, ...], ...] = tuple(
    tuple(a for a, f in enumerate(flip) if f) for flip in itertools.product((False, True), repeat=3))


def default_precision(device: str) -> str:
    """Half precision on CUDA; fp32 elsewhere (bf16 autocast is only fast on CPUs with native bf16)."""
    return "fp16" if str(device).startswith("cuda") else "fp32"


def flip_inputs(inputs: np.ndarray, axes: Sequence[int], subslice_channels: int = 0) -> np.ndarray:
    """``inputs`` (C, D, H, W) flipped along spatial ``axes`` (0-2).

    LR-space inputs hold the sub-slices of each slice in channels 2..2+r, whose order
    reverses with spatial axis 0."""
    if not axes:
        return inputs
    out = np.flip(inputs, tuple(a + 1 for a in axes))
    if subslice_channels and 0 in axes:
        out = out.copy()
        out[2:2 + subslice_channels] = out[2:2 + subslice_channels][::-1]
    return np.ascontiguousarray(out)


class FlipEnsemble:
    """A predictor averaged over the 8 flips of its tile's three spatial axes (isoSRN+ and the like).

    Applied per tile: a flipped tile (halo included) is a tile of the flipped volume, so the
    stitched result equals the whole-volume ensemble. With ``points`` (implicit decoders) the
    query points, in tile voxel indices, are mirrored instead of the output.
    """

    def __init__(self, predictor: Callable[..., np.ndarray], subslice_channels: int = 0) -> None:
        self.predictor = predictor
        self.subslice_channels = subslice_channels

    def __call__(self, piece: np.ndarray, points: Optional[np.ndarray] = None) -> np.ndarray:
        total: Optional[np.ndarray] = None
        for axes in FLIPS:
            flipped = flip_inputs(piece, axes, self.subslice_channels)
            if points is None:
                out = self.predictor(flipped)
                out = np.flip(out, tuple(a + 1 for a in axes)) if axes else out
            else:
                mirrored = np.array(points, dtype=np.float32, copy=True)
                for a in axes:
                    mirrored[:, a] = (piece.shape[a + 1] - 1) - mirrored[:, a]
                out = self.predictor(flipped, mirrored)
            total = np.asarray(out, np.float64) if total is None else total + out
        assert total is not None
        return (total / len(FLIPS)).astype(np.float32)


def tile_starts(length: int, core: int) -> list[int]:
    return list(range(0, length, core))


def tiled_inference(
    inputs: np.ndarray,
    predictor: Predictor,
    tile: Sequence[int],
    halo: Sequence[int],
    scale: Sequence[int] = (1, 1, 1),
    out_channels: int = 1,
    task: Optional[Task] = None,
    region: Optional[Sequence[slice]] = None,
) -> np.ndarray:
    """Apply ``predictor`` to ``inputs`` (C, D, H, W) tile by tile.

    ``tile`` is the core size kept from each tile (input voxels), ``halo`` the
    context added on each side; ``predictor`` maps (C, d, h, w) to
    (out_channels, d*s0, h*s1, w*s2). ``region`` (slices of the input grid) limits
    the output to that box; its tiles still read their halo from the whole input, so
    every output voxel equals whole-volume inference.
    """
    task = ensure_task(task)
    shape = inputs.shape[1:]
    scale = tuple(int(s) for s in scale)
    region = [slice(*r.indices(n)[:2]) for r, n in zip(region or (slice(None),) * 3, shape)]
    size = [r.stop - r.start for r in region]
    out = np.empty((out_channels,) + tuple(n * s for n, s in zip(size, scale)), dtype=np.float32)
    core = [max(1, min(int(t), n)) for t, n in zip(tile, size)]
    starts = [[r.start + s for s in tile_starts(n, c)] for r, n, c in zip(region, size, core)]
    total = int(np.prod([len(s) for s in starts]))
    for count, corner in enumerate(itertools.product(*starts), start=1):
        lo = [max(0, c - h) for c, h in zip(corner, halo)]
        hi = [min(n, c + k + h) for c, k, h, n in zip(corner, core, halo, shape)]
        end = [min(r.stop, c + k) for c, k, r in zip(corner, core, region)]
        piece = inputs[(slice(None),) + tuple(slice(a, b) for a, b in zip(lo, hi))]
        result = predictor(np.ascontiguousarray(piece))
        keep = tuple(slice((c - a) * s, (e - a) * s) for c, a, e, s in zip(corner, lo, end, scale))
        target = tuple(slice((c - r.start) * s, (e - r.start) * s) for c, e, r, s in zip(corner, end, region, scale))
        out[(slice(None),) + target] = result[(slice(None),) + keep]
        task.update(count / total, f"tile {count}/{total}")
    return out


def _axis_split(n: int, halo: int, count: int, room: tuple[int, int] = (0, 0)) -> tuple[int, int, int]:
    """(core, longest tile, voxels processed along the axis) for ``count`` balanced tiles;
    ``room``: input voxels beyond the output's two ends a halo may read."""
    core = -(-n // count)
    lengths = [min(n + room[1], s + core + halo) - max(-room[0], s - halo) for s in range(0, n, core)]
    return core, max(lengths), sum(lengths)


def choose_tile(shape: Sequence[int], halo: Sequence[int], bytes_per_voxel: float, budget_bytes: float,
                minimum: int = 16, room: Optional[Sequence[tuple[int, int]]] = None) -> tuple[int, int, int]:
    """Balanced tile cores whose largest tile (core + halo) fits ``budget_bytes`` and that together
    recompute the fewest halo voxels.

    ``bytes_per_voxel`` is the network's peak activation memory per tile voxel. Edge tiles carry a
    halo on one side only, so two tiles of n/2 + halo can fit where one interior tile would not.
    """
    limit = budget_bytes / max(bytes_per_voxel, 1.0)
    room = room or [(0, 0)] * 3
    splits = [[_axis_split(n, h, m, r) for m in range(1, max(1, -(-n // minimum)) + 1)]
              for n, h, r in zip(shape, halo, room)]
    best, best_cost = None, None
    for first in splits[0]:
        for second in splits[1]:
            space = limit / (first[1] * second[1])  # voxels left for the third axis
            third = next((t for t in splits[2] if t[1] <= space), None)
            if third is None:
                continue
            cost = (first[2] * second[2] * third[2], -first[0] * second[0] * third[0])
            if best_cost is None or cost < best_cost:
                best, best_cost = (first[0], second[0], third[0]), cost
    if best is None:  # nothing fits: the smallest tiles allowed
        best = tuple(axis[-1][0] for axis in splits)
    return tuple(int(c) for c in best)  # type: ignore[return-value]


class TorchPredictor:
    """Runs a torch module on numpy tiles: device, precision and channels-last handled here."""

    def __init__(self, module, device: str = "cpu", precision: str = "auto") -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.precision = default_precision(self.device.type) if precision in ("auto", None) else precision
        self.module = module.to(self.device).eval()
        if self.device.type == "cpu":
            self.module = self.module.to(memory_format=torch.channels_last_3d)

    def __call__(self, piece: np.ndarray) -> np.ndarray:
        torch = self.torch
        x = torch.from_numpy(piece[None]).to(self.device)
        if self.device.type == "cpu":  # oneDNN's channels-last conv3d is ~1.5x faster on CPU
            x = x.contiguous(memory_format=torch.channels_last_3d)
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)
        with torch.inference_mode():
            if dtype is not None:
                with torch.autocast(self.device.type, dtype=dtype):
                    y = self.module(x)
            else:
                y = self.module(x)
        return y[0].float().cpu().numpy()


def run_tiled(module, inputs: np.ndarray, halo: Sequence[int], scale: Sequence[int] = (1, 1, 1),
              device: str = "cpu", precision: Optional[str] = None, budget_bytes: float = TILE_BUDGET_BYTES,
              bytes_per_voxel: float = 2048.0, task: Optional[Task] = None,
              region: Optional[Sequence[slice]] = None, ensemble: bool = False,
              subslice_channels: int = 0) -> np.ndarray:
    """Tiled inference of a torch module, falling back to smaller tiles (then the CPU) on GPU memory errors.

    ``region``: compute only this box of the output (see :func:`tiled_inference`); ``ensemble``:
    average each tile over the 8 flips (:class:`FlipEnsemble`)."""
    network = TorchPredictor(module, device, precision)
    predictor = FlipEnsemble(network, subslice_channels) if ensemble else network
    budget = budget_bytes
    shape = inputs.shape[1:]
    bounds = [r.indices(n)[:2] for r, n in zip(region or (slice(None),) * 3, shape)]
    size = [b - a for a, b in bounds]
    room = [(a, n - b) for (a, b), n in zip(bounds, shape)]
    while True:
        tile = choose_tile(size, halo, bytes_per_voxel, budget, room=room)
        try:
            return tiled_inference(inputs, predictor, tile, halo, scale, task=task, region=region)
        except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError
            if network.device.type != "cuda" or "out of memory" not in str(exc).lower():
                raise
            network.torch.cuda.empty_cache()
            if budget > 64e6:
                budget /= 4
            else:
                network = TorchPredictor(module, "cpu", "fp32")
                predictor = FlipEnsemble(network, subslice_channels) if ensemble else network
