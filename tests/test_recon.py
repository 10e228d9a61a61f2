"""Model-based reconstruction (``srr``) and data consistency: recovery, lambda, robust weights, intensities,
divergence, cancel, and the target grid anchored on scan 1."""

from __future__ import annotations

import json

import numpy as np
import pytest

from isovox import api, calibration, io, priors, recon
from isovox.cli.main import main
from isovox.errors import CancelledError, InputError
from isovox.fusion import fuse
from isovox.grid import Grid, target_grid
from isovox.metrics import evaluate
from isovox.phantoms import phantom
from isovox.progress import Task
from isovox.simulate import Acquisition, orthogonal_protocol, simulate_scans
from isovox.volume import Volume


@pytest.fixture(scope="module")
def hr() -> Volume:
    data = np.zeros((40, 40, 40), np.float32)
    data[4:36, 4:36, 4:36] = phantom((32, 32, 32), 5)
    return Volume(data, np.diag([1.0, 1.0, 1.0, 1.0]), {"source": "phantom"})


def psnr(volume: Volume, truth: Volume) -> float:
    return evaluate(volume, truth)["psnr_masked"]


def test_srr_recovers_a_phantom_the_data_determine(hr):
    scans = simulate_scans(hr, orthogonal_protocol(4.0, (2, 1, 0)))
    grid = Grid.of(hr)
    result = recon.reconstruct(scans, grid, recon.Settings())
    cubeavg = fuse(scans, grid=grid).volume
    assert psnr(result.volume, hr) > psnr(cubeavg, hr) + 4.0
    residuals = recon.consistency_residuals(result.volume, scans, recon.Settings())
    before = recon.consistency_residuals(cubeavg, scans, recon.Settings())
    assert all(a < 0.5 * b for a, b in zip(residuals, before))
    assert result.report["smoothness"] == pytest.approx(result.report["smoothness_choice"]["chosen"])


def test_a_noisier_input_gets_a_larger_lambda(hr):
    chosen, sigmas = [], []
    for noise in (0.0, 0.02, 0.06):
        scans = simulate_scans(hr, orthogonal_protocol(4.0, (2, 1, 0), noise=noise, seed=3))
        value, report = calibration.choose_smoothness(scans, 4.0)
        chosen.append(value)
        sigmas.append(np.mean(report["noise_per_scan"]))
        assert value == max(report["floor"], report["noise_term"])
    assert calibration.floor_smoothness(4.0) <= chosen[0] < 1.5 * calibration.floor_smoothness(4.0)
    assert chosen[0] < chosen[1] < chosen[2]
    assert sigmas[2] == pytest.approx(0.06, rel=0.25)  # the noise estimate itself


def test_a_corrupted_slice_gets_a_small_weight(hr):
    scans = simulate_scans(hr, orthogonal_protocol(4.0, (2, 1, 0)))
    data = np.array(scans[1].data)
    data[:, 4, :] *= 0.3  # signal dropout in one coronal slice
    scans[1] = scans[1].with_data(data)
    result = recon.reconstruct(scans, Grid.of(hr), recon.Settings(smoothness=1e-3))
    weights = result.report["scans"][1]["slice_weights"]
    assert weights[4] < 0.1 and result.report["scans"][1]["downweighted_slices"] == [4]
    assert min(w for i, w in enumerate(weights) if i != 4) > 0.5
    assert all(not s["downweighted_slices"] for i, s in enumerate(result.report["scans"]) if i != 1)


def test_scan_intensity_differences_are_estimated(hr):
    scans = simulate_scans(hr, orthogonal_protocol(4.0, (2, 1, 0)))
    scans[2] = scans[2].with_data(np.asarray(scans[2].data) * 1.3 + 25.0)
    result = recon.reconstruct(scans, Grid.of(hr), recon.Settings(smoothness=1e-3))
    gain, offset = result.report["intensity_maps"][2]
    assert gain == pytest.approx(1 / 1.3, rel=0.03) and offset == pytest.approx(-25.0 / 1.3, abs=4.0)
    assert result.report["intensity_maps"][1] == [1.0, 0.0]
    plain = recon.reconstruct(scans, Grid.of(hr), recon.Settings(smoothness=1e-3, match_intensity=False))
    assert psnr(result.volume, hr) > psnr(plain.volume, hr) + 1.0


