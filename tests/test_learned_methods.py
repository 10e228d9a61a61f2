"""Learned methods through the CLI and API, with tiny randomly initialised models.

Quality is measured by benchmarks/learned.py; here: wiring, grids, ensemble, guidance.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from isovox import api, io, models
from isovox.cli.main import main
from isovox.grid import Grid
from isovox.nets import build
from isovox.sample import sample_reference_path, sample_scan_paths
from isovox.tiling import run_tiled
from isovox.volume import Volume

TINY = {
    "isosrn": ("isosrn", {"channels": 4, "blocks": 1, "in_channels": 3, "image_residual": True}),
    "recnn": ("recnn", {"layers": 3, "filters": 4, "in_channels": 3}),
    "recnn-guided": ("recnn", {"layers": 3, "filters": 4, "in_channels": 4}),
    "mrl": ("mrl", {"channels": 4, "units": 2, "in_channels": 2}),
    "ctguided": ("ctguided", {"in_channels": 3, "features": 4, "blocks": 1, "layers": 2, "growth": 4}),
}


@pytest.fixture
def tiny_models(tmp_path, monkeypatch):
    torch.manual_seed(0)
    root = tmp_path / "models"
    for name, (arch, kwargs) in TINY.items():
        card = models.ModelCard(name, arch, kwargs, guided=name.endswith("guided"))
        models.save_model(build(arch, **kwargs), card, root)
    monkeypatch.setenv("ISOVOX_MODELS", str(root))
    return root


@pytest.mark.parametrize("method", ["isosrn", "recnn", "mrl", "ctguided"])
def test_each_learned_method_runs_on_the_sample(tmp_path, tiny_models, method, capsys):
    scans = [str(p) for p in sample_scan_paths()]
    out = tmp_path / f"{method}.nii.gz"
    assert main(["run", *scans, "--method", method, "--no-consistency", "-o", str(out), "-q"]) == 0
    result = io.read_volume(out)
    planned = api.plan([io.read_volume(p) for p in scans], "cubeavg").grid
    assert Grid.of(result).same_as(planned)
    assert np.isfinite(result.data).all() and result.data.std() > 0
    side = json.loads((tmp_path / f"{method}.json").read_text())
    assert side["method"] == method and len(side["model"]["weights_sha256"]) == 64


def test_single_scan_and_fractional_spacing(tmp_path, tiny_models):
    scan = io.read_volume(sample_scan_paths()[0])
    for method in ("isosrn", "mrl"):
        result = api.super_resolve([scan], method, spacing=1.3, consistency=False)
        assert np.allclose(result.volume.spacing, 1.3)


def test_ensemble_is_the_mean_over_flips(tiny_models):
    """--ensemble on MRL (LR space, sub-slice channels) is the mean of the 8 flipped whole-scan predictions,
    each flipped back, although the run is tiled and flips tile by tile."""
    from isovox.errors import InputError
    from isovox.features import lr_inputs
    from isovox.nets.mrl import FixedFactor

    full = io.read_volume(sample_scan_paths()[0])
    scan = Volume(full.data[20:70, 20:70, :], full.affine @ np.array(
        [[1, 0, 0, 20], [0, 1, 0, 20], [0, 0, 1, 0], [0, 0, 0, 1.0]]), full.meta)  # a 50 x 50 mm part is enough
    plain = api.super_resolve([scan], "mrl", consistency=False).volume.data
    ensemble = api.super_resolve([scan], "mrl", ensemble=True, consistency=False).volume.data
    assert ensemble.shape == plain.shape and not np.allclose(ensemble, plain)

    module, _ = models.load_model("mrl")
    lr = lr_inputs(scan, float(scan.spacing.min()), max(module.factors), with_base=True)
    net = FixedFactor(module, lr.factor).eval()
    outs = []
    for flip in range(8):
        axes = tuple(a for a in range(3) if flip >> a & 1)
        x = np.flip(lr.array, tuple(a + 1 for a in axes)).copy()
        if 0 in axes:  # the sub-slices of a slice come in reverse order when the slice axis flips
            x[2:2 + lr.factor] = x[2:2 + lr.factor][::-1].copy()
        with torch.inference_mode():
            y = net(torch.from_numpy(x[None]))[0].numpy()
        outs.append(np.flip(y, tuple(a + 1 for a in axes)))
    whole = np.mean(outs, axis=0)
    tiled = run_tiled(net, lr.array, (net.receptive_radius,) * 3, scale=(lr.factor, 1, 1), budget_bytes=2e6,
                      bytes_per_voxel=2400.0 * lr.factor, ensemble=True, subslice_channels=lr.factor)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    assert np.abs(whole - outs[0]).max() > 1e-4  # the flips differ, so the mean is not one of them
    with pytest.raises(InputError, match="applies to learned methods"):
        api.plan([scan], "cubeavg", ensemble=True)


def test_reference_uses_the_guided_model(tiny_models):
    scans = [io.read_volume(p) for p in sample_scan_paths()[:1]]
    reference = io.read_volume(sample_reference_path())
    guided = api.super_resolve(scans, "recnn", reference=reference, consistency=False)
    assert guided.volume.data.shape == api.plan(scans, "recnn").grid.shape
    plain = api.super_resolve(scans, "recnn", consistency=False)
    assert not np.allclose(guided.volume.data, plain.volume.data)


def test_methods_json_shows_model_cards(tiny_models, capsys):
    assert main(["methods", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["isosrn"]["available"] and rows["isosrn"]["model_card"]["architecture"] == "isosrn"


def test_memory_check_counts_the_tile_working_set(tiny_models):
    """A learned run needs its tiles' activations too: refused up front, not half-way."""
    from isovox.errors import ResourceError

    scans = [io.read_volume(p) for p in sample_scan_paths()]
    api.plan(scans, "cubeavg", max_memory_bytes=int(0.5e9))  # interpolation fits in 0.5 GB
    with pytest.raises(ResourceError, match="memory"):
        api.plan(scans, "mrl", max_memory_bytes=int(0.5e9))


