"""ArSSR: network parts, exact chunked and tiled decoding, and the output-grid convention."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from isovox import api, io, models
from isovox.cli.main import main
from isovox.grid import Grid, rotation_matrix
from isovox.implicit import decode_grid
from isovox.nets import build
from isovox.sample import sample_scan_paths
from isovox.volume import Volume

TINY = {"in_channels": 3, "features": 6, "blocks": 2, "layers": 2, "growth": 4, "width": 12, "depth": 6}


def tiny(seed: int = 0):
    torch.manual_seed(seed)
    return build("arssr", **TINY)


def grids(shape_in=(11, 9, 8), spacing_out=(0.7, 0.7, 0.7)):
    in_grid = Grid(shape_in, np.diag([1.0, 1.0, 1.0, 1.0]))
    extent = np.asarray(shape_in, float)
    shape_out = tuple(int(np.ceil(e / s)) for e, s in zip(extent, spacing_out))
    affine = np.diag(list(spacing_out) + [1.0])
    affine[:3, 3] = -0.5 + np.asarray(spacing_out) / 2
    return in_grid, Grid(shape_out, affine)


def test_network_parts_have_the_expected_shapes():
    net = tiny()
    x = torch.randn(1, 3, 9, 8, 7)
    features = net.encode(x)
    assert features.shape == (1, 6, 9, 8, 7)
    points = torch.rand(50, 3) * torch.tensor([8.0, 7.0, 6.0])
    assert net.query(x, features, points, torch.tensor([0.5, 0.5, 1.2])).shape == (50,)
    assert net.receptive_radius == 3 + 2 * 2
    paper = build("arssr", in_channels=1, features=128, blocks=8, layers=3, growth=64, width=256)
    assert sum(p.numel() for p in paper.decoder.parameters()) > 3e5


@pytest.mark.parametrize("spacing", [(0.7, 0.7, 0.7), (0.5, 0.5, 1.2), (1.6, 1.6, 1.6)])
def test_chunked_and_tiled_decoding_equal_whole_volume(spacing):
    net = tiny(1)
    x = np.random.default_rng(0).normal(size=(3, 11, 9, 8)).astype(np.float32)
    in_grid, out_grid = grids(spacing_out=spacing)
    whole = decode_grid(net, x, in_grid, out_grid, block=out_grid.shape)
    chunked = decode_grid(net, x, in_grid, out_grid, block=out_grid.shape, chunk=251)
    tiled = decode_grid(net, x, in_grid, out_grid, block=(7, 5, 4), chunk=1000)
    assert whole.shape == out_grid.shape
    assert np.abs(chunked - whole).max() <= 1e-5
    assert np.abs(tiled - whole).max() <= 1e-5


@pytest.fixture
def flat_arssr(tmp_path, monkeypatch):
    """An ArSSR whose decoder adds nothing: its output is the fused input, trilinear at each output centre."""
    net = tiny(2)
    with torch.no_grad():
        net.decoder.out.weight.zero_()
        net.decoder.out.bias.zero_()
    models.save_model(net, models.ModelCard("arssr", "arssr", TINY), tmp_path / "models")
    monkeypatch.setenv("ISOVOX_MODELS", str(tmp_path / "models"))


@pytest.mark.parametrize("spacing", [0.7, 0.75, "0.5,0.5,1.2"])
def test_outputs_sit_where_the_input_is(flat_arssr, spacing):
    """A linear ramp in RAS, stored oblique with permuted, flipped axes, comes back as the same ramp at every
    output voxel centre: no half-voxel shift (the public ArSSR code shifts by (s_LR - s_HR) / 2)."""
    rotation = rotation_matrix(0.3, -0.2, 0.5)
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([1.0, 1.0, 2.0])[:, [2, 0, 1]] @ np.diag([-1.0, 1.0, 1.0])
    affine[:3, 3] = [12.0, -30.0, 7.5]
    shape = (16, 18, 14)
    ramp = np.array([0.8, -0.5, 1.1])
    ijk = np.indices(shape).reshape(3, -1).T
    data = (ijk @ affine[:3, :3].T + affine[:3, 3]) @ ramp + 100.0
    scan = Volume(data.reshape(shape).astype(np.float32), affine)
    result = api.super_resolve([scan], "arssr", spacing=spacing, consistency=False).volume
    expected = (np.indices(result.shape).reshape(3, -1).T @ result.affine[:3, :3].T + result.affine[:3, 3]) @ ramp
    expected = expected.reshape(result.shape) + 100.0
    steps = np.asarray(result.spacing)
    inner = tuple(slice(int(np.ceil(5 / s)), -int(np.ceil(5 / s))) for s in steps)
    # a half-voxel shift would be off by ~0.5 here; B-spline and float32 rounding stay within 0.02 (0.01 mm)
    np.testing.assert_allclose(result.data[inner], expected[inner], atol=0.02)
    if spacing == 0.7:  # the 8-flip ensemble decodes on flipped grids: same geometry, same ramp
        ensemble = api.super_resolve([scan], "arssr", spacing=spacing, ensemble=True, consistency=False).volume
        np.testing.assert_allclose(ensemble.data, result.data, atol=1e-3)
    if isinstance(spacing, str):
        assert sorted(np.round(steps, 6)) == [0.5, 0.5, 1.2]
    else:
        assert np.allclose(steps, spacing)


def test_arssr_runs_from_the_cli_on_the_sample(tmp_path, flat_arssr, capsys):
    scans = [str(p) for p in sample_scan_paths()]
    out = tmp_path / "arssr.nii.gz"
    assert main(["run", *scans, "--method", "arssr", "--spacing", "0.75", "--no-consistency", "-o", str(out),
                 "-q"]) == 0
    result = io.read_volume(out)
    assert np.allclose(result.spacing, 0.75) and np.isfinite(result.data).all() and result.data.std() > 0
    assert json.loads((tmp_path / "arssr.json").read_text())["method"] == "arssr"
    code = main(["methods", "--json"])
    rows = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert code == 0 and rows["arssr"]["available"] and rows["arssr"]["model_card"]["architecture"] == "arssr"


def test_arssr_adapts_to_the_scans(flat_arssr):
    scan = io.read_volume(sample_scan_paths()[0])
    result = api.super_resolve([scan], "arssr", spacing=1.5, adapt=True, adapt_seconds=2, consistency=False)
    assert result.provenance["adaptation"].startswith("adapted ") and np.isfinite(result.volume.data).all()
