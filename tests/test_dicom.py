"""DICOM as scanners write it: geometry from positions, vendor tags, missing slices, series choice,
DICOMDIR, enhanced multi-frame, and derived series out (read back by isovox, SimpleITK, pydicom, dcm2niix)."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from isovox import api, dicom, io  # noqa: E402
from isovox.cli.main import main  # noqa: E402
from isovox.dicom_out import write_series  # noqa: E402
from isovox.errors import InputError  # noqa: E402
from isovox.grid import Grid  # noqa: E402
from isovox.grid import rotation_matrix as rotation  # noqa: E402
from isovox.metrics import aligned_to  # noqa: E402
from isovox.phantoms import phantom  # noqa: E402
from isovox.simulate import Acquisition, simulate_scan  # noqa: E402
from isovox.volume import Volume  # noqa: E402


@pytest.fixture(scope="module")
def head() -> Volume:
    """A phantom head, 7.7 degrees oblique, 1 mm."""
    data = np.zeros((48, 48, 70), np.float32)
    data[6:42, 6:42, 5:65] = phantom((36, 36, 60), 4) * 3.0
    affine = np.eye(4)
    affine[:3, :3] = rotation(7.7, 0, 0)
    affine[:3, 3] = (-24, -30, -35)
    return Volume(data, affine, {"source": "phantom"})


def ge_series(head: Volume, folder, gap_tag: bool = True, number: int = 3, description: str = "FSE PD AXIAL OBL"):
    """5 mm slices 7 mm apart as a GE scanner writes them: SpacingBetweenSlices (0018,0088) holds the gap."""
    scan = simulate_scan(head, Acquisition(axis=2, scale=5, gap=2.0))
    write_series(scan, folder, "scanner", description=description)
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(str(path))
        ds.SliceThickness = "5"
        ds.SpacingBetweenSlices = "2" if gap_tag else "7"
        ds.SeriesNumber = number
        ds.SeriesDescription = description
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.save_as(str(path))
    return scan


def same_voxels(a: Volume, b: Volume, atol: float) -> None:
    values, covered = aligned_to(a, Grid.of(b))
    assert values is not None and covered.all(), "the grids do not share voxel centres"
    np.testing.assert_allclose(values, b.data, atol=atol)


def test_geometry_comes_from_positions_not_from_the_spacing_tag(tmp_path, head, capsys):
    scan = ge_series(head, tmp_path / "ge")
    read = io.read_volume(tmp_path / "ge")
    same_voxels(read, scan, atol=1e-3 * float(np.abs(scan.data).max()))
    assert read.meta["slice_thickness"] == 5.0 and read.meta["spacing_between_slices"] == pytest.approx(7.0)
    assert any("SpacingBetweenSlices (0018,0088) says 2 mm" in w and "positions are used" in w
               for w in read.meta["warnings"])
    assert main(["info", str(tmp_path / "ge"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    facts = report["scans"][0]
    assert facts["slice_thickness_mm"] == 5.0 and facts["slice_gap_mm"] == pytest.approx(2.0)
    assert any("2 mm gap" in w for w in report["warnings"]) and any("0018,0088" in w for w in report["warnings"])
    assert report["series"][str(tmp_path / "ge")][0]["number"] == 3


def test_no_itk_warning_reaches_the_terminal(tmp_path, head, capfd):
    ge_series(head, tmp_path / "ge")
    assert main(["info", str(tmp_path / "ge")]) == 0
    out, err = capfd.readouterr()
    assert "WARNING: In" not in out + err and "itk" not in err.lower()


def test_a_missing_slice_is_kept_at_its_place_and_named(tmp_path, head, capsys):
    scan = ge_series(head, tmp_path / "ge", gap_tag=False)
    files = sorted((tmp_path / "ge").iterdir())
    files[4].unlink()  # an incomplete PACS transfer
    read = io.read_volume(tmp_path / "ge")
    assert read.shape == scan.shape and read.meta["missing_slices"] == [4]
    kept = [k for k in range(scan.shape[2]) if k != 4]
    values, _ = aligned_to(read, Grid.of(scan))
    np.testing.assert_allclose(values[:, :, kept], scan.data[:, :, kept], atol=1e-2)  # not shifted
    assert any("1 slice(s) missing at 28 mm" in w for w in read.meta["warnings"])
    out = tmp_path / "out.nii.gz"
    assert main(["run", str(tmp_path / "ge"), "--method", "cubeavg", "-o", str(out), "-q"]) == 2
    assert "missing slice(s) (at 28 mm" in capsys.readouterr().err and not out.exists()
    result = api.super_resolve([read], "srr", smoothness=1e-3)
    assert result.provenance["method"] == "srr"
    from isovox.forward import ScanGeometry

    geometry = ScanGeometry.of(read)
    assert geometry.acquired == tuple(kept) and geometry.shape[2] == len(kept)


def test_two_series_in_one_folder_are_listed_and_chosen(tmp_path, head, capsys):
    folder = tmp_path / "export"
    ge_series(head, folder / "a", number=3, description="PD AX")
    coronal = simulate_scan(head, Acquisition(axis=1, scale=4))
    write_series(coronal, folder / "b", "scanner", description="PD COR")
    for path in (folder / "b").iterdir():
        ds = pydicom.dcmread(str(path))
        ds.SeriesNumber = 5
        ds.save_as(str(path))
    with pytest.raises(InputError, match="holds 2 DICOM series: 3 .PD AX., 5"):
        io.read_volume(folder)
    assert main(["info", str(folder)]) == 0
    text = capsys.readouterr().out
    assert "2 DICOM series" in text and "PD AX" in text and "PD COR" in text and "--series" in text
    out = tmp_path / "iso.nii.gz"
    assert main(["run", str(folder), "--series", "3", "--series", "5", "--method", "cubeavg", "-o", str(out),
                 "-q"]) == 0
    side = json.loads((tmp_path / "iso.json").read_text())
    assert [e["series_number"] for e in side["inputs"]] == [3, 5]
    assert side["inputs"][0]["sha256"] != side["inputs"][1]["sha256"]
    assert main(["run", str(folder), "--series", "9", "-o", str(out), "-q"]) == 2
    assert "no series '9'" in capsys.readouterr().err


def test_a_dicomdir_tree_is_read(tmp_path, head):
    from pydicom.fileset import FileSet

    source = tmp_path / "src"
    scan = ge_series(head, source)
    fs = FileSet()
    for path in sorted(source.iterdir()):
        fs.add(str(path))
    fs.write(str(tmp_path / "cd"))
    assert (tmp_path / "cd" / "DICOMDIR").exists()
    read = io.read_volume(tmp_path / "cd")
    same_voxels(read, scan, atol=1e-3 * float(np.abs(scan.data).max()))


def test_an_enhanced_multiframe_file_is_read(tmp_path, head):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    scan = simulate_scan(head, Acquisition(axis=2, scale=4))
    write_series(scan, tmp_path / "classic", "scanner")
    frames = [pydicom.dcmread(str(p)) for p in sorted((tmp_path / "classic").iterdir())]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"  # Enhanced MR Image Storage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.Modality = generate_uid(), generate_uid(), "MR"
    ds.Rows, ds.Columns, ds.NumberOfFrames = frames[0].Rows, frames[0].Columns, len(frames)
    for key in ("SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit",
                "PixelRepresentation"):
        setattr(ds, key, getattr(frames[0], key))
    shared = Dataset()
    measures, orientation, transform = Dataset(), Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = frames[0].PixelSpacing, frames[0].SliceThickness
    orientation.ImageOrientationPatient = frames[0].ImageOrientationPatient
    transform.RescaleSlope, transform.RescaleIntercept = frames[0].RescaleSlope, frames[0].RescaleIntercept
    transform.RescaleType = "US"
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    groups = []
    for frame in frames[::-1]:  # stored in reverse: order must come from the positions
        group, plane = Dataset(), Dataset()
        plane.ImagePositionPatient = frame.ImagePositionPatient
        group.PlanePositionSequence = Sequence([plane])
        groups.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(groups)
    ds.PixelData = b"".join(f.PixelData for f in frames[::-1])
    (tmp_path / "enhanced").mkdir()
    ds.save_as(str(tmp_path / "enhanced" / "mr.dcm"), enforce_file_format=True)
    read = io.read_volume(tmp_path / "enhanced" / "mr.dcm")
    same_voxels(read, scan, atol=1e-3 * float(np.abs(scan.data).max()))


def test_derived_series_round_trips_through_every_reader(tmp_path, head, capsys):
    """isovox run ... --format dicom: a new series in the source study, read back identically everywhere."""
    source = tmp_path / "ge"
    ge_series(head, source, gap_tag=False)
    out = tmp_path / "derived"
    assert main(["run", str(source), "--method", "cubeavg", "--spacing", "1.5", "-o", str(out), "--format",
                 "dicom", "-q"]) == 0
    nifti = tmp_path / "same.nii.gz"
    assert main(["run", str(source), "--method", "cubeavg", "--spacing", "1.5", "-o", str(nifti), "-q"]) == 0
    expected = io.read_volume(nifti)
    step = float(np.ptp(expected.data)) / 65534 * 1.01
    same_voxels(io.read_volume(out), expected, atol=step)
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(out)))
    same_voxels(io.sitk_to_volume(reader.Execute()), expected, atol=step)
    first = pydicom.dcmread(str(sorted(out.iterdir())[0]))
    src = pydicom.dcmread(str(sorted(source.iterdir())[0]))
    assert list(first.ImageType) == ["DERIVED", "SECONDARY"]
    assert first.StudyInstanceUID == src.StudyInstanceUID and first.FrameOfReferenceUID == src.FrameOfReferenceUID
    assert first.SeriesInstanceUID != src.SeriesInstanceUID and first.PatientName == src.PatientName
    assert first.SeriesDescription == "FSE PD AXIAL OBL isovox cubeavg"
    assert "not acquired" in first.DerivationDescription
    assert first.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    uids = {pydicom.dcmread(str(p)).SOPInstanceUID for p in out.iterdir()}
    assert len(uids) == len(list(out.iterdir()))
    if shutil.which("dcm2niix"):
        subprocess.run(["dcm2niix", "-o", str(tmp_path), "-f", "d2n", str(out)], check=True, capture_output=True)
        same_voxels(io.read_volume(tmp_path / "d2n.nii"), expected, atol=step)
    assert main(["info", str(out)]) == 0
    assert "isovox cubeavg" in capsys.readouterr().out


def test_a_thick_scan_is_written_as_slices_across_its_thick_axis(tmp_path, head):
    coronal = simulate_scan(head, Acquisition(axis=1, scale=4))
    write_series(coronal, tmp_path / "cor", "scanner")
    files = list((tmp_path / "cor").iterdir())
    assert len(files) == coronal.shape[1]
    assert float(pydicom.dcmread(str(files[0])).SliceThickness) == pytest.approx(4.0)
    same_voxels(io.read_volume(tmp_path / "cor"), coronal, atol=float(np.ptp(coronal.data)) / 65534 * 1.01)


def test_dicom_out_from_nifti_inputs_says_it_has_placeholders(tmp_path, head, capsys):
    scan = simulate_scan(head, Acquisition(axis=2, scale=4))
    path = io.write_volume(scan, tmp_path / "ax.nii.gz")
    out = tmp_path / "derived"
    assert main(["run", str(path), "--method", "bspline", "-o", str(out), "--format", "dicom"]) == 0
    assert "placeholder patient and study" in capsys.readouterr().err
    assert pydicom.dcmread(str(sorted(out.iterdir())[0])).PatientName == "isovox^placeholder"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    assert main(["run", str(path), "-o", str(tmp_path / "full"), "--format", "dicom", "-q"]) == 2
    assert "not an empty folder" in capsys.readouterr().err and (tmp_path / "full" / "x").read_text() == "keep"


def test_a_gantry_tilted_series_keeps_every_slice_where_its_header_puts_it(tmp_path, head):
    ge_series(head, tmp_path / "tilt", gap_tag=False)
    files = sorted((tmp_path / "tilt").iterdir(), key=lambda p: int(pydicom.dcmread(str(p)).InstanceNumber))
    positions = []
    for k, path in enumerate(files):  # each slice shifted 1.2 mm along its columns: a 9.7 degree tilt at 7 mm
        ds = pydicom.dcmread(str(path))
        column = np.array([float(v) for v in ds.ImageOrientationPatient[3:]])
        ds.ImagePositionPatient = [f"{v:.6f}" for v in np.array([float(v) for v in ds.ImagePositionPatient])
                                   + 1.2 * k * column]
        ds.save_as(str(path))
        positions.append(np.array([float(v) for v in ds.ImagePositionPatient]))
    read = io.read_volume(tmp_path / "tilt")
    assert any("gantry tilt 9.7 degrees" in w for w in read.meta["warnings"])
    first = np.argmin([p @ np.cross(*np.split(np.array([float(v) for v in pydicom.dcmread(str(files[0]))
                                                         .ImageOrientationPatient]), 2)) for p in positions])
    for k in range(read.shape[2]):
        ras = read.index_to_world(np.array([0.0, 0.0, k]))
        lps = positions[first + k if first == 0 else first - k]
        np.testing.assert_allclose(ras, [-lps[0], -lps[1], lps[2]], atol=1e-3)
    out = tmp_path / "iso.nii.gz"
    assert main(["run", str(tmp_path / "tilt"), "--method", "srr", "--spacing", "2", "--smoothness", "2e-3",
                 "-o", str(out), "-q"]) == 0
    assert io.read_volume(out).shape[2] > read.shape[2]


def test_scans_of_different_contrasts_are_not_fused(tmp_path, capsys):
    from isovox.sample import sample_scan_paths

    axial, coronal = (io.read_volume(p) for p in sample_scan_paths()[:2])  # Colin27 T1, x4
    inside = coronal.data > 0.1 * float(coronal.data.max())  # CSF bright, white matter dark: T2-like
    t2_like = coronal.with_data(np.where(inside, float(coronal.data.max()) * 1.1 - coronal.data, 0.0))
    with pytest.raises(InputError, match="look like different contrasts .* --reference"):
        api.plan([axial, t2_like], "cubeavg")
    named = [axial.with_meta(series_description="T2 TSE AX"), coronal.with_meta(series_description="FLAIR COR")]
    with pytest.raises(InputError, match=r"different contrasts \(T2 and FLAIR"):
        api.plan(named, "srr")
    paths = [io.write_volume(axial, tmp_path / "ax.nii.gz"), io.write_volume(t2_like, tmp_path / "cor.nii.gz")]
    assert main(["run", *map(str, paths), "--method", "cubeavg", "-o", str(tmp_path / "o.nii.gz"), "-q"]) == 2
    assert "different contrasts" in capsys.readouterr().err and not (tmp_path / "o.nii.gz").exists()
    assert main(["info", *map(str, paths), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pairs"][0]["intensity_correlation"] < 0 and any("different contrasts" in w for w in report["warnings"])


def test_like_puts_the_result_on_a_given_grid(tmp_path, head, capsys):
    scan = simulate_scan(head, Acquisition(axis=2, scale=4))
    path = io.write_volume(scan, tmp_path / "ax.nii.gz")
    affine = np.eye(4)
    affine[:3, :3] = rotation(-10.0, 5.0, 20.0) * 1.5
    affine[:3, 3] = (-20, -25, -30)
    target = Volume(np.zeros((30, 28, 40), np.float32), affine, {})
    like = io.write_volume(target, tmp_path / "like.nii.gz")
    out = tmp_path / "iso.nii.gz"
    assert main(["run", str(path), "--method", "bspline", "--like", str(like), "-o", str(out)]) == 0
    assert "output grid is 30x28x40 voxels of 1.5x1.5x1.5 mm: x2.67 finer than the thickest slices" in \
        capsys.readouterr().err
    result = io.read_volume(out)
    assert result.shape == target.shape
    np.testing.assert_allclose(result.affine, io.read_volume(like).affine, atol=1e-5)
    assert main(["info", str(path), "--like", str(like), "--json"]) == 0
    grid = json.loads(capsys.readouterr().out)["output_grid"]
    assert grid["shape"] == [30, 28, 40] and "x2.67 finer" in grid["says"]
    assert main(["run", str(path), "--like", str(like), "--spacing", "1", "-o", str(out), "-q"]) == 2
    assert "not both" in capsys.readouterr().err


def test_sidecars_carry_slice_facts_and_disagreements_are_said(tmp_path, head):
    scan = ge_series(head, tmp_path / "ge", gap_tag=False)
    files = sorted((tmp_path / "ge").iterdir())
    files[4].unlink()
    read = io.read_volume(tmp_path / "ge")
    path = io.write_volume(read, tmp_path / "scan.nrrd", sidecar=io.scan_record(read))
    back = io.read_volume(path)
    assert back.meta["missing_slices"] == [4] and back.meta["slice_thickness"] == 5.0
    assert back.meta["acquired_slices"] == read.meta["acquired_slices"]
    nifti = io.write_volume(scan, tmp_path / "bids.nii.gz",
                            sidecar={"SliceThickness": 5, "SpacingBetweenSlices": 2})  # dcm2niix from GE: the gap
    seen = io.read_volume(nifti)
    assert seen.meta["slice_thickness"] == 5.0 and seen.meta["spacing_between_slices"] == pytest.approx(7.0)
    assert any("SpacingBetweenSlices says 2 mm" in w for w in seen.meta["warnings"])


def test_srr_with_a_missing_slice_matches_the_complete_scans(tmp_path, head):
    folder = tmp_path / "ax"
    ge_series(head, folder, gap_tag=False)
    complete = io.read_volume(folder)
    sorted(folder.iterdir())[5].unlink()
    holed = io.read_volume(folder)
    others = [simulate_scan(head, Acquisition(axis=a, scale=4)) for a in (0, 1)]
    kwargs = dict(spacing=2.0, smoothness=2e-3)
    full = api.super_resolve([complete, *others], "srr", **kwargs).volume
    gap = api.super_resolve([holed, *others], "srr", **kwargs).volume
    from isovox.fusion import resample

    truth = resample(head, Grid.of(full)).values
    inside = truth > 0.05 * truth.max()
    error = np.abs(gap.data - full.data)[inside].mean() / np.abs(full.data - truth)[inside].mean()
    assert error < 0.2, error  # the hole costs a fraction of the reconstruction's own error