def test_divergence_stops_with_one_line_and_no_file(tmp_path, capsys, monkeypatch, hr):
    scans = simulate_scans(hr, orthogonal_protocol(4.0, (2, 1)))
    paths = [io.write_volume(s, tmp_path / f"s{i}.nii.gz") for i, s in enumerate(scans)]
    real = priors.TGV.value_and_grads

    def broken(self, params, weight, spacing, out):
        return real(self, params, weight, spacing, out) * float("nan")

    monkeypatch.setattr(priors.TGV, "value_and_grads", broken)
    out = tmp_path / "out.nii.gz"
    assert main(["run", *map(str, paths), "--method", "srr", "--smoothness", "0.001", "-o", str(out), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "diverged" in err[0] and not out.exists() and not (tmp_path / "out.json").exists()


def test_cancel_stops_the_reconstruction(hr):
    scans = simulate_scans(hr, orthogonal_protocol(4.0, (2, 1, 0)))
    calls = {"n": 0}

    def cancelled() -> bool:
        calls["n"] += 1
        return calls["n"] > 5

    with pytest.raises(CancelledError):
        api.super_resolve(scans, "srr", task=Task(cancelled=cancelled))


def test_data_consistency_lowers_the_residual_of_each_learned_method(tmp_path, monkeypatch, hr):
    import torch

    from isovox import models
    from isovox.nets import build

    tiny = {"isosrn": ("isosrn", {"channels": 4, "blocks": 1, "in_channels": 3, "image_residual": True}),
            "recnn": ("recnn", {"layers": 3, "filters": 4, "in_channels": 3}),
            "ctguided": ("ctguided", {"in_channels": 3, "features": 4, "blocks": 1, "layers": 2, "growth": 4}),
            "mrl": ("mrl", {"channels": 4, "units": 2, "in_channels": 2}),
            "arssr": ("arssr", {"in_channels": 3, "features": 4, "blocks": 1, "layers": 2, "growth": 4,
                                "width": 8})}
    torch.manual_seed(0)
    for name, (arch, kwargs) in tiny.items():
        models.save_model(build(arch, **kwargs), models.ModelCard(name, arch, kwargs), tmp_path)
    monkeypatch.setenv("ISOVOX_MODELS", str(tmp_path))
    scans = simulate_scans(hr, orthogonal_protocol(4.0, (2, 1, 0)))
    settings = recon.Settings()
    for name in tiny:
        raw = api.super_resolve(scans, name, consistency=False, smoothness=1e-3)
        fixed = api.super_resolve(scans, name, smoothness=1e-3)
        assert raw.provenance["consistency"] is None and fixed.provenance["consistency"]["tie"] == recon.TIE
        before = recon.consistency_residuals(raw.volume, scans, settings)
        after = recon.consistency_residuals(fixed.volume, scans, settings)
        assert all(a < 0.7 * b for a, b in zip(after, before)), (name, before, after)
        assert fixed.provenance["consistency"]["rms_residual_before"] == pytest.approx(before, rel=1e-3)


def test_one_scan_finer_in_plane_is_warned_before_the_run(hr):
    scan = simulate_scans(hr, orthogonal_protocol(4.0, (2,)))[0]
    warnings = api.plan([scan], "srr", spacing=0.7).warnings
    assert sum("finer than any acquired in-plane voxel" in w for w in warnings) == 2
    assert not api.plan([scan], "srr").warnings


def test_cli_flags(tmp_path, capsys, hr):
    scans = simulate_scans(hr, orthogonal_protocol(4.0, (2, 1), profile="gaussian"))
    paths = [str(io.write_volume(s, tmp_path / f"s{i}.nii.gz")) for i, s in enumerate(scans)]
    out = tmp_path / "out.nii.gz"
    args = ["run", *paths, "--method", "srr", "--slice-profile", "gaussian", "--slice-thickness", "4",
            "--smoothness", "0.002", "-o", str(out), "-q"]
    assert main(args) == 0
    side = json.loads((tmp_path / "out.json").read_text())
    assert side["options"]["slice_profile"] == "gaussian" and side["options"]["slice_thickness"] == [4.0]
    assert side["reconstruction"]["smoothness"] == 0.002 and side["reconstruction"]["profile"]["kind"] == "gaussian"
    assert len(side["reconstruction"]["scans"]) == 2
    for bad, message in ((["--smoothness", "-1"], "between 0 and 10"), (["--slice-profile", "cone"], "slice-profile"),
                         (["--slice-thickness", "0"], "slice-thickness"),
                         (["--slice-thickness", "4,4,4"], "3 thicknesses for 2 scans")):
        code = main(["run", *paths, "--method", "srr", *bad, "-o", str(tmp_path / "bad.nii.gz"), "-q"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], (bad, err)
        assert not (tmp_path / "bad.nii.gz").exists()


def test_the_target_grid_is_anchored_on_scan_one(hr):
    """Tilted partners do not shift the grid off scan 1's pixel faces; a scan with gaps keeps its slab faces."""
    scans = simulate_scans(hr, [Acquisition(axis=2, scale=4), Acquisition(axis=1, scale=4, tilt=(15, 0, 0)),
                                Acquisition(axis=0, scale=4, tilt=(0, -15, 0))])
    grid = target_grid(scans, 1.0)
    offset = np.linalg.solve(hr.affine[:3, :3], grid.affine[:3, 3] - hr.affine[:3, 3])
    np.testing.assert_allclose(offset, np.rint(offset), atol=1e-6)  # voxel centres on the HR grid's
    gapped = simulate_scans(hr, [Acquisition(axis=2, scale=4, gap=1.0)])[0]  # 4 mm slabs 5 mm apart
    grid = target_grid([gapped], 1.0)
    offset = np.linalg.solve(hr.affine[:3, :3], grid.affine[:3, 3] - hr.affine[:3, 3])
    np.testing.assert_allclose(offset, np.rint(offset), atol=1e-6)
    without = gapped.with_meta(slice_thickness=None)
    shifted = np.linalg.solve(hr.affine[:3, :3], target_grid([without], 1.0).affine[:3, 3] - hr.affine[:3, 3])
    assert abs(shifted[2] - np.rint(shifted[2])) == pytest.approx(0.5, abs=1e-6)  # unknown thickness: spacing faces


def test_unknown_options_are_refused(hr):
    scans = simulate_scans(hr, orthogonal_protocol(4.0, (2,)))
    with pytest.raises(InputError, match="unknown run option"):
        api.plan(scans, "srr", smoothnes=0.1)


@pytest.mark.parametrize("method", ["srr", "isosrn"])
def test_the_result_does_not_depend_on_the_thread_count(hr, method):
    """A batch worker with one thread and ``isovox run`` on a many-core machine give the same bits: the
    solver's sums do not change with how torch splits them among threads."""
    import torch

    scans = simulate_scans(hr, orthogonal_protocol(4.0, noise=0.01, seed=5))
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(api.super_resolve(scans, method, spacing=1.0).volume.data)
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(results[0], results[1])


def test_a_refine_step_sees_the_solvers_terms_and_its_result_is_the_output(hr):
    """The plug-and-play hook (benchmarks/pnp.py): it gets the solved unknowns in scan 1's units with the
    terms, and a data step from a flat start pulls the output back toward the scans."""
    scans = simulate_scans(hr, orthogonal_protocol(4.0, (2, 1, 0)))
    grid = Grid.of(hr)
    seen = {}

    def flatten(x, terms, spacing, report, task):
        seen.update(terms=len(terms), peak=float(x.max()), smoothness=report["smoothness"])
        return x * 0 + 0.5

    flat = recon.reconstruct(scans, grid, recon.Settings(), refine=flatten).volume
    assert seen["terms"] == 3 and 0.5 < seen["peak"] < 2.0 and seen["smoothness"] > 0
    head = hr.data > 0.1 * hr.data.max()
    assert np.ptp(flat.data[head]) < 1e-3 * hr.data.max()  # the hook's output is the result

    def data_step(x, terms, spacing, report, task):
        from isovox.solver import solve

        start = x * 0 + 0.5
        return solve(start, terms, priors.TV(), 0.0, spacing, 8, tie=1e-3, anchor=start)

    pulled = recon.reconstruct(scans, grid, recon.Settings(), refine=data_step).volume
    assert psnr(pulled, hr) > psnr(flat, hr) + 3.0
