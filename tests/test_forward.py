"""The forward model: exact adjoints on oblique geometries, gaps and profiles; the simulator is the operator."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from scipy import ndimage

from isovox.errors import InputError
from isovox.forward import (
    SampledOperator, ScanGeometry, SeparableOperator, SliceProfile, acquire, scan_operator,
)
from isovox.grid import Grid, axis_correspondence
from isovox.grid import rotation_matrix as rotation
from isovox.phantoms import phantom
from isovox.simulate import Acquisition, scan_geometry, simulate_scan
from isovox.volume import Volume

PROFILES = [SliceProfile("box"), SliceProfile("gaussian"), SliceProfile("custom", (0.1, 0.6, 1.0, 0.7, 0.2))]


def affine(spacing, angles, origin, order=(0, 1, 2), flips=()) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = rotation(*angles) * np.asarray(spacing, float)
    out[:3, :3] = out[:3, list(order)]
    for axis in flips:
        out[:3, axis] *= -1
    out[:3, 3] = origin
    return out


def dot_test(op, rng) -> float:
    x = torch.from_numpy(rng.normal(size=op.grid.shape).astype(np.float32))
    y = torch.from_numpy(rng.normal(size=op.geometry.shape).astype(np.float32))
    lhs = float((op.forward(x).double() * y.double()).sum())
    rhs = float((x.double() * op.adjoint(y).double()).sum())
    return abs(lhs - rhs) / max(abs(lhs), abs(rhs), 1e-12)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.kind)
@pytest.mark.parametrize("tilt", [(0, 0, 0), (15, -10, 25)])
@pytest.mark.parametrize("thickness", [None, 3.0, 6.5])  # thickness = spacing, a gap, an overlap
def test_adjoint_is_exact(profile, tilt, thickness):
    rng = np.random.default_rng(zlib.crc32(repr((profile.kind, tilt, thickness)).encode()))
    grid = Grid((30, 26, 22), affine((1.0, 1.1, 0.9), (10, -20, 5), (-15, 8, 3)))
    scan_affine = affine((1.2, 0.9, 4.5), np.add((10, -20, 5), tilt), (-14, 9, 2), order=(2, 0, 1), flips=(1,))
    geometry = ScanGeometry((6, 25, 20), scan_affine, 0, thickness, profile)
    op = scan_operator(grid, geometry)
    assert isinstance(op, SampledOperator if any(tilt) else SeparableOperator)
    assert dot_test(op, rng) < 1e-4  # float32 sums; a wrong adjoint is off by O(1)
    assert 0 < op.coverage.max() <= 1.0 + 1e-6


def test_missing_slices_keep_their_positions():
    """Slices at recorded positions (a gap where one is missing) are modelled where they were acquired."""
    hr = Volume(phantom((24, 20, 40), 2), np.eye(4))
    full = simulate_scan(hr, Acquisition(axis=2, scale=4))
    kept = [0, 1, 2, 4, 5, 6, 7, 8, 9]  # slice 3 missing
    geometry = ScanGeometry((24, 20, len(kept)), full.affine, 2, 4.0, slice_positions=tuple(float(k) for k in kept))
    np.testing.assert_allclose(acquire(hr, geometry), full.data[:, :, kept], rtol=1e-5, atol=1e-4)
    op = scan_operator(Grid.of(hr), geometry)
    assert dot_test(op, np.random.default_rng(2)) < 1e-4
    with pytest.raises(InputError, match="one position per slice"):
        ScanGeometry((24, 20, 3), full.affine, 2, 4.0, slice_positions=(0.0, 1.0))


def test_the_simulator_is_the_operator(hr_oblique):
    for acq in (Acquisition(axis=1, scale=4), Acquisition(axis=0, scale=2.5, gap=1.0, profile="gaussian"),
                Acquisition(axis=2, scale=3, profile="custom", profile_samples=(0.2, 1, 0.2), tilt=(12, 0, -8))):
        scan = simulate_scan(hr_oblique, acq)
        geometry = scan_geometry(hr_oblique, acq)
        np.testing.assert_allclose(scan.affine, geometry.affine, atol=1e-12)
        np.testing.assert_array_equal(scan.data, acquire(hr_oblique, geometry))
    # box slabs are the exact mean of the high-resolution voxels they cover
    scan = simulate_scan(hr_oblique, Acquisition(axis=1, scale=4))
    np.testing.assert_allclose(scan.data[:, 2, :], hr_oblique.data[:, 8:12, :].mean(axis=1), rtol=1e-5, atol=1e-4)


def test_a_gap_leaves_tissue_unseen():
    data = np.zeros((4, 4, 30), np.float32)
    data[:, :, 4] = 1.0  # falls in the 1 mm gap after the first 4 mm slab
    hr = Volume(data, np.eye(4))
    scan = simulate_scan(hr, Acquisition(axis=2, scale=4, gap=1.0))
    assert scan.meta["spacing_between_slices"] == 5.0 and np.abs(scan.data).max() < 1e-6


def test_sampled_and_separable_operators_agree_where_the_lattice_hits_voxel_centres():
    grid = Grid((24, 22, 32), affine((1, 1, 1), (8, 3, -6), (5, -4, 2)))
    scan_affine = grid.affine @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 4, 1.5], [0, 0, 0, 1.0]])
    geometry = ScanGeometry((24, 22, 8), scan_affine, 2, None)
    order = axis_correspondence(grid.affine, scan_affine)
    x = torch.from_numpy(ndimage.gaussian_filter(np.random.default_rng(3).normal(size=grid.shape), 1.5)
                         .astype(np.float32))
    separable = SeparableOperator(grid, geometry, order).forward(x)
    sampled = SampledOperator(grid, geometry).forward(x)
    np.testing.assert_allclose(sampled.numpy(), separable.numpy(), atol=1e-5)


def test_a_small_tilt_changes_the_scan_smoothly(hr_oblique):
    straight = simulate_scan(hr_oblique, Acquisition(axis=2, scale=4))
    tilted = simulate_scan(hr_oblique, Acquisition(axis=2, scale=4, tilt=(0.5, 0, 0)))
    inner = (slice(6, -6), slice(6, -6), slice(1, -1))
    peak = float(np.abs(straight.data).max())
    assert 0 < np.abs(tilted.data - straight.data)[inner].mean() < 0.02 * peak


def test_profiles():
    assert SliceProfile.parse("gaussian") == SliceProfile("gaussian")
    assert SliceProfile.parse("0,1,0").samples == (0.0, 1.0, 0.0)
    for profile in PROFILES:  # each integrates to one over its support
        reach = profile.support(4.0)
        edges = np.linspace(-reach, reach, 41)
        assert profile.integral(edges[:-1], edges[1:], 4.0).sum() == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(InputError, match="box, gaussian or comma-separated"):
        SliceProfile.parse("triangle")
    with pytest.raises(InputError, match="at least 3 non-negative"):
        SliceProfile.parse("1,-1,1")
