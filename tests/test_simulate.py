"""Acquisition simulator: slab geometry, profiles, noise and replay."""

from __future__ import annotations

import numpy as np
import pytest

from isovox.errors import InputError
from isovox.grid import target_grid
from isovox.phantoms import phantom
from isovox.simulate import Acquisition, ProtocolRanges, sample_protocol, simulate_scan, slab_layout
from isovox.volume import Volume


def test_thick_slice_sits_at_the_centre_of_its_slab(hr_oblique):
    """Half-voxel convention: slice j of a x4 scan is centred between HR voxels 4j+1 and 4j+2."""
    scan = simulate_scan(hr_oblique, Acquisition(axis=1, scale=4))
    for j in range(scan.shape[1]):
        slab = [4 * j + m for m in range(4)]
        expected = hr_oblique.index_to_world(np.array([3, np.mean(slab), 5]))
        np.testing.assert_allclose(scan.index_to_world(np.array([3, j, 5])), expected, atol=1e-9)
    # and its value is the mean of that slab (box profile, partial-volume average)
    np.testing.assert_allclose(scan.data[:, 2, :], hr_oblique.data[:, 8:12, :].mean(axis=1), rtol=1e-5, atol=1e-4)


def test_scale_one_returns_the_input(hr_oblique):
    scan = simulate_scan(hr_oblique, Acquisition(axis=2, scale=1.0))
    np.testing.assert_allclose(scan.data, hr_oblique.data, atol=1e-4)
    np.testing.assert_allclose(scan.affine, hr_oblique.affine, atol=1e-12)


def test_fractional_scale_and_gap_geometry(hr_oblique):
    acq = Acquisition(axis=0, scale=2.5, gap=0.5)  # 1 mm voxels: 2.5 mm slices every 3 mm
    scan = simulate_scan(hr_oblique, acq)
    assert scan.shape[0] == len(slab_layout(40, 2.5, 3.0)) == 13
    np.testing.assert_allclose(scan.spacing[0], 3.0)
    np.testing.assert_allclose(scan.index_to_world(np.zeros(3)), hr_oblique.index_to_world([0.75, 0, 0]))
    assert scan.meta["slice_thickness"] == pytest.approx(2.5)
    assert scan.meta["spacing_between_slices"] == pytest.approx(3.0)


def test_profiles_preserve_mean_intensity():
    hr = Volume(np.full((30, 8, 8), 7.0), np.eye(4))
    for profile in ("box", "gaussian"):
        scan = simulate_scan(hr, Acquisition(axis=0, scale=3.3, profile=profile))
        np.testing.assert_allclose(scan.data, 7.0, rtol=1e-6)
    custom = Acquisition(axis=0, scale=3, profile="custom", profile_samples=(0, 1, 2, 1, 0))
    np.testing.assert_allclose(simulate_scan(hr, custom).data, 7.0, rtol=1e-6)


def test_gaussian_profile_blurs_more_than_box():
    data = np.zeros((40, 4, 4))
    data[20] = 1.0  # a thin bright line
    hr = Volume(data, np.eye(4))
    box = simulate_scan(hr, Acquisition(axis=0, scale=4, profile="box")).data[:, 0, 0]
    gauss = simulate_scan(hr, Acquisition(axis=0, scale=4, profile="gaussian")).data[:, 0, 0]
    assert np.count_nonzero(box > 1e-6) == 1  # the line falls in one slab only
    assert np.count_nonzero(gauss > 1e-3) >= 2  # Gaussian tails reach the neighbours


def test_random_protocol_is_replayable(hr_oblique):
    rng = np.random.default_rng(5)
    protocol = sample_protocol(rng, ProtocolRanges(noise=(0.02, 0.05)))
    assert 1 <= len(protocol) <= 3
    first = [simulate_scan(hr_oblique, a) for a in protocol]
    replayed = [simulate_scan(hr_oblique, Acquisition.from_dict(a.to_dict())) for a in protocol]
    for a, b in zip(first, replayed):
        np.testing.assert_array_equal(a.data, b.data)
        np.testing.assert_array_equal(a.affine, b.affine)


def test_rician_noise_level():
    hr = Volume(np.zeros((8, 64, 64)), np.eye(4))
    hr_bright = Volume(np.r_[np.zeros((7, 64, 64)), np.full((1, 64, 64), 200.0)], np.eye(4))
    scan = simulate_scan(hr_bright, Acquisition(axis=0, scale=1, noise=0.05, seed=3))
    sigma = 0.05 * 200.0
    background = scan.data[:6]
    # Rician noise on zero signal is Rayleigh: mean sigma * sqrt(pi/2)
    assert background.mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.05)
    # at high SNR Rician noise is nearly Gaussian around sqrt(A^2 + sigma^2), with standard deviation sigma
    bright = scan.data[7]
    assert bright.mean() == pytest.approx(np.sqrt(200.0**2 + sigma**2), rel=0.01)
    assert bright.std() == pytest.approx(sigma, rel=0.1)
    assert hr.data.max() == 0


def test_refused_parameters():
    with pytest.raises(InputError):
        Acquisition(axis=3, scale=2)
    with pytest.raises(InputError):
        Acquisition(axis=0, scale=0.5)
    with pytest.raises(InputError):
        Acquisition(axis=0, scale=2, profile="sinc")
    with pytest.raises(InputError, match="gap"):
        simulate_scan(Volume(np.ones((10, 4, 4)), np.eye(4)), Acquisition(axis=0, scale=2, gap=-2))
    with pytest.raises(InputError, match="fewer than one slice"):
        simulate_scan(Volume(np.ones((3, 4, 4)), np.eye(4)), Acquisition(axis=0, scale=4))


@pytest.mark.parametrize("perm,flips", [((0, 1, 2), ()), ((2, 0, 1), (0,)), ((1, 2, 0), (1, 2))])
def test_target_grid_recovers_the_source_grid(rng, perm, flips, make_oblique_affine):
    """Scans cut from one grid, asked for its spacing, give back exactly that grid (up to axis order)."""
    hr = Volume(phantom((24, 28, 20)), make_oblique_affine(rng, (0.9, 0.9, 0.9)))
    scans = [simulate_scan(hr, Acquisition(axis=a, scale=4)).transposed(perm).flipped(flips) for a in range(3)]
    grid = target_grid(scans, 0.9)
    mapping = np.linalg.inv(hr.affine) @ grid.affine
    assert np.allclose(np.abs(mapping[:3, :3]), np.abs(mapping[:3, :3]).round(), atol=1e-9)
    assert np.allclose(mapping[:3, 3], mapping[:3, 3].round(), atol=1e-6)  # centres on centres
    assert sorted(grid.shape) == sorted(hr.shape)
    hr_axis = np.argmax(np.abs(mapping[:3, :3]), axis=0)  # the HR axis each grid axis runs along
    assert tuple(grid.shape) == tuple(np.asarray(hr.shape)[hr_axis])

