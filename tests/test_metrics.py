"""Metrics: known values, masks, and comparison across grids."""

from __future__ import annotations

import numpy as np
import pytest

from isovox.grid import Grid
from isovox.metrics import aligned_to, evaluate, foreground_mask, psnr, ssim
from isovox.phantoms import phantom
from isovox.volume import Volume


def test_psnr_known_value():
    ref = np.zeros((10, 10, 10))
    ref[2:8, 2:8, 2:8] = 100.0  # robust max 100
    noisy = ref + 10.0  # error 0.1 of the peak everywhere
    assert psnr(noisy, ref) == pytest.approx(20.0)
    assert psnr(ref, ref) == float("inf")
    mask = ref > 0
    noisy[~mask] = 1000.0  # errors outside the mask do not count
    assert psnr(noisy, ref, mask) == pytest.approx(20.0)


def test_ssim_is_one_for_identical_and_drops_with_noise(rng):
    ref = phantom((24, 24, 24))
    assert ssim(ref, ref) == pytest.approx(1.0)
    noisy = ref + rng.normal(0, 20, ref.shape)
    assert ssim(noisy, ref) < 0.95


def test_foreground_mask_covers_the_head():
    data = phantom((30, 30, 30))
    mask = foreground_mask(data)
    assert mask[15, 15, 15] and not mask[0, 0, 0]


def test_aligned_to_reindexes_permuted_grids_exactly(rng, make_oblique_affine):
    vol = Volume(phantom((12, 14, 10)), make_oblique_affine(rng))
    stored = vol.transposed((2, 0, 1)).flipped((0, 2))
    values, covered = aligned_to(stored, Grid.of(vol))
    assert covered.all()
    np.testing.assert_array_equal(values, vol.data)


def test_evaluate_handles_a_partial_and_a_resampled_result(rng, make_oblique_affine):
    ref = Volume(phantom((20, 20, 20)), make_oblique_affine(rng))
    crop = Volume(ref.data[:10], ref.affine)
    scores = evaluate(crop, ref)
    assert scores["psnr"] == float("inf") and scores["voxels_compared"] == 10 * 20 * 20
    shifted = Volume(ref.data, ref.affine @ np.array([[1, 0, 0, 0.5], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    moved = evaluate(shifted, ref)
    assert moved["resampled"] and np.isfinite(moved["psnr"]) and moved["psnr"] < 60


def test_contrast_kept_is_one_for_the_truth_and_zero_without_the_lesions():
    from isovox.metrics import contrast_kept
    from isovox.simulate import random_lesions
    from isovox.volume import Volume

    head = Volume(np.full((40, 40, 40), 100.0, np.float32), np.eye(4), {})  # flat: shells see no edge
    truth, centres, radii = random_lesions(head, count=5, margin=10, seed=1)
    assert len(centres) == len(radii) == 5
    assert contrast_kept(truth.data, truth.data, centres, radii) == pytest.approx(1.0)
    assert contrast_kept(head.data, truth.data, centres, radii) == pytest.approx(0.0, abs=1e-6)