def test_runs_outside_the_validated_range_get_the_baseline_and_say_so(tmp_path, monkeypatch):
    """A card that records gains only from x5 up (and none for one scan) hands x4 runs to CubeAvg."""
    torch.manual_seed(0)
    arch, kwargs = TINY["isosrn"]
    card = models.ModelCard("isosrn", arch, kwargs, min_scale=5, single_scan=False)
    models.save_model(build(arch, **kwargs), card, tmp_path / "models")
    monkeypatch.setenv("ISOVOX_MODELS", str(tmp_path / "models"))
    scans = [io.read_volume(p) for p in sample_scan_paths()]
    plan = api.plan(scans, "isosrn", consistency=False)
    assert any("below x5" in w and "CubeAvg used" in w for w in plan.warnings)
    result = api.execute(plan).volume
    np.testing.assert_allclose(result.data, api.super_resolve(scans, "cubeavg").volume.data, atol=1e-5)
    assert any("B-spline used" in w for w in api.plan(scans[:1], "isosrn").warnings)
    models.save_model(build(arch, **kwargs), replace(card, min_scale=3), tmp_path / "models")
    plan = api.plan(scans, "isosrn", consistency=False)
    assert not any("isosrn:" in w for w in plan.warnings)
    assert np.abs(api.execute(plan).volume.data - result.data).max() > 0


