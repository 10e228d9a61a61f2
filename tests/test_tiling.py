"""Tiled inference equals whole-volume inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from isovox.nets import build
from isovox.tiling import FLIPS, FlipEnsemble, TorchPredictor, choose_tile, flip_inputs, run_tiled, tiled_inference


def box_filter(radius: int):
    """A predictor whose output is known: a (2r+1)^3 mean with zero padding, like a conv net."""
    def predict(x: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(x[:1], size=(1,) + (2 * radius + 1,) * 3, mode="constant")
    return predict


@pytest.mark.parametrize("tile", [(5, 7, 9), (8, 8, 8), (30, 30, 30)])
def test_stitching_is_exact_with_a_known_predictor(tile):
    x = np.random.default_rng(0).normal(size=(1, 19, 23, 17)).astype(np.float32)
    whole = box_filter(2)(x)
    tiled = tiled_inference(x, box_filter(2), tile, halo=(2, 2, 2))
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


@pytest.mark.parametrize("tile", [(4, 5, 6), (30, 30, 30)])
def test_a_region_reads_its_halo_from_the_whole_volume(tile):
    x = np.random.default_rng(5).normal(size=(1, 19, 23, 17)).astype(np.float32)
    region = (slice(3, 15), slice(0, 9), slice(6, 17))
    part = tiled_inference(x, box_filter(2), tile, halo=(2, 2, 2), region=region)
    np.testing.assert_allclose(part, box_filter(2)(x)[(slice(None),) + region], atol=1e-6)


def test_balanced_tiles_fit_the_budget_and_recompute_less():
    shape, halo, bpv, budget = (256, 256, 256), (10, 10, 10), 700.0, 1.5e9
    core = choose_tile(shape, halo, bpv, budget)
    longest = [min(n, c + (2 * h if n > 2 * c else h)) for n, c, h in zip(shape, core, halo)]
    assert np.prod(longest) * bpv <= budget
    processed = np.prod([sum(min(n, s + c + h) - max(0, s - h) for s in range(0, n, c))
                         for n, c, h in zip(shape, core, halo)])
    greedy = int((budget / bpv) ** (1 / 3)) - 2 * halo[0]  # one cube fitted with halos on both sides
    greedy_processed = np.prod([sum(min(n, s + greedy + h) - max(0, s - h) for s in range(0, n, greedy))
                                for n, h in zip(shape, halo)])
    assert processed < 0.9 * greedy_processed


def test_too_small_a_halo_is_visible():
    x = np.random.default_rng(1).normal(size=(1, 20, 20, 20)).astype(np.float32)
    tiled = tiled_inference(x, box_filter(3), (6, 6, 6), halo=(1, 1, 1))
    assert np.abs(tiled - box_filter(3)(x)).max() > 1e-3


def test_upsampling_predictor_output_grid():
    x = np.random.default_rng(2).normal(size=(1, 9, 10, 11)).astype(np.float32)

    def predict(piece):  # x3 along the first axis, then a box filter on the fine grid
        return box_filter(1)(np.repeat(piece, 3, axis=1))

    whole = predict(x)
    tiled = tiled_inference(x, predict, (4, 5, 6), halo=(1, 1, 1), scale=(3, 1, 1))
    assert tiled.shape == (1, 27, 10, 11)
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


@pytest.mark.parametrize("architecture,kwargs", [
    ("isosrn", dict(channels=4, blocks=2, in_channels=3, image_residual=True)),
    ("recnn", dict(layers=4, filters=4, in_channels=3)),
])
def test_tiled_network_matches_whole_volume(architecture, kwargs):
    torch.manual_seed(0)
    net = build(architecture, **kwargs)
    x = np.random.default_rng(3).normal(size=(3, 21, 18, 25)).astype(np.float32)
    whole = TorchPredictor(net, "cpu", "fp32")(x)
    halo = (net.receptive_radius,) * 3
    tiled = tiled_inference(x, TorchPredictor(net, "cpu", "fp32"), (8, 9, 10), halo)
    assert np.abs(tiled - whole).max() <= 1e-5
    again = run_tiled(net, x, halo, budget_bytes=5e5, bytes_per_voxel=64)
    np.testing.assert_array_equal(again, run_tiled(net, x, halo, budget_bytes=5e5, bytes_per_voxel=64))


def test_tile_size_follows_the_memory_budget():
    small = choose_tile((256, 256, 256), (12, 12, 12), bytes_per_voxel=1000, budget_bytes=64e6)
    large = choose_tile((256, 256, 256), (12, 12, 12), bytes_per_voxel=1000, budget_bytes=1e9)
    assert max(small) < max(large) <= 256
    assert (small[0] + 24) ** 3 * 1000 <= 64e6 * 1.01 or small[0] == 16


@pytest.mark.parametrize("base", ["bspline", "cubic", "trilinear"])
def test_tiled_mrl_matches_whole_volume_on_the_fine_grid(base):
    from isovox.nets.mrl import FixedFactor

    torch.manual_seed(1)
    net = FixedFactor(build("mrl", channels=4, units=2, in_channels=2, base=base), 3)
    channels = 2 + 3 if base == "bspline" else 2  # the B-spline base arrives as r extra channels
    x = np.random.default_rng(4).normal(size=(channels, 11, 14, 13)).astype(np.float32)
    whole = TorchPredictor(net, "cpu", "fp32")(x)
    tiled = tiled_inference(x, TorchPredictor(net, "cpu", "fp32"), (4, 6, 5), (net.receptive_radius,) * 3,
                            scale=(3, 1, 1))
    assert tiled.shape == (1, 33, 14, 13)
    assert np.abs(tiled - whole).max() <= 1e-5


def shifted_filter(x: np.ndarray) -> np.ndarray:
    """An asymmetric predictor (a one-sided box filter, zero padding): each flip gives another result."""
    return ndimage.correlate(x[:1], np.ones((1, 3, 2, 1), np.float32) / 6.0, mode="constant", origin=(0, 1, 0, 0))


@pytest.mark.parametrize("tile", [(4, 5, 6), (7, 7, 7)])
def test_flip_ensemble_per_tile_equals_the_whole_volume_mean_over_the_8_flips(tile):
    x = np.random.default_rng(3).normal(size=(1, 13, 11, 9)).astype(np.float32)
    flipped_back = [np.flip(shifted_filter(np.ascontiguousarray(np.flip(x, tuple(a + 1 for a in axes)))),
                        tuple(a + 1 for a in axes)) for axes in FLIPS]
    assert len(FLIPS) == 8 and len({axes for axes in FLIPS}) == 8
    whole = np.mean(flipped_back, axis=0)
    assert np.abs(whole - flipped_back[0]).max() > 1e-3
    tiled = tiled_inference(x, FlipEnsemble(shifted_filter), tile, halo=(2, 2, 2))
    np.testing.assert_allclose(tiled, whole, atol=1e-6)


def test_flipping_the_slice_axis_reverses_the_subslice_channels():
    x = np.arange(6 * 2 * 2 * 2, dtype=np.float32).reshape(6, 2, 2, 2)
    out = flip_inputs(x, (0,), subslice_channels=4)
    np.testing.assert_array_equal(out[:2], x[:2, ::-1])
    np.testing.assert_array_equal(out[2:6], x[2:6][::-1, ::-1])
    np.testing.assert_array_equal(flip_inputs(x, (1, 2), subslice_channels=4), x[:, :, ::-1, ::-1])


def test_flip_ensemble_mirrors_query_points_for_implicit_decoders():
    x = np.random.default_rng(4).normal(size=(1, 6, 5, 4)).astype(np.float32)
    points = np.array([[0.0, 0.0, 0.0], [2.5, 1.0, 3.0], [5.0, 4.0, 0.5]], np.float32)

    def sample(piece: np.ndarray, at: np.ndarray) -> np.ndarray:  # trilinear value of the first channel
        return ndimage.map_coordinates(piece[0], at.T, order=1)

    expected = np.mean([sample(np.flip(x, tuple(a + 1 for a in axes)).copy(),
                               np.array([[(n - 1 - p[a]) if a in axes else p[a] for a, n in enumerate(x.shape[1:])]
                                         for p in points], np.float32)) for axes in FLIPS], axis=0)
    np.testing.assert_allclose(FlipEnsemble(sample)(x, points), expected, atol=1e-6)
    np.testing.assert_allclose(expected, sample(x, points), atol=1e-5)  # mirrored lookups find the same values
