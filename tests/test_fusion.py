"""Fusion onto the isotropic grid: CubeAvg against an independent computation, FOV handling,
registration and intensity matching."""

from __future__ import annotations

import numpy as np
import pytest

from isovox.errors import InputError
from isovox.fusion import fuse, resample
from isovox.grid import Grid, target_grid
from isovox.grid import rotation_matrix as rotation
from isovox.phantoms import phantom
from isovox.simulate import Acquisition, simulate_scan
from isovox.volume import Volume


def test_cubeavg_matches_independent_computation_on_oblique_native_scans(hr_oblique, scanner_storage,
                                                                           independent_cubeavg):
    k = 4
    sims = {a: simulate_scan(hr_oblique, Acquisition(axis=a, scale=k)) for a in (2, 1, 0)}
    stored = [sims[a].transposed(scanner_storage[a][0]).flipped(scanner_storage[a][1]) for a in (2, 1, 0)]
    result = fuse(stored, spacing=1.0).volume
    # Exactly on the HR grid, up to axis order and direction.
    mapping = np.linalg.inv(hr_oblique.affine) @ result.affine
    perm = np.argmax(np.abs(mapping[:3, :3]), axis=0)
    signs = np.sign(mapping[perm, [0, 1, 2]])
    np.testing.assert_allclose(np.abs(mapping[:3, :3]), np.eye(3)[perm].T, atol=1e-9)  # a signed permutation
    np.testing.assert_allclose(mapping[:3, 3], mapping[:3, 3].round(), atol=1e-6)
    # Bring the result back into HR index order and compare with the independent CubeAvg.
    data = result.data.transpose(np.argsort(perm))
    for hr_axis in range(3):
        if signs[np.argsort(perm)[hr_axis]] < 0:
            data = np.flip(data, axis=hr_axis)
    expected = independent_cubeavg(hr_oblique, {a: sims[a].data for a in (0, 1, 2)}, k)
    assert data.shape == hr_oblique.shape
    np.testing.assert_allclose(data, expected, atol=2e-3 * np.abs(expected).max())


def test_separable_and_general_resampling_agree(hr_oblique):
    scan = simulate_scan(hr_oblique, Acquisition(axis=1, scale=3)).transposed((2, 0, 1)).flipped((1,))
    grid = target_grid([scan], 0.8)
    fast = resample(scan, grid)
    general = resample(scan, grid, force_general=True)
    assert isinstance(fast.mask, tuple)
    np.testing.assert_array_equal(fast.full_mask(), general.full_mask())
    np.testing.assert_allclose(fast.values, general.values, atol=1e-4 * np.abs(general.values).max())


def test_points_outside_a_scan_are_left_out_not_zero_filled(rng, make_oblique_affine):
    hr = Volume(phantom((32, 32, 32)) + 50, make_oblique_affine(rng, (1, 1, 1)))
    full = simulate_scan(hr, Acquisition(axis=2, scale=4))
    half = Volume(np.zeros((16, 32, 32)), hr.affine)  # covers only the first 16 rows, all zeros
    fused = fuse([full, half], grid=Grid.of(hr))
    alone = fuse([full], grid=Grid.of(hr))
    outside = fused.coverage[16:] == 1
    assert outside.all()
    np.testing.assert_allclose(fused.volume.data[16:], alone.volume.data[16:], rtol=1e-6)
    np.testing.assert_allclose(fused.volume.data[:16], alone.volume.data[:16] / 2, rtol=1e-5, atol=1e-3)


def test_non_overlapping_scans_are_refused():
    a = Volume(np.ones((10, 10, 3)), np.diag([1, 1, 4, 1]))
    far = np.diag([1, 1, 4, 1.0])
    far[:3, 3] = [500, 0, 0]
    b = Volume(np.ones((10, 10, 3)), far)
    with pytest.raises(InputError, match="do not overlap"):
        fuse([a, b])


def test_registration_recovers_a_head_movement():
    hr = Volume(phantom((48, 48, 48), seed=3), np.eye(4))
    scan1 = simulate_scan(hr, Acquisition(axis=2, scale=3))
    moved = np.eye(4)
    moved[:3, :3] = rotation(0, 0, 4.0)
    moved[:3, 3] = [2.0, -1.5, 1.0]
    # The head moved between acquisitions: scan 2 sees anatomy displaced by `moved`.
    scan2_true = simulate_scan(hr, Acquisition(axis=0, scale=3))
    scan2 = Volume(scan2_true.data, moved @ scan2_true.affine)
    result = fuse([scan1, scan2], spacing=1.0, register=True)
    transform = result.registrations[0]
    # Corrected scan 2 must land where the true scan 2 was, within half a millimetre.
    corrected = np.linalg.inv(transform) @ scan2.affine
    corners = np.array([[0, 0, 0], [15, 47, 47], [15, 0, 47]], float)
    true_pts = corners @ scan2_true.affine[:3, :3].T + scan2_true.affine[:3, 3]
    got_pts = corners @ corrected[:3, :3].T + corrected[:3, 3]
    assert np.abs(got_pts - true_pts).max() < 0.5


def test_intensity_matching_recovers_gain_and_offset(hr_oblique):
    s1 = simulate_scan(hr_oblique, Acquisition(axis=0, scale=2))
    s2 = simulate_scan(hr_oblique, Acquisition(axis=1, scale=2))
    brighter = s2.with_data(1.3 * s2.data + 20.0)
    result = fuse([s1, brighter], spacing=1.0, match_intensities=True)
    gain, offset = result.intensity_maps[1]
    assert gain == pytest.approx(1 / 1.3, rel=0.03)
    assert offset == pytest.approx(-20 / 1.3, abs=3.0)


def test_fusing_scale_one_scans_returns_the_input(hr_oblique):
    scans = [simulate_scan(hr_oblique, Acquisition(axis=a, scale=1.0)).transposed((2, 0, 1)) for a in range(3)]
    result = fuse(scans, spacing=1.0).volume
    values = result.data.transpose(1, 2, 0)  # back to the HR storage order
    np.testing.assert_allclose(values, hr_oblique.data, atol=1e-3)
    np.testing.assert_allclose(result.affine[:3, :3][:, [1, 2, 0]], hr_oblique.affine[:3, :3], atol=1e-9)
    np.testing.assert_allclose(result.affine[:3, 3], hr_oblique.affine[:3, 3], atol=1e-6)
