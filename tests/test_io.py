"""Geometry-exact reading and writing, atomic writes, and refusal of bad files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from isovox import io
from isovox.errors import InputError
from isovox.volume import Volume

FORMATS = [".nii", ".nii.gz", ".nrrd", ".mha", ".mhd"]
PERMUTATIONS = [(0, 1, 2), (2, 0, 1), (1, 2, 0), (0, 2, 1)]


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("perm", PERMUTATIONS)
def test_round_trip_keeps_geometry(tmp_path, rng, suffix, perm, make_oblique_affine):
    data = rng.normal(size=(7, 9, 11)).astype(np.float32)
    spacing = rng.uniform(0.4, 5.0, 3)
    vol = Volume(data, make_oblique_affine(rng, spacing), {}).transposed(perm).flipped((1,))
    path = io.write_volume(vol, tmp_path / f"v{suffix}")
    back = io.read_volume(path)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5)
    np.testing.assert_array_equal(back.data, vol.data)
    # The same voxel is at the same RAS position whatever the storage order.
    ijk = np.array([2, 3, 4])
    np.testing.assert_allclose(back.index_to_world(ijk), vol.index_to_world(ijk), atol=1e-5)


def test_nifti_sform_and_qform_agree(tmp_path, rng, make_oblique_affine):
    vol = Volume(np.zeros((4, 5, 6)), make_oblique_affine(rng, (0.9, 1.1, 4.0)))
    path = io.write_volume(vol, tmp_path / "v.nii.gz")
    header = nib.load(str(path)).header
    assert int(header["sform_code"]) > 0 and int(header["qform_code"]) > 0
    np.testing.assert_allclose(header.get_sform(), header.get_qform(), atol=1e-4)
    np.testing.assert_allclose(header.get_sform(), vol.affine, atol=1e-6)


def test_itk_reader_matches_nibabel_on_the_same_file(tmp_path, rng, make_oblique_affine):
    """Two libraries, two conventions (LPS vs RAS), one patient-space answer."""
    vol = Volume(rng.normal(size=(5, 6, 7)), make_oblique_affine(rng, (1.0, 2.0, 3.0)))
    path = io.write_volume(vol, tmp_path / "v.nii.gz")
    via_itk = io.sitk_to_volume(sitk.ReadImage(str(path)))
    np.testing.assert_allclose(via_itk.affine, vol.affine, atol=1e-4)
    np.testing.assert_array_equal(via_itk.data, vol.data)


def _write_dicom_series(folder: Path, vol: Volume) -> None:
    image = sitk.Cast(io.volume_to_sitk(vol), sitk.sitkInt16)
    folder.mkdir()
    direction = image.GetDirection()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        sl = image[:, :, k]
        for tag, value in (
            ("0008|0060", "MR"),
            ("0020|000d", "1.2.826.0.1.3680043.2.1125.1"),
            ("0020|000e", "1.2.826.0.1.3680043.2.1125.1.2"),
            ("0020|0032", "\\".join(f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k)))),
            ("0020|0037", "\\".join(f"{v:.6f}" for v in direction[0:1] + direction[3:4] + direction[6:7]
                                    + direction[1:2] + direction[4:5] + direction[7:8])),
            ("0020|0013", str(k + 1)),
            ("0018|0050", "4.0"),
            ("0008|103e", "ax T1 4mm"),
        ):
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(sl)


def test_dicom_series_folder(tmp_path, rng, make_oblique_affine):
    data = np.round(rng.uniform(0, 1000, size=(8, 9, 6))).astype(np.float32)
    vol = Volume(data, make_oblique_affine(rng, (0.8, 0.8, 4.0), max_angle=20))
    _write_dicom_series(tmp_path / "series", vol)
    back = io.read_volume(tmp_path / "series")
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-3)
    np.testing.assert_array_equal(back.data, vol.data)
    assert back.meta["slice_thickness"] == 4.0
    assert back.meta["modality"] == "MR"


def test_sidecar_gives_slice_thickness(tmp_path):
    vol = Volume(np.ones((4, 4, 4)), np.diag([1, 1, 5, 1]))
    path = io.write_volume(vol, tmp_path / "s.nii.gz", sidecar={"SliceThickness": 4.0, "SpacingBetweenSlices": 5.0})
    back = io.read_volume(path)
    assert back.meta["slice_thickness"] == 4.0 and back.meta["spacing_between_slices"] == 5.0


def test_write_is_atomic_when_it_fails(tmp_path, monkeypatch):
    vol = Volume(np.ones((4, 4, 4)), np.eye(4))

    def broken(volume, path):
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(io, "_write_nifti", broken)
    with pytest.raises(OSError, match="disk full"):
        io.write_volume(vol, tmp_path / "out.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_to_overwrite_an_input(tmp_path, digest):
    vol = Volume(np.ones((4, 4, 4)), np.eye(4))
    src = io.write_volume(vol, tmp_path / "in.nii.gz")
    before = digest(src)
    with pytest.raises(InputError, match="overwrite an input"):
        io.write_volume(vol, tmp_path / "in.nii.gz", protect=[src])
    assert digest(src) == before


def test_mhd_writes_header_and_raw(tmp_path):
    vol = Volume(np.arange(64, dtype=np.float32).reshape(4, 4, 4), np.diag([1, 2, 3, 1]))
    io.write_volume(vol, tmp_path / "v.mhd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mhd", "v.raw"]
    np.testing.assert_array_equal(io.read_volume(tmp_path / "v.mhd").data, vol.data)


# ----------------------------------------------------------------------------- bad files


def _nifti(tmp_path, data, affine=np.eye(4), name="bad.nii"):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    return path


def test_missing_and_unsupported(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        io.read_volume(tmp_path / "nothing.nii.gz")
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match="unsupported file type"):
        io.read_volume(tmp_path / "x.png")


def test_truncated_and_garbage_files(tmp_path, rng):
    good = io.write_volume(Volume(rng.normal(size=(20, 20, 20)), np.eye(4)), tmp_path / "good.nii.gz")
    raw = good.read_bytes()
    (tmp_path / "trunc.nii.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="truncated or corrupt|cannot read"):
        io.read_volume(tmp_path / "trunc.nii.gz")
    (tmp_path / "junk.nii.gz").write_bytes(gzip.compress(b"not a nifti header" * 10))
    with pytest.raises(InputError, match="cannot read"):
        io.read_volume(tmp_path / "junk.nii.gz")
    (tmp_path / "junk.mha").write_bytes(b"\x00\x01garbage")
    with pytest.raises(InputError, match="not a MetaImage header"):
        io.read_volume(tmp_path / "junk.mha")


def test_two_d_data(tmp_path):
    with pytest.raises(InputError, match="2-D"):
        io.read_volume(_nifti(tmp_path, np.zeros((10, 10), np.float32)))
    with pytest.raises(InputError, match="2-D"):
        io.read_volume(_nifti(tmp_path, np.zeros((10, 10, 1), np.float32), name="slice.nii"))


def test_four_d_data_needs_a_frame(tmp_path, rng):
    data = rng.normal(size=(6, 7, 8, 5)).astype(np.float32)
    path = _nifti(tmp_path, data)
    with pytest.raises(InputError, match=r"4-D data with 5 volumes.*--frame"):
        io.read_volume(path)
    np.testing.assert_array_equal(io.read_volume(path, frame=3).data, data[..., 3])
    with pytest.raises(InputError, match="out of range"):
        io.read_volume(path, frame=5)
    itk_path = tmp_path / "four.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(data.transpose(3, 2, 1, 0), isVector=False), str(itk_path))
    with pytest.raises(InputError, match=r"4-D data with 5 volumes"):
        io.read_volume(itk_path)
    np.testing.assert_array_equal(io.read_volume(itk_path, frame=2).data, data[..., 2])


def test_single_frame_4d_is_accepted(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6, 1)
    back = io.read_volume(_nifti(tmp_path, data))
    assert back.shape == (4, 5, 6)
    np.testing.assert_array_equal(back.data, data[..., 0])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_voxels(tmp_path, bad):
    data = np.ones((5, 5, 5), np.float32)
    data[1, 2, 3] = bad
    with pytest.raises(InputError, match="1 voxel are NaN or Inf|NaN or Inf"):
        io.read_volume(_nifti(tmp_path, data))


def _patched_pixdim(tmp_path, value):
    path = _nifti(tmp_path, np.ones((5, 5, 5), np.float32), np.diag([1.0, 2.0, 1.0, 1.0]))
    img = nib.load(str(path))
    img.header.set_sform(None, code=0)
    nib.save(img, str(path))
    raw = bytearray(path.read_bytes())
    raw[76 + 8: 76 + 12] = struct.pack("<f", value)  # pixdim[2]
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("value,word", [(0.0, "zero"), (-2.0, "negative"), (float("nan"), "not finite")])
def test_bad_nifti_spacing(tmp_path, value, word):
    with pytest.raises(InputError, match=word):
        io.read_volume(_patched_pixdim(tmp_path, value))


@pytest.mark.parametrize("text,word", [(b"1 -2 1", "negative"), (b"1 0 1", "zero"), (b"1 nan 1", "not finite")])
def test_bad_metaimage_spacing(tmp_path, text, word):
    path = tmp_path / "v.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 5, 6), np.float32)), str(path))
    raw = path.read_bytes().replace(b"ElementSpacing = 1 1 1", b"ElementSpacing = " + text)
    path.write_bytes(raw)
    with pytest.raises(InputError, match=word):
        io.read_volume(path)


def test_singular_affine(tmp_path):
    affine = np.array([[1.0, 1.0, 0, 0], [0, 0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1]])
    with pytest.raises(InputError, match="singular"):
        io.read_volume(_nifti(tmp_path, np.ones((5, 5, 5), np.float32), affine))
