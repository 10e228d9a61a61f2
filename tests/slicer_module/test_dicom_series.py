"""DICOM in Slicer: list a folder's series, load the chosen ones with the engine's record of their
acquisition, run on them (in process and in the background), and save a derived DICOM series."""

from __future__ import annotations

import json

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from IsoVoxLib.convert import scan_meta, volume_from_node  # noqa: E402
from IsoVoxLib.logic import IsoVoxLogic, get_provenance  # noqa: E402
from IsoVoxLib.process import BackgroundRun  # noqa: E402
from IsoVoxLib.series import list_series, load_series, save_dicom, series_label  # noqa: E402
from isovox.dicom_out import write_series  # noqa: E402
from isovox.errors import InputError  # noqa: E402
from isovox.io import read_volume  # noqa: E402
from isovox.options import RunOptions  # noqa: E402
from isovox.simulate import Acquisition, simulate_scan  # noqa: E402


def _series(scan, folder, number: int, description: str) -> None:
    write_series(scan, folder, "scanner", description=description)
    for path in folder.iterdir():
        ds = pydicom.dcmread(str(path))
        ds.SeriesNumber = number
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.SeriesDescription = description
        ds.save_as(str(path))


@pytest.fixture
def export(tmp_path, hr):
    """A PACS export: an axial series with one slice lost in transfer and a sagittal one, one study."""
    folder = tmp_path / "export"
    _series(simulate_scan(hr, Acquisition(axis=2, scale=3)), folder / "ax", 3, "T2 AX")
    _series(simulate_scan(hr, Acquisition(axis=0, scale=3)), folder / "sag", 5, "T2 SAG")
    study = pydicom.dcmread(str(next((folder / "ax").iterdir()))).StudyInstanceUID
    for path in (folder / "sag").iterdir():  # one study, as a scanner writes it
        ds = pydicom.dcmread(str(path))
        ds.StudyInstanceUID = study
        ds.save_as(str(path))
    sorted((folder / "ax").iterdir())[3].unlink()
    return folder


def test_series_are_listed_and_loaded_with_their_acquisition(scene, export):
    found = list_series(export)
    assert [s["number"] for s in found] == [3, 5]
    assert "T2 AX" in series_label(found[0]) and "slices" in series_label(found[0])
    axial, sagittal = load_series(scene, export, ["3", "5"])
    assert axial.GetName() == "3 T2 AX" and sagittal.GetName() == "5 T2 SAG"
    meta = scan_meta(axial)
    assert meta["missing_slices"] == [3] and meta["series_number"] == 3 and meta["dicom"]["first_file"]
    np.testing.assert_allclose(volume_from_node(axial).affine, read_volume(export, series="3").affine, atol=1e-4)
    with pytest.raises(InputError, match="missing slice"):
        IsoVoxLogic().plan([axial, sagittal], "cubeavg")
    (export.parent / "empty").mkdir()
    with pytest.raises(InputError, match="no DICOM series"):
        list_series(export.parent / "empty")
    # a node edited after loading loses the record (its grid no longer matches)
    sagittal.GetImageData().SetDimensions(2, 2, 2)
    assert scan_meta(sagittal) == {}


def test_runs_keep_missing_slices_and_name_the_series(scene, export):
    axial, sagittal = load_series(scene, export, ["3", "5"])
    logic = IsoVoxLogic()
    node = logic.process([axial, sagittal], "srr", spacing=2.0, smoothness=2e-3)
    inputs = get_provenance(node)["inputs"]
    assert [e["series_number"] for e in inputs] == [3, 5] and all(e["dicom_file"] for e in inputs)
    run = BackgroundRun(logic, [axial, sagittal], "srr", spacing=2.0, device="cpu",
                        options=RunOptions(smoothness=2e-3))
    scan1 = read_volume(run.folder / "scan1.nrrd")
    assert scan1.meta["missing_slices"] == [3]  # the acquisition travels with the temporary file
    run.start()
    background = run.finish()
    np.testing.assert_allclose(volume_from_node(background).data, volume_from_node(node).data, atol=1e-3)
    assert [e["series_number"] for e in get_provenance(background)["inputs"]] == [3, 5]


def test_result_saved_as_a_derived_series_in_the_source_study(scene, export, tmp_path):
    axial, sagittal = load_series(scene, export, ["3", "5"])
    node = IsoVoxLogic().process([sagittal], "bspline", spacing=2.0)
    out = save_dicom(node, tmp_path / "derived")
    first = pydicom.dcmread(str(sorted(out.iterdir())[0]))
    source = pydicom.dcmread(str(next((export / "sag").iterdir())))
    assert first.StudyInstanceUID == source.StudyInstanceUID and list(first.ImageType) == ["DERIVED", "SECONDARY"]
    assert first.SeriesDescription == "T2 SAG isovox bspline"
    back = read_volume(out)
    expected = volume_from_node(node)
    np.testing.assert_allclose(back.affine, expected.affine, atol=1e-4)
    step = float(np.ptp(expected.data)) / 65534 * 1.01
    np.testing.assert_allclose(back.data, expected.data, atol=step)
    side = json.loads((tmp_path / "derived.json").read_text())
    assert side["saved"]["path"] == str(out.resolve()) and side["dicom_notes"] == []
    with pytest.raises(InputError, match="not an empty folder"):
        save_dicom(node, export)


def test_a_corrupt_series_is_refused_before_any_node_is_made(scene, export):
    for path in (export / "sag").iterdir():
        path.write_bytes(path.read_bytes()[:400])  # headers survive, pixels cut off
    nodes_before = scene.GetNumberOfNodes()
    with pytest.raises(InputError):
        load_series(scene, export, ["3", "5"])
    assert scene.GetNumberOfNodes() == nodes_before