def test_adaptation_improves_a_tiny_case(tiny_models):
    """Fine-tuning on the scan's own in-plane detail (no HR data) brings an untrained MRL closer to the truth,
    and the shipped weights file is left untouched."""
    from isovox.metrics import evaluate
    from isovox.sample import sample_reference_path
    from isovox.simulate import Acquisition, simulate_scan

    hr = io.read_volume(sample_reference_path())
    scan = simulate_scan(hr, Acquisition(axis=2, scale=4.0))
    weights = tiny_models / "mrl" / "weights.safetensors"
    before_bytes = weights.read_bytes()
    plain = evaluate(api.super_resolve([scan], "mrl", consistency=False).volume, hr)["psnr_masked"]
    result = api.super_resolve([scan], "mrl", adapt=True, adapt_seconds=8, consistency=False)
    adapted = evaluate(result.volume, hr)["psnr_masked"]
    assert "used" in result.provenance["adaptation"] and "not used" not in result.provenance["adaptation"]
    assert adapted > plain + 0.1
    assert weights.read_bytes() == before_bytes


@pytest.mark.parametrize("extra, message", [
    (["--method", "cubeavg", "--adapt"], "is an interpolation"),
    (["--method", "mrl", "--adapt-seconds", "5"], "needs --adapt"),
    (["--method", "mrl", "--adapt", "--adapt-seconds", "0"], "between 1 and 3600"),
])
def test_adaptation_refuses_what_it_cannot_do(tmp_path, tiny_models, capsys, extra, message):
    scans = [str(p) for p in sample_scan_paths()]
    out = tmp_path / "out.nii.gz"
    assert main(["run", *scans, *extra, "-o", str(out), "-q"]) == 2
    assert message in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("method", ["isosrn", "recnn", "ctguided"])
def test_adaptation_runs_for_hr_space_networks(tiny_models, method):
    scans = [io.read_volume(p) for p in sample_scan_paths()]
    result = api.super_resolve(scans, method, adapt=True, adapt_seconds=2, consistency=False)
    assert result.provenance["adaptation"].startswith("adapted ") and np.isfinite(result.volume.data).all()


def test_the_default_supports_the_runs_scale(tiny_models, monkeypatch):
    """A method is the default only for scales it supports: learned models cover x1.5-x8, so with srr out
    of the way a x10 run gets the best method that takes it (CubeAvg); srr itself takes any scale."""
    from dataclasses import replace as copy

    from isovox import registry
    from isovox.methods import default_method, get_method

    scans = [io.read_volume(p) for p in sample_scan_paths()]
    assert api.plan(scans).method.name == "srr" and api.plan(scans, spacing=0.4).method.name == "srr"
    methods = registry.registered()
    methods["srr"] = copy(get_method("srr"), available=lambda: False)
    monkeypatch.setattr(registry, "_REGISTRY", methods)
    learned = default_method(3, "cpu").name
    assert learned not in ("cubeavg", "srr") and api.plan(scans).method.name == learned
    assert api.plan(scans, spacing=0.4).method.name == "cubeavg"


@pytest.mark.parametrize("ensemble", [False, True])
def test_air_keeps_the_fused_input_and_the_head_equals_whole_volume_inference(tiny_models, ensemble):
    """HR-space networks compute only the anatomy's box (context read from the whole volume)."""
    from isovox.features import hr_inputs
    from isovox.learned import signal_box
    from isovox.phantoms import phantom
    from isovox.simulate import orthogonal_protocol, simulate_scans
    from isovox.volume import Volume

    data = np.zeros((48, 44, 40), np.float32)
    data[10:34, 12:36, 6:30] = phantom((24, 24, 24))
    scans = simulate_scans(Volume(data, np.diag([1.0, 1.0, 1.0, 1.0])), orthogonal_protocol(2.0, (2, 1, 0)))
    plan = api.plan(scans, "isosrn")
    result = api.super_resolve(scans, "isosrn", ensemble=ensemble, consistency=False).volume.data
    inputs = hr_inputs(scans, plan.grid)
    box = signal_box(inputs.array[0])
    assert all(b.stop - b.start < n for b, n in zip(box, inputs.array.shape[1:]))  # the air is left out
    net, _ = models.load_model("isosrn")
    flips = [()] if not ensemble else [tuple(a for a in (1, 2, 3) if m >> (a - 1) & 1) for m in range(8)]
    with torch.inference_mode():
        outs = [np.flip(net(torch.from_numpy(np.ascontiguousarray(np.flip(inputs.array, f))[None]))[0].numpy(), f)
                for f in flips]
    whole = np.mean(outs, axis=0)[0] * inputs.scale
    np.testing.assert_allclose(result[box], whole[box], atol=1e-4)
    outside = np.ones(result.shape, bool)
    outside[box] = False
    np.testing.assert_allclose(result[outside], inputs.fusion.volume.data[outside], atol=1e-5)


