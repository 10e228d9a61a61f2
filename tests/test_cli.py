"""The command-line contract: exact spellings, exact geometry, and one clear line on bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from isovox import io
from isovox.cli.main import main
from isovox.grid import rotation_matrix as rotation
from isovox.phantoms import phantom
from isovox.sample import sample_reference_path, sample_scan_paths
from isovox.simulate import Acquisition, simulate_scan
from isovox.volume import Volume



@pytest.fixture
def real_oblique() -> Volume:
    """The bundled real Colin27 crop, placed obliquely in the scanner (data untouched)."""
    hr = io.read_volume(sample_reference_path())
    tilt = np.eye(4)
    tilt[:3, :3] = rotation(18.0, -9.0, 25.0)
    return Volume(hr.data, tilt @ hr.affine, {"source": "colin27 oblique"})


@pytest.fixture
def head(request, hr_oblique) -> Volume:
    """The phantom by default; tests parametrised indirectly can ask for the real Colin27 crop."""
    if getattr(request, "param", "phantom") == "colin27":
        return request.getfixturevalue("real_oblique")
    return hr_oblique


@pytest.fixture
def native_scans(tmp_path, head, scanner_storage):
    """Three orthogonal x4 scans of an oblique head, stored as scanners store them, in three formats."""
    hr_oblique = head
    paths, sims = [], {}
    for axis, suffix in ((2, ".nii.gz"), (1, ".mha"), (0, ".nrrd")):
        sims[axis] = simulate_scan(hr_oblique, Acquisition(axis=axis, scale=4))
        stored = sims[axis].transposed(scanner_storage[axis][0]).flipped(scanner_storage[axis][1])
        paths.append(io.write_volume(stored, tmp_path / f"scan{axis}{suffix}"))
    return paths, sims


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("head", ["phantom", "colin27"], indirect=True)
def test_run_cubeavg_lands_on_the_source_grid(tmp_path, native_scans, head, capsys, digest, independent_cubeavg):
    paths, sims = native_scans
    hr_oblique = head
    out = tmp_path / "out" / "iso.nii.gz"
    before = [digest(p) for p in paths]
    code, _, err = run_cli(["run", *paths, "--method", "cubeavg", "--spacing", "1", "-o", out, "-q"], capsys)
    assert code == 0, err
    assert [digest(p) for p in paths] == before
    result = io.read_volume(out)
    mapping = np.linalg.inv(hr_oblique.affine) @ result.affine
    perm = np.argmax(np.abs(mapping[:3, :3]), axis=0)
    np.testing.assert_allclose(np.abs(mapping[:3, :3]), np.eye(3)[perm].T, atol=1e-5)
    np.testing.assert_allclose(mapping[:3, 3], np.round(mapping[:3, 3]), atol=1e-4)
    # Independent CubeAvg, re-indexed into the output's storage order.
    expected = independent_cubeavg(hr_oblique, {a: s.data for a, s in sims.items()}, 4)
    index = []
    for t in range(3):
        p = perm[t]
        src = np.rint(mapping[p, t] * np.arange(result.shape[t]) + mapping[p, 3]).astype(int)
        index.append(src)
    expected_out = expected.transpose(perm)[np.ix_(*index)]
    np.testing.assert_allclose(result.data, expected_out, atol=2e-3 * np.abs(expected).max())
    side = json.loads((tmp_path / "out" / "iso.json").read_text())
    assert side["method"] == "cubeavg" and len(side["inputs"]) == 3 and len(side["inputs"][0]["sha256"]) == 64


def test_default_method_needs_no_learned_model(tmp_path, native_scans, monkeypatch, capsys):
    """With no learned model installed the default is still the reconstruction, for one scan and for two."""
    monkeypatch.setenv("ISOVOX_MODELS", str(tmp_path / "no-models"))
    paths, _ = native_scans
    for inputs, out in ((paths[:2], "two.nii.gz"), (paths[:1], "one.nrrd")):
        code, _, _ = run_cli(["run", *inputs, "-o", tmp_path / out, "-q"], capsys)
        side = json.loads((tmp_path / out.split(".")[0]).with_suffix(".json").read_text())
        assert code == 0 and side["method"] == "srr" and side["reconstruction"]["smoothness"] > 0


def test_methods_json_lists_the_registry(capsys):
    code, out, _ = run_cli(["methods", "--json"], capsys)
    names = [m["name"] for m in json.loads(out)]
    assert code == 0 and {"bspline", "cubeavg"} <= set(names)
    code, out, _ = run_cli(["methods"], capsys)
    assert "cubeavg" in out and "default" in out
    # every default says which measurement put it there
    rows = json.loads(run_cli(["methods", "--json"], capsys)[1])
    defaults = [m for m in rows if m["default_for_scans"] or m["default_with_adapt_for_scans"]]
    assert defaults and all("dB" in m["why_default"] for m in defaults)


def test_simulate_info_evaluate(tmp_path, capsys, make_oblique_affine):
    hr_path = io.write_volume(Volume(phantom((32, 32, 32)), make_oblique_affine(np.random.default_rng(2))),
                              tmp_path / "hr.nii.gz")
    code, _, err = run_cli(["simulate", hr_path, "-o", tmp_path / "sim", "--axes", "0,2", "--scale", "2.5",
                            "--profile", "gaussian", "--gap", "0.5", "--noise", "0.02", "--seed", "4",
                            "--slice-axis-last", "-q"], capsys)
    assert code == 0, err
    files = sorted((tmp_path / "sim").glob("*.nii.gz"))
    assert [f.name for f in files] == ["scan_axis0.nii.gz", "scan_axis2.nii.gz"]
    record = json.loads((tmp_path / "sim" / "acquisition.json").read_text())
    assert record["scans"][0]["scale"] == 2.5 and record["scans"][0]["profile"] == "gaussian"
    code, out, _ = run_cli(["info", *files], capsys)
    assert code == 0 and "slice thickness 2.5 mm, gap 0.5 mm" in out and "90.0 deg apart" in out
    code, out, _ = run_cli(["info", "--json", *files], capsys)
    assert json.loads(out)["scans"][0]["thick_axis"] == 2
    code, _, _ = run_cli(["run", *files, "-o", tmp_path / "fused.nii.gz", "-q"], capsys)
    assert code == 0
    code, out, _ = run_cli(["evaluate", tmp_path / "fused.nii.gz", "--reference", hr_path, "--json"], capsys)
    scores = json.loads(out)
    assert code == 0 and 15 < scores["psnr_masked"] < 60 and 0 < scores["ssim"] <= 1


def test_info_warns_about_bad_protocols(tmp_path, capsys):
    hr = Volume(phantom((32, 32, 32)), np.eye(4))
    a = simulate_scan(hr, Acquisition(axis=0, scale=4))
    b = simulate_scan(hr, Acquisition(axis=0, scale=4))
    paths = [io.write_volume(a, tmp_path / "a.nii.gz"), io.write_volume(b.with_data(b.data * 2), tmp_path / "b.nii.gz")]
    code, out, _ = run_cli(["info", *paths], capsys)
    assert code == 0 and "same direction" in out and "--match-intensity" in out


def test_demo_writes_result_figure_and_metrics(tmp_path, capsys):
    code, out, err = run_cli(["demo", "-o", tmp_path / "demo", "-q"], capsys)
    assert code == 0, err
    names = {p.name for p in (tmp_path / "demo").iterdir()}
    assert {"demo_figure.png", "metrics.json"} <= names
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    method = metrics["method"]
    assert metrics["scores"][method]["psnr_masked"] > metrics["scores"]["bspline"]["psnr_masked"]
    assert (tmp_path / "demo" / "demo_figure.png").stat().st_size > 50_000


def test_sample_data_is_real_and_consistent():
    hr = io.read_volume(sample_reference_path())
    assert hr.shape == (100, 100, 100) and hr.data.max() > 100
    for path in sample_scan_paths():
        scan = io.read_volume(path)
        assert scan.meta["slice_thickness"] == 4.0 and sorted(scan.spacing.round(3)) == [1, 1, 4]


# ----------------------------------------------------------------------------- bad input


def _bad_files(tmp_path):
    files = {}
    nib.save(nib.Nifti1Image(np.zeros((10, 10), np.float32), np.eye(4)), str(tmp_path / "flat.nii"))
    files["2-D"] = (tmp_path / "flat.nii", "2-D")
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8, 3), np.float32), np.eye(4)), str(tmp_path / "four.nii.gz"))
    files["4-D"] = (tmp_path / "four.nii.gz", r"4-D data with 3 volumes .*choose one with --frame 0..2")
    nan = np.ones((8, 8, 8), np.float32)
    nan[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(nan, np.eye(4)), str(tmp_path / "nan.nii.gz"))
    files["NaN"] = (tmp_path / "nan.nii.gz", "NaN or Inf")
    (tmp_path / "corrupt.nii.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    files["corrupt"] = (tmp_path / "corrupt.nii.gz", "cannot read|corrupt")
    sing = np.eye(4)
    sing[:3, :3] = [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), sing), str(tmp_path / "singular.nii.gz"))
    files["singular"] = (tmp_path / "singular.nii.gz", "singular")
    mha = tmp_path / "zero.mha"
    io.write_volume(Volume(np.ones((8, 8, 8)), np.eye(4)), mha)
    mha.write_bytes(mha.read_bytes().replace(b"ElementSpacing = 1 1 1", b"ElementSpacing = 1 0 1"))
    files["zero spacing"] = (mha, "zero")
    neg = tmp_path / "neg.mha"
    io.write_volume(Volume(np.ones((8, 8, 8)), np.eye(4)), neg)
    neg.write_bytes(neg.read_bytes().replace(b"ElementSpacing = 1 1 1", b"ElementSpacing = 1 -1 1"))
    files["negative spacing"] = (neg, "negative")
    return files


@pytest.mark.parametrize("case", ["2-D", "4-D", "NaN", "corrupt", "singular", "zero spacing", "negative spacing"])
def test_bad_files_give_one_line_and_no_output(tmp_path, case, capsys, digest):
    path, message = _bad_files(tmp_path)[case]
    before = digest(path)
    out = tmp_path / "out.nii.gz"
    code, stdout, err = run_cli(["run", path, "-o", out], capsys)
    assert code != 0
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("isovox: error:"), err
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in err and not out.exists()
    assert digest(path) == before
    assert not any(p.name.startswith(".isovox-") for p in tmp_path.iterdir())


def test_frame_selects_a_volume_of_4d_input(tmp_path, capsys):
    data = np.stack([phantom((16, 16, 8)) * (i + 1) for i in range(3)], axis=-1)
    nib.save(nib.Nifti1Image(data, np.diag([1, 1, 3, 1])), str(tmp_path / "four.nii.gz"))
    code, _, err = run_cli(["run", tmp_path / "four.nii.gz", "--frame", "2", "-o", tmp_path / "o.nii.gz", "-q"], capsys)
    assert code == 0, err
    # the same result as that frame alone in a 3-D file
    nib.save(nib.Nifti1Image(data[..., 2], np.diag([1, 1, 3, 1])), str(tmp_path / "frame2.nii.gz"))
    code, _, err = run_cli(["run", tmp_path / "frame2.nii.gz", "-o", tmp_path / "o2.nii.gz", "-q"], capsys)
    assert code == 0, err
    chosen, alone = io.read_volume(tmp_path / "o.nii.gz"), io.read_volume(tmp_path / "o2.nii.gz")
    np.testing.assert_array_equal(chosen.affine, alone.affine)
    np.testing.assert_allclose(chosen.data, alone.data, rtol=1e-6, atol=1e-6 * np.abs(alone.data).max())


@pytest.mark.parametrize("extra,message", [
    (["--spacing", "0"], "positive"),
    (["--spacing", "-1"], "positive"),
    (["--spacing", "nan"], "positive"),
    (["--spacing", "abc"], "not a number"),
    (["--spacing", "0.01"], "finer than the finest"),
    (["--spacing", "1000"], "coarser than every input"),
    (["--method", "nosuch"], "unknown method"),
    (["--method", "bspline"], "takes 1 scan"),
    (["--max-memory", "0.001"], r"needs about .* of memory but only"),
])
def test_bad_parameters(tmp_path, native_scans, extra, message, capsys):
    paths, _ = native_scans
    out = tmp_path / "o.nii.gz"
    code, _, err = run_cli(["run", *paths, *extra, "-o", out], capsys)
    assert code != 0 and not out.exists()
    assert re.search(message, err) and len(err.strip().splitlines()) == 1, err


def test_output_must_not_be_an_input(tmp_path, native_scans, capsys, digest):
    paths, _ = native_scans
    before = digest(paths[0])
    code, _, err = run_cli(["run", *paths, "-o", paths[0]], capsys)
    assert code != 0 and "overwrite an input" in err and digest(paths[0]) == before


def test_non_overlapping_scans(tmp_path, capsys):
    a = io.write_volume(Volume(np.ones((10, 10, 3)), np.diag([1, 1, 4, 1])), tmp_path / "a.nii.gz")
    far = np.diag([1.0, 4, 1, 1])
    far[:3, 3] = [400, 0, 0]
    b = io.write_volume(Volume(np.ones((10, 3, 10)), far), tmp_path / "b.nii.gz")
    code, _, err = run_cli(["run", a, b, "-o", tmp_path / "o.nii.gz"], capsys)
    assert code == 2 and "do not overlap" in err and not (tmp_path / "o.nii.gz").exists()


def test_too_much_memory_is_refused_with_an_estimate(tmp_path, native_scans, monkeypatch, capsys):
    paths, _ = native_scans
    monkeypatch.setenv("ISOVOX_MAX_MEMORY_GB", "0.0005")
    code, _, err = run_cli(["run", *paths, "-o", tmp_path / "o.nii.gz"], capsys)
    assert code == 1 and "40x44x36 voxels needs about" in err and "MB of memory" in err, err
    assert not (tmp_path / "o.nii.gz").exists()


def test_cuda_requested_without_a_gpu(tmp_path, native_scans, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    paths, _ = native_scans
    code, _, err = run_cli(["run", *paths, "--device", "cuda", "-o", tmp_path / "o.nii.gz"], capsys)
    assert code == 2 and "no CUDA GPU" in err


def test_console_script_never_prints_a_traceback(tmp_path):
    exe = Path(sys.executable).with_name("isovox")
    (tmp_path / "x.nii.gz").write_bytes(b"junk")
    proc = subprocess.run([str(exe), "run", str(tmp_path / "x.nii.gz"), "-o", str(tmp_path / "o.nii.gz")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.startswith("isovox: error:")
    proc = subprocess.run([str(exe), "run"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_progress_lines_for_front_ends(tmp_path, native_scans, capsys):
    paths, _ = native_scans
    code, _, err = run_cli(["run", *paths, "--progress", "lines", "-o", tmp_path / "o.nii.gz"], capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("isovox-progress ")]
    assert code == 0 and len(lines) >= 3
    fractions = [float(ln.split()[1]) for ln in lines]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0



def test_defaults_follow_the_benchmark():
    """The reconstruction (srr) beat every shipped network with and without data consistency on the benchmark
    (benchmarks/RESULTS.md), so it is the default for 1-3 scans on every device; the opt-in MRL never is."""
    from isovox.methods import default_method, get_method

    assert get_method("mrl").rank_cpu < 0
    for n in (1, 2, 3):
        for device in ("cpu", "cuda", "mps"):
            assert default_method(n, device, scale=4.0).name == "srr"
    assert default_method(3, "cpu", scale=12.0).name == "srr"
