"""QA maps: differences, consistency with the acquired scans, acquired distance, profiles, crops."""

from __future__ import annotations

import numpy as np

from isovox.fusion import fuse
from isovox.grid import Grid
from isovox.intensity import robust_max
from isovox.phantoms import phantom
from isovox.qa import (acquired_distance_map, consistency_map, crop, difference_map, line_profile, preview_grid,
                       reacquire)
from isovox.simulate import Acquisition, simulate_scan
from isovox.volume import Volume


def test_difference_map_is_exact_across_storage_orders(hr_oblique):
    other = hr_oblique.transposed((1, 2, 0)).flipped((0,))
    diff = difference_map(hr_oblique, other)
    assert np.nanmax(np.abs(diff.data)) == 0 and not np.isnan(diff.data).any()


def test_the_truth_is_consistent_with_its_own_scan_and_cubeavg_less_so(hr_oblique):
    scans = [simulate_scan(hr_oblique, Acquisition(axis=a, scale=4)) for a in (2, 1)]
    again = reacquire(hr_oblique, scans[0])
    inner = (slice(4, -4), slice(4, -4), slice(2, -2))
    peak = robust_max(hr_oblique.data)
    assert np.nanmean(np.abs(again.data - scans[0].data)[inner]) < 0.02 * peak
    truth = consistency_map(hr_oblique, scans[0])
    fused = fuse(scans, grid=Grid.of(hr_oblique)).volume
    blurred = consistency_map(fused, scans[0])
    assert truth.data.shape == hr_oblique.shape
    assert np.nanmean(np.abs(truth.data)) < np.nanmean(np.abs(blurred.data))


def test_acquired_distance_cycles_through_each_slab():
    hr = Volume(np.ones((16, 8, 8)), np.eye(4))
    scan = simulate_scan(hr, Acquisition(axis=0, scale=4))  # slab centres at HR 1.5, 5.5, ...
    dist = acquired_distance_map(Grid.of(hr), [scan])
    np.testing.assert_allclose(dist[:8, 0, 0], [1.5, 0.5, 0.5, 1.5, 1.5, 0.5, 0.5, 1.5], atol=1e-5)
    cycle = np.array([1.5, 0.5, 0.5, 1.5])  # mm to the nearest slab centre, repeating every 4 voxels
    np.testing.assert_allclose(dist, np.broadcast_to(np.tile(cycle, 4)[:, None, None], hr.shape), atol=1e-5)
    both = acquired_distance_map(Grid.of(hr), [scan, simulate_scan(hr, Acquisition(axis=1, scale=4))])
    assert both.max() <= dist.max()
    # two scans: the nearer of the two slice centres, voxel by voxel
    np.testing.assert_allclose(both, np.minimum(dist, np.tile(cycle, 2)[None, :, None]), atol=1e-5)


def test_line_profile_follows_a_ramp_in_mm(rng, make_oblique_affine):
    affine = make_oblique_affine(rng, (2.0, 2.0, 2.0))
    idx = np.indices((10, 10, 10))[0].astype(np.float32)
    vol = Volume(idx * 3.0, affine)  # value = 3 x index along axis 0 = 1.5 per mm
    start = vol.index_to_world(np.array([1.0, 5, 5]))
    end = vol.index_to_world(np.array([7.0, 5, 5]))
    dist, (values,) = line_profile([vol], start, end, samples=13)
    np.testing.assert_allclose(dist[-1], 12.0)
    np.testing.assert_allclose(values, 3.0 + 1.5 * dist, atol=1e-4)
    far = vol.index_to_world(np.array([30.0, 5, 5]))
    _, (outside,) = line_profile([vol], start, far, samples=20)
    assert np.isnan(outside[-1]) and np.isfinite(outside[0])


def test_preview_grid_and_crop_stay_on_the_parent_grid(rng, make_oblique_affine):
    vol = Volume(phantom((20, 22, 24)), make_oblique_affine(rng))
    centre = vol.index_to_world(np.array([10.0, 11, 12]))
    slab = preview_grid(Grid.of(vol), centre, half_width_mm=2.0, axis=1)
    assert slab.shape == (20, 5, 24)
    np.testing.assert_allclose(slab.affine[:3, 3], vol.index_to_world(np.array([0.0, 9, 0])), atol=1e-9)
    box = crop(vol, centre, 3.0)
    lo = np.rint(box.world_to_index(vol.index_to_world(np.zeros(3)))).astype(int)
    np.testing.assert_array_equal(box.data, vol.data[-lo[0]:-lo[0] + box.shape[0], -lo[1]:-lo[1] + box.shape[1],
                                                     -lo[2]:-lo[2] + box.shape[2]])
    assert box.shape == (7, 7, 7)