def test_hr_space_pairs_are_resliced_along_the_output_grids_slice_axis():
    """A 3-D CNN fine-tuned along one axis learns nothing for the others: pairs for HR-space networks
    put their re-sliced axis where the scan's slice axis lies on the output grid, also for a scan
    stored with permuted, oblique axes."""
    from isovox.adapt import _pair, sources
    from isovox.phantoms import phantom

    rng = np.random.default_rng(0)
    crop = phantom((32, 32, 32)).astype(np.float32)
    crop /= crop.max()
    for position in range(3):
        x, y, base = _pair("hr", crop, 4.0, 4, rng, position)
        distance = x[1]  # distance to the nearest acquired slice varies along the re-sliced axis only
        assert np.ptp(distance, axis=position).max() > 0
        assert all(np.ptp(distance, axis=a).max() == 0 for a in range(3) if a != position)
    # scan 1 fixes the output grid (oblique); scan 2 stores its axes permuted, slices along its array
    # axis 0, which is the grid's axis 1
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    data = np.ones((24, 24, 24), np.float32) * (np.arange(24) % 3 + 1)
    a1, a2 = np.eye(4), np.eye(4)
    a1[:3, :3] = rotation @ np.diag([1.0, 1.0, 4.0])
    a2[:3, :3] = rotation[:, [1, 2, 0]] @ np.diag([4.0, 1.0, 1.0])
    first, second = Volume(data, a1), Volume(data, a2)
    srcs = sources([first, second])
    assert [s.slice_position for s in srcs] == [2, 1]


def test_adaptation_holds_out_a_central_band_that_training_crops_never_touch():
    """The adapted-vs-shipped check must see anatomy (the middle of the scan, not an edge of air)
    and data the fine-tuning never trained on."""
    from isovox.adapt import Source, _crop

    data = np.broadcast_to(np.arange(40, dtype=np.float32)[:, None, None], (40, 30, 12)).copy()
    src = Source(data, (0, 1), 4.0, (15, 25), 2)
    rng = np.random.default_rng(0)
    for held_out in (True, False):
        for _ in range(40):
            crop = _crop(src, (8, 8, 8), held_out, rng)
            values = np.unique(crop)
            inside = (values >= 15) & (values < 25)
            assert inside.all() if held_out else not inside.any()


def test_adapt_without_a_method_picks_the_network_that_adapts_best(capsys):
    """`isovox run SCAN --adapt` used to fail on the default (an interpolation); it now takes MRL, which
    gained most from --adapt (+1.8 dB over the B-spline on one x4 scan, benchmarks/RESULTS.md)."""
    import json

    from isovox import api
    from isovox.cli.main import main
    from isovox.io import read_volume
    from isovox.sample import sample_scan_paths

    scan = read_volume(sample_scan_paths()[0])
    assert api.plan([scan], None, adapt=True, adapt_seconds=5).method.name == "mrl"
    assert api.plan([scan], None).method.name == "srr"
    assert main(["methods", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["mrl"]["adapts"] and rows["mrl"]["default_with_adapt_for_scans"] == [1, 2, 3]
    assert not rows["srr"]["adapts"] and not rows["cubeavg"]["adapts"]
