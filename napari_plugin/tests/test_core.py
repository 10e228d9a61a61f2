"""The headless plugin logic, without a viewer or Qt: geometry, runs, previews, maps, profiles, lesions."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from isovox import api
from isovox.errors import CancelledError, InputError
from isovox.io import read_volume, sidecar_path, write_volume
from isovox.progress import Task
from isovox.simulate import orthogonal_protocol, simulate_scan
from isovox.volume import Volume
from napari_isovox import _core, _io, _sample


class FakeLayer:
    """The parts of a napari Image layer the core uses."""

    def __init__(self, data, affine, name="layer", metadata=None):
        self.data, self.affine, self.name, self.metadata = data, np.asarray(affine), name, metadata or {}

    def data_to_world(self, position):
        return self.affine[:3, :3] @ np.asarray(position, float) + self.affine[:3, 3]


def image_layer(layer_data):
    from napari.layers import Layer

    return Layer.create(*layer_data)


@pytest.fixture(scope="module")
def hr() -> Volume:
    """A smooth 24x28x20 1 mm phantom with a tilted affine."""
    grid = np.indices((24, 28, 20), dtype=np.float32)
    data = 100 + 50 * np.sin(grid[0] / 3) * np.cos(grid[1] / 4) + 2 * grid[2]
    affine = np.eye(4)
    affine[:3, 3] = (-12, -14, -10)
    return Volume(data, affine, {"source": "phantom"})


@pytest.fixture(scope="module")
def scans(hr):
    return [simulate_scan(hr, acq) for acq in orthogonal_protocol(4.0, [0, 1, 2])]


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_reader_layers_carry_the_file_geometry(tmp_path, oblique_volume, suffix):
    path = tmp_path / f"oblique{suffix}"
    write_volume(oblique_volume, path)
    reader = _io.get_reader(str(path))
    assert reader is not None
    (layer_data,) = reader(str(path))
    layer = image_layer(layer_data)
    volume = read_volume(path)
    order = _core.display_order(volume.affine)
    rng = np.random.default_rng(0)
    for _ in range(20):
        ijk = rng.integers(0, volume.shape)
        layer_index = ijk[list(order)]
        np.testing.assert_allclose(layer.data_to_world(layer_index), volume.index_to_world(ijk), atol=1e-4)
        assert layer.data[tuple(layer_index)] == volume.data[tuple(ijk)]
    # The layer's array axes follow R, A, S so napari can slice it; the engine gets the same geometry back.
    again = _core.layer_to_volume(layer)
    np.testing.assert_allclose(again.affine, volume.transposed(order).affine, atol=1e-5)
    np.testing.assert_array_equal(again.data, volume.transposed(order).data)
    assert _io.get_reader(str(tmp_path / "notes.txt")) is None


def test_writer_keeps_geometry_and_writes_provenance(tmp_path, oblique_volume):
    provenance = {"method": "cubeavg", "model": None, "spacing": [1, 1, 1], "inputs": [{"source": "a"}]}
    data, attrs, _ = _core.volume_layer_data(oblique_volume.with_meta(provenance=provenance), "result")
    layer = image_layer((data, attrs, "image"))
    out = tmp_path / "saved.nii.gz"
    ldata, lattrs, _ = layer.as_layer_data_tuple()
    assert _io.write_image(str(out), ldata, lattrs) == [str(out)]
    back = read_volume(out)
    np.testing.assert_allclose(back.affine, _core.layer_affine(layer), atol=1e-5)
    np.testing.assert_array_equal(back.data, np.asarray(layer.data))
    side = json.loads(sidecar_path(out).read_text())
    assert side["provenance"]["method"] == "cubeavg"
    assert side["isovox_version"] and side["layer"] == "result"


def test_sample_data_is_colin27_scans_and_reference():
    layers = _sample.colin27_sample()
    names = [attrs["name"] for _, attrs, _ in layers]
    assert names[:3] == ["colin27_axial_4mm", "colin27_coronal_4mm", "colin27_sagittal_4mm"]
    spacings = [np.linalg.norm(image_layer(ld).affine.affine_matrix[:3, :3], axis=0) for ld in layers]
    for spacing in spacings[:3]:
        assert sorted(np.round(spacing, 3)) == [1.0, 1.0, 4.0]
    assert np.allclose(spacings[3], 1.0)
    scans, reference = _core.suggest_roles([image_layer(ld) for ld in layers])
    assert [s.name for s in scans] == names[:3] and reference.name == names[3]


def test_run_matches_engine_and_cancel_adds_nothing(scans):
    request = _core.RunRequest(scans, method="cubeavg", scale=2.0)
    output = _core.run_super_resolution(request)
    direct = api.super_resolve(scans, "cubeavg", spacing=2.0)
    np.testing.assert_allclose(output.volume.affine, direct.volume.affine)
    np.testing.assert_allclose(output.volume.data, direct.volume.data, atol=1e-5)
    assert output.provenance["method"] == "cubeavg" and output.volume.spacing.max() == pytest.approx(2.0)
    calls = []

    def progress(fraction, message):
        calls.append(fraction)

    with pytest.raises(CancelledError):  # cancelled after the first progress report
        _core.run_super_resolution(request, Task(progress, cancelled=lambda: len(calls) > 0))
    assert len(calls) == 1


def test_preview_slab_equals_the_full_run_there(scans):
    request = _core.RunRequest(scans, method="cubeavg")
    full = _core.run_super_resolution(request).volume
    centre = full.index_to_world(np.array([10, 12, 9]))
    preview = _core.run_preview(request, centre, half_width_mm=2.0, normal_ras=(0, 1, 0)).volume
    assert preview.shape == (24, 5, 20)  # the slab is cut across A (grid axis 1), 2 mm each side
    start = np.rint(full.world_to_index(preview.index_to_world(np.zeros(3)))).astype(int)
    np.testing.assert_allclose(preview.data, full.data[:, start[1]:start[1] + 5, :], atol=1e-4)


def test_residual_maps_on_synthetic_data(scans, hr):
    fused = _core.run_super_resolution(_core.RunRequest(scans, method="cubeavg")).volume
    result = fused.with_data(np.asarray(fused.data) + 3.0)  # a "method" that adds exactly 3
    reference = hr.with_data(np.asarray(fused.data) - 2.0)
    maps = _core.qa_maps(result, scans, reference)
    np.testing.assert_allclose(maps.added.data, 3.0, atol=1e-4)
    np.testing.assert_allclose(maps.error.data, 5.0, atol=1e-4)
    assert len(maps.consistency) == 3
    for cmap in maps.consistency:  # re-acquiring the fused volume + 3 gives each scan + ~3
        assert np.nanmedian(cmap.data) == pytest.approx(3.0, abs=1.5)
    distance = maps.acquired_distance.data
    # 4 mm slab centres fall between 1 mm voxel centres: every voxel is 0.5 or 1.5 mm from one.
    assert set(np.unique(distance[np.isfinite(distance)]).round(4)) == {0.5, 1.5}
    layers = _core.qa_layer_data(maps, "r")
    signed = [attrs for _, attrs, _ in layers if attrs["colormap"] == "bwr"]
    assert len(signed) == 5
    assert all(attrs["contrast_limits"][0] == -attrs["contrast_limits"][1] for attrs in signed)


def test_profile_values_in_mm_on_an_oblique_ramp(oblique_volume):
    # Intensity = 2 * R + 1: linear, so a linear-interpolated profile is exact.
    ijk = np.indices(oblique_volume.shape).reshape(3, -1).T
    ras = oblique_volume.index_to_world(ijk)
    ramp = oblique_volume.with_data((2 * ras[:, 0] + 1).reshape(oblique_volume.shape))
    centre = oblique_volume.index_to_world((np.array(oblique_volume.shape) - 1) / 2)
    start, end = centre - [3, 1, 0.5], centre + [3, 1, 0.5]
    distances, (values,) = _core.profile_along([ramp], start, end, samples=11)
    length = np.linalg.norm(end - start)
    np.testing.assert_allclose(distances, np.linspace(0, length, 11))
    expected = 2 * (start[0] + (end[0] - start[0]) * distances / length) + 1
    np.testing.assert_allclose(values, expected, atol=1e-3)


def test_lesion_export_in_ras_mm(tmp_path, hr):
    points = np.array([[1.5, -2.0, 3.25], [-4.0, 5.0, 0.0]])
    values = {"hr": _core.sample_at(hr, points)}
    records = _core.lesion_records(points, values=values)
    assert records[0]["R_mm"] == 1.5 and records[1]["A_mm"] == 5.0 and records[0]["label"] == "lesion 1"
    assert records[0]["hr"] == pytest.approx(float(_core.sample_at(hr, points[:1])[0]), abs=1e-3)
    with open(_core.export_lesions(records, tmp_path / "marks.csv")) as fh:
        rows = list(csv.DictReader(fh))
    assert float(rows[1]["R_mm"]) == -4.0 and float(rows[0]["S_mm"]) == 3.25
    data = json.loads(_core.export_lesions(records, tmp_path / "marks.json").read_text())
    assert data["coordinate_system"] == "RAS" and len(data["lesions"]) == 2
    crops = _core.lesion_crops({"hr": hr}, points[0], half_size_mm=4.0)
    assert crops["hr"].shape == (8, 24)


def test_layer_affine_is_read_through_data_to_world():
    fake = FakeLayer(np.zeros((4, 5, 6)), np.diag([1.0, 2.0, 3.0, 1.0]))
    np.testing.assert_allclose(_core.layer_affine(fake), fake.affine)


def test_reader_opens_a_dicom_folder(tmp_path, oblique_volume, write_dicom_series):
    # right-handed storage, as DICOM series sort slices along the normal
    volume = oblique_volume.flipped((2,)).with_data(np.round(np.asarray(oblique_volume.flipped((2,)).data)))
    write_dicom_series(tmp_path / "series", volume)
    reader = _io.get_reader(str(tmp_path / "series"))
    assert reader is not None
    (layer_data,) = reader(str(tmp_path / "series"))
    layer = image_layer(layer_data)
    expected = read_volume(tmp_path / "series")
    np.testing.assert_allclose(expected.affine, volume.affine, atol=1e-3)
    order = _core.display_order(expected.affine)
    np.testing.assert_allclose(_core.layer_affine(layer), expected.transposed(order).affine, atol=1e-5)
    assert layer_data[1]["name"] == "series"


def same_voxels(a: Volume, b: Volume, atol: float = 1e-4) -> None:
    """``a`` holds ``b``'s voxels at the same RAS positions (in whatever axis order)."""
    from isovox.grid import Grid
    from isovox.metrics import aligned_to

    values, covered = aligned_to(a, Grid.of(b))
    assert values is not None and covered.all(), "the grids do not share voxel centres"
    np.testing.assert_allclose(values, b.data, atol=atol)


