"""``isovox batch``: a BIDS App over a small dataset built from the bundled sample, on Dask."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from isovox.batch import BatchOptions, plan_batch, run_batch
from isovox.batch.bids import group_images, most_orthogonal, read_header
from isovox.cli.main import main
from isovox.sample import sample_dir

distributed = pytest.importorskip("distributed")

ORIENTATIONS = ("axial", "coronal", "sagittal")


def scan(orientation: str) -> Path:
    return sample_dir() / f"colin27_{orientation}_4mm.nii.gz"


@pytest.fixture(scope="module")
def bids_dir(tmp_path_factory) -> Path:
    """sub-01: three T2w scans (+ sidecars) and an isotropic T1w; sub-02: ses-1 with two scans, ses-2 with
    one; sub-03: a truncated scan beside a good one."""
    root = tmp_path_factory.mktemp("bids")
    (root / "dataset_description.json").write_text(json.dumps({"Name": "test", "BIDSVersion": "1.9.0"}))
    anat = root / "sub-01" / "anat"
    anat.mkdir(parents=True)
    for o in ORIENTATIONS:
        shutil.copy(scan(o), anat / f"sub-01_acq-{o}_T2w.nii.gz")
        shutil.copy(scan(o).with_name(scan(o).name.replace(".nii.gz", ".json")), anat / f"sub-01_acq-{o}_T2w.json")
    shutil.copy(sample_dir() / "colin27_hr.nii.gz", anat / "sub-01_T1w.nii.gz")
    for session, orientations in (("1", ORIENTATIONS[:2]), ("2", ORIENTATIONS[2:])):
        folder = root / "sub-02" / f"ses-{session}" / "anat"
        folder.mkdir(parents=True)
        for o in orientations:
            shutil.copy(scan(o), folder / f"sub-02_ses-{session}_acq-{o}_T2w.nii.gz")
    broken = root / "sub-03" / "anat"
    broken.mkdir(parents=True)
    (broken / "sub-03_acq-axial_T2w.nii.gz").write_bytes(scan("axial").read_bytes()[:5000])
    shutil.copy(scan("coronal"), broken / "sub-03_acq-coronal_T2w.nii.gz")
    return root


def digests(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


DERIVATIVES = ["sub-01/anat/sub-01_rec-isovox_T2w.nii.gz", "sub-02/ses-1/anat/sub-02_ses-1_rec-isovox_T2w.nii.gz",
               "sub-02/ses-2/anat/sub-02_ses-2_rec-isovox_T2w.nii.gz"]


@pytest.fixture(scope="module")
def batch_out(bids_dir, tmp_path_factory):
    """One batch on the default local cluster, through the command line."""
    before = digests(bids_dir)
    out = tmp_path_factory.mktemp("derivatives") / "isovox"
    code = main(["batch", str(bids_dir), str(out), "participant", "-q"])
    assert digests(bids_dir) == before, "the batch changed the raw dataset"
    return out, code


def summary(out: Path) -> list[dict[str, str]]:
    latest = sorted((out / "logs").glob("batch-*.tsv"))[-1]
    header, *lines = latest.read_text().splitlines()
    return [dict(zip(header.split("\t"), line.split("\t"))) for line in lines]


def test_derivatives_names_description_and_failure_isolation(batch_out, bids_dir):
    out, code = batch_out
    assert code == 1, "the exit status is the number of failed groups"
    for name in DERIVATIVES:
        assert (out / name).exists() and (out / name.replace(".nii.gz", ".json")).exists()
    assert not list(out.glob("sub-03/**/*.nii.gz")), "the broken subject left a result"
    assert not list(out.rglob(".isovox-*")), "a staging folder was left behind"
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["GeneratedBy"][0]["Name"] == "isovox"
    rows = {row["group"]: row for row in summary(out)}
    assert [rows[g]["status"] for g in ("sub-01 T2w", "sub-02/ses-1 T2w", "sub-02/ses-2 T2w")] == ["done"] * 3
    assert rows["sub-03 T2w"]["status"] == "failed" and "truncated or corrupt" in rows["sub-03 T2w"]["reason"]
    sidecar = json.loads((out / DERIVATIVES[0].replace(".nii.gz", ".json")).read_text())
    assert sidecar["Sources"] == [f"bids:raw:sub-01/anat/sub-01_acq-{o}_T2w.nii.gz" for o in ORIENTATIONS]
    provenance = sidecar["isovox"]
    assert [len(entry["sha256"]) for entry in provenance["inputs"]] == [64] * 3
    assert provenance["batch"]["worker"].startswith("tcp://") and provenance["batch"]["host"]


def test_derivatives_validate_with_pybids(batch_out, bids_dir):
    bids = pytest.importorskip("bids")
    out, _ = batch_out
    layout = bids.BIDSLayout(str(bids_dir), derivatives=str(out), validate=True)
    found = layout.get(scope="isovox", suffix="T2w", extension=".nii.gz")
    assert sorted(f.path for f in found) == sorted(str(out / name) for name in DERIVATIVES)
    assert {f.get_entities().get("reconstruction") for f in found} == {"isovox"}


def test_result_identical_to_isovox_run(batch_out, bids_dir, tmp_path):
    """Bit for bit, against ``isovox run`` in its own process as a user runs it."""
    out, _ = batch_out
    single = tmp_path / "run.nii.gz"
    scans = [str(bids_dir / "sub-01" / "anat" / f"sub-01_acq-{o}_T2w.nii.gz") for o in ORIENTATIONS]
    subprocess.run([sys.executable, "-m", "isovox.cli.main", "run", *scans, "-o", str(single), "-q"], check=True)
    a, b = nib.load(single), nib.load(out / DERIVATIVES[0])
    np.testing.assert_array_equal(a.affine, b.affine)
    np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))


def test_rerun_skips_finished_groups_on_an_explicit_cluster(batch_out, bids_dir, capsys):
    """A second batch, on a LocalCluster the test starts, skips what is done and runs only the failed group."""
    out, _ = batch_out
    stamps = {name: (out / name).stat().st_mtime_ns for name in DERIVATIVES}
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  resources={"memory": 8 * 1024**3}, dashboard_address=None) as cluster:
        code = main(["batch", str(bids_dir), str(out), "participant", "--scheduler", cluster.scheduler_address])
    assert code == 1
    rows = {row["group"]: row for row in summary(out)}
    assert [rows[g]["status"] for g in ("sub-01 T2w", "sub-02/ses-1 T2w", "sub-02/ses-2 T2w")] == ["skipped"] * 3
    assert rows["sub-03 T2w"]["status"] == "failed"
    assert {name: (out / name).stat().st_mtime_ns for name in DERIVATIVES} == stamps
    assert "3 skipped" in capsys.readouterr().err


def test_a_run_too_big_for_every_worker_fails_alone(bids_dir, tmp_path):
    """The memory rule: a group needing more than any worker has is refused, never placed."""
    plan = plan_batch(bids_dir, tmp_path / "out", BatchOptions("cubeavg"), participants=["01"])
    from isovox.batch import cluster

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  resources={"memory": 1000}, dashboard_address=None) as local:
        workers = cluster.remote(local.scheduler_address)
        try:
            rows, _ = run_batch(plan, workers)
        finally:
            workers.close()
    assert rows[0]["status"] == "failed" and "the largest worker has" in rows[0]["reason"]
    assert not (tmp_path / "out" / "sub-01").exists()


def test_dry_run_plans_without_writing(bids_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["batch", str(bids_dir), str(out), "participant", "--dry-run", "--participant-label", "sub-02"]) == 0
    text = capsys.readouterr().out
    assert "sub-02/ses-1 T2w  2 scans" in text and "sub-02/ses-2 T2w  1 scan" in text and "sub-01" not in text
    assert "srr" in text and " s  run" in text and not out.exists()
    assert main(["batch", str(bids_dir), str(out), "participant", "--dry-run", "--session", "2", "--suffix", "T2w"]) == 0
    text = capsys.readouterr().out
    assert "sub-02/ses-2 T2w" in text and "ses-1" not in text and "sub-01" not in text and "1 to run" in text


@pytest.mark.parametrize("argv, message", [
    (["participant", "--participant-label", "09"], "no anatomical images for participant(s) 09"),
    (["participant", "--suffix", "FLAIR"], "no thick-slice anatomical scans with suffix FLAIR"),
    (["participant", "--method", "nope"], "nope"),
    (["group"], "invalid choice"),
])
def test_bad_invocations_get_one_line(bids_dir, tmp_path, capsys, argv, message):
    try:
        code = main(["batch", str(bids_dir), str(tmp_path / "out"), *argv])
    except SystemExit as exc:  # argparse's own refusals exit from the parser
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]
    assert not (tmp_path / "out").exists()


def test_refuses_to_write_into_another_dataset(bids_dir, capsys):
    assert main(["batch", str(bids_dir), str(bids_dir), "participant"]) == 2
    other = bids_dir / "derivatives" / "other"
    other.mkdir(parents=True)
    (other / "dataset_description.json").write_text(json.dumps({"Name": "fmriprep", "DatasetType": "derivative"}))
    try:
        assert main(["batch", str(bids_dir), str(other), "participant"]) == 2
        assert "isovox did not make" in capsys.readouterr().err
    finally:
        shutil.rmtree(bids_dir / "derivatives")


def test_more_than_three_scans_keeps_the_most_orthogonal(bids_dir):
    anat = bids_dir / "sub-01" / "anat"
    images = [read_header(anat / f"sub-01_acq-{o}_T2w.nii.gz", "01", None, "T2w") for o in ORIENTATIONS]
    extra = read_header(anat / "sub-01_acq-axial_T2w.nii.gz", "01", None, "T2w")
    extra = type(extra)(anat / "sub-01_acq-axial2_T2w.nii.gz", "01", None, "T2w", extra.shape, extra.affine)
    assert most_orthogonal([images[0], extra, images[1], images[2]]) == [images[0], images[1], images[2]]
    iso = read_header(anat / "sub-01_T1w.nii.gz", "01", None, "T1w")
    (group,) = group_images([images[0], extra, images[1], images[2], iso])
    assert len(group.scans) == 3 and "left out sub-01_acq-axial2_T2w.nii.gz" in group.notes[0]
    assert group.reference == iso, "the isotropic T1w guides the T2w group"


def test_an_unwritable_output_folder_is_refused_before_any_worker_starts(bids_dir, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["batch", str(bids_dir), str(blocker / "out"), "participant", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot create the output folder" in err[0]


def test_each_group_reports_its_stages_to_the_client(bids_dir, tmp_path):
    from isovox.batch import cluster

    plan = plan_batch(bids_dir, tmp_path / "out", BatchOptions("cubeavg"), participants=["02"])
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  resources={"memory": 8 * 1024**3}, dashboard_address=None) as local:
        workers = cluster.remote(local.scheduler_address)
        events, finished = [], []
        try:
            rows, summary_path = run_batch(plan, workers, on_done=finished.append, on_stage=events.append)
        finally:
            workers.close()
    assert [row["status"] for row in rows] == ["done", "done"] and len(finished) == 2
    # the first stages leave a worker a second before its result (read, run, write), the last may trail it
    assert {e["group"] for e in events} <= {"sub-02/ses-1 T2w", "sub-02/ses-2 T2w"} and events
    assert all(0.0 <= e["fraction"] <= 1.0 and e["worker"].startswith(("tcp://", "inproc://")) for e in events)
    assert summary_path.read_text().count("\tdone\t") == 2


def test_changing_an_unused_reference_keeps_a_finished_group_finished(bids_dir, tmp_path):
    """The skip key covers the reference only where the method uses one: a new T1w redoes a guided T2w
    group, not an srr one."""
    copy = tmp_path / "bids"
    shutil.copytree(bids_dir, copy, ignore=shutil.ignore_patterns("sub-02", "sub-03"))

    def keys() -> dict:
        return {method: plan_batch(copy, tmp_path / "out", BatchOptions(method=method)).groups[0].key
                for method in ("srr", "recnn")}

    before = keys()
    t1w = copy / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    image = nib.load(t1w)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj) * 1.01, image.affine, image.header), t1w)
    after = keys()
    assert after["srr"] == before["srr"] and after["recnn"] != before["recnn"]