def _dicom_series(volume, folder, number, description):
    pydicom = pytest.importorskip("pydicom")
    from isovox.dicom_out import write_series

    write_series(volume, folder, "scanner", description=description)
    for path in folder.iterdir():
        ds = pydicom.dcmread(str(path))
        ds.SeriesNumber, ds.SeriesDescription, ds.ImageType = number, description, ["ORIGINAL", "PRIMARY"]
        ds.save_as(str(path))


def test_a_pacs_export_opens_one_layer_per_series_and_saves_as_derived_dicom(tmp_path, scans):
    pydicom = pytest.importorskip("pydicom")
    export = tmp_path / "export"
    _dicom_series(scans[2], export / "a", 3, "T2 AX")
    _dicom_series(scans[1], export / "b", 5, "T2 COR")
    reader = _io.get_reader(str(export))
    assert reader is not None
    layers = [image_layer(ld) for ld in reader(str(export))]
    assert [layer.name for layer in layers] == ["export #3 T2 AX", "export #5 T2 COR"]
    volumes = [_core.layer_to_volume(layer) for layer in layers]
    for volume, key in zip(volumes, ("3", "5")):
        assert volume.meta["series_number"] == int(key)
        same_voxels(volume, read_volume(export, series=key))
    output = _core.run_super_resolution(_core.RunRequest(volumes, method="cubeavg", scale=2.0))
    assert [e["series_number"] for e in output.provenance["inputs"]] == [3, 5]
    data, attrs, _ = _core.volume_layer_data(output.volume, output.name)
    result = image_layer((data, attrs, "image"))
    ldata, lattrs, _ = result.as_layer_data_tuple()
    written = _io.write_dicom(str(tmp_path / "derived.dcm"), ldata, lattrs)
    assert written == [str(tmp_path / "derived")]
    first = pydicom.dcmread(str(sorted((tmp_path / "derived").iterdir())[0]))
    source = pydicom.dcmread(str(next((export / "a").iterdir())))
    assert first.StudyInstanceUID == source.StudyInstanceUID and first.SeriesDescription == "T2 AX isovox cubeavg"
    expected = _core.layer_to_volume(result)
    same_voxels(read_volume(tmp_path / "derived"), expected, atol=float(np.ptp(expected.data)) / 65534 * 1.01)
    assert json.loads((tmp_path / "derived.json").read_text())["provenance"]["method"] == "cubeavg"
    with pytest.raises(InputError, match="not an empty folder"):
        _io.write_dicom(str(export), ldata, lattrs)


def test_a_malformed_file_gives_one_notification_and_no_layer(tmp_path, monkeypatch):
    import napari.utils.notifications as notifications

    shown = []
    monkeypatch.setattr(notifications, "show_error", shown.append)
    bad = tmp_path / "bad.mha"
    bad.write_bytes(b"NDims = -1\nDimSize = 4 4 4\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n" + bytes(64))
    reader = _io.get_reader(str(bad))
    assert reader is not None and reader(str(bad)) == [(None,)]  # napari's "nothing to add"
    assert len(shown) == 1 and "NDims = -1" in shown[0] and "Traceback" not in shown[0]
