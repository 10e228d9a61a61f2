"""Malformed inputs: each defect the hostile-user review found, as a regression test, and the fuzzer
(a few hundred mutants here; ``make fuzz`` runs ten thousand)."""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from isovox import io
from isovox.cli.main import main
from isovox.errors import InputError
from isovox.volume import Volume

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def scan(tmp_path) -> Path:
    data = np.random.default_rng(0).random((12, 10, 6)).astype(np.float32) * 100
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def _mha(tmp_path: Path, **fields: str) -> Path:
    header = {"ObjectType": "Image", "NDims": "3", "DimSize": "4 4 4", "ElementSpacing": "1 1 1",
              "ElementType": "MET_UCHAR", **fields, "ElementDataFile": "LOCAL"}
    path = tmp_path / "x.mha"
    path.write_bytes("".join(f"{k} = {v}\n" for k, v in header.items()).encode() + bytes(64))
    return path


@pytest.mark.parametrize("fields, message", [
    ({"NDims": "-1"}, "NDims = -1"),
    ({"NDims": "100"}, "NDims = 100"),
    ({"DimSize": "4294967296 1 1"}, "more than isovox reads"),
    ({"DimSize": "1000000 1000 1"}, "promises 1000000000 bytes"),
    ({"DimSize": "4 4"}, "DimSize has 2 values"),
    ({"ElementSpacing": "7.4e19 1 1"}, "absurd"),
    ({"TransformMatrix": "1e300 0 0 0 1 0 0 0 1"}, "absurd values"),
    ({"ElementType": "MET_NONSENSE"}, "not a MetaImage voxel type"),
])
def test_metaimage_headers_are_checked_before_itk_reads_them(tmp_path, fields, message):
    """NDims -1 / 100 crashed the process inside ITK; a 4 Gi-voxel DimSize made it allocate first."""
    with pytest.raises(InputError, match=message):
        io.read_volume(_mha(tmp_path, **fields))


def test_nrrd_headers_are_checked_too(tmp_path):
    path = tmp_path / "x.nrrd"
    path.write_bytes(b"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 400 400 400\nencoding: raw\n\n" + bytes(64))
    with pytest.raises(InputError, match="truncated"):
        io.read_volume(path)
    (tmp_path / "y.nhdr").write_text("NRRD0004\ntype: uint8\ndimension: 3\nsizes: 4 4 4\nencoding: raw\n"
                                     "data file: gone.raw\n")
    with pytest.raises(InputError, match="data file gone.raw is missing"):
        io.read_volume(tmp_path / "y.nhdr")


@pytest.mark.parametrize("field, value, message", [
    ("srow", 1e30, "absurd"), ("pixdim", 1e30, "absurd"), ("pixdim", 7.4e19, "absurd"),
])
def test_absurd_nifti_geometry_is_refused_at_once(tmp_path, scan, field, value, message):
    """A 1e30 affine reached np.indices; a 7.4e19 mm spacing ran 14 s before numpy failed to allocate."""
    img = nib.load(str(scan))
    header = img.header.copy()
    if field == "srow":
        header["srow_x"] = [value, 0, 0, 0]
        header.set_qform(None, code=0)
    else:
        header["pixdim"][1] = value
        header.set_sform(None, code=0)
    path = tmp_path / "bad.nii"
    raw = bytearray(header.binaryblock) + bytes(4) + np.asarray(img.dataobj, np.float32).tobytes(order="F")
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=message):
        io.read_volume(path)


def test_a_nifti_header_bigger_than_its_file_is_refused_before_reading(tmp_path, scan):
    raw = bytearray(gzip.decompress(scan.read_bytes()))
    struct.pack_into("<8h", raw, 40, 3, 30000, 30000, 30000, 1, 1, 1, 1)
    (tmp_path / "big.nii").write_bytes(bytes(raw))
    with pytest.raises(InputError, match="more than isovox reads|truncated"):
        io.read_volume(tmp_path / "big.nii")


@pytest.mark.parametrize("text", ['{"SliceThickness": ' + "9" * 400 + "}", "[" * 100000 + "]" * 100000,
                                  '{"SliceThickness": "5"}', '{"SliceThickness": -2}', "\xff\xfe"])
def test_a_bent_sidecar_is_ignored_with_a_warning(scan, text):
    """A 400-digit SliceThickness was a TypeError, 100,000 brackets a RecursionError (internal errors)."""
    scan.with_name("scan.json").write_text(text, encoding="latin-1")
    volume = io.read_volume(scan)
    assert "slice_thickness" not in volume.meta
    assert any("ignored" in w for w in volume.meta["warnings"])


def _bytes_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_outputs_never_replace_an_inputs_companions(tmp_path, scan, capsys):
    """run scan.nii.gz -o scan.nii replaced scan.json; .nhdr/.mhd outputs overwrote inputs' data files."""
    scan.with_name("scan.json").write_text(json.dumps({"SliceThickness": 3}))
    before = _bytes_of(tmp_path)
    assert main(["run", str(scan), "-o", str(tmp_path / "scan.nii"), "--method", "bspline", "-q"]) == 2
    assert "companion of an input" in capsys.readouterr().err and _bytes_of(tmp_path) == before

    image = sitk.GetImageFromArray(np.zeros((6, 10, 12), np.int16))
    image.SetSpacing((1.0, 1.0, 3.0))
    sitk.WriteImage(image, str(tmp_path / "det.mhd"))  # det.mhd + det.raw
    (tmp_path / "det.raw").rename(tmp_path / "data.raw")
    text = (tmp_path / "det.mhd").read_text().replace("ElementDataFile = det.raw", "ElementDataFile = data.raw")
    (tmp_path / "det.mhd").write_text(text)
    (tmp_path / "det.nhdr").write_text("NRRD0004\ntype: int16\ndimension: 3\nsizes: 12 10 6\nspacings: 1 1 3\n"
                                       "encoding: raw\nendian: little\ndata file: out.raw\n")
    (tmp_path / "out.raw").write_bytes(bytes(12 * 10 * 6 * 2))
    before = _bytes_of(tmp_path)
    for source, target in (("det.nhdr", "out.mhd"), ("det.mhd", "data.mhd")):
        code = main(["run", str(tmp_path / source), "-o", str(tmp_path / target), "--method", "bspline", "-q"])
        err = capsys.readouterr().err
        assert code == 2 and "detached data file" in err and len(err.strip().splitlines()) == 1, err
    assert _bytes_of(tmp_path) == before
    # a DICOM output folder named like the input would put its provenance on the input's sidecar
    assert main(["run", str(scan), "-o", str(tmp_path / "scan"), "--format", "dicom", "--method", "bspline",
                 "-q"]) == 2
    assert "companion of an input" in capsys.readouterr().err and _bytes_of(tmp_path) == before
    assert not (tmp_path / "scan").exists()


def test_dicom_tags_with_impossible_values_are_not_trusted(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from isovox.dicom_out import write_series

    volume = Volume(np.random.default_rng(1).random((8, 8, 5)).astype(np.float32), np.diag([1, 1, 4.0, 1]), {})
    write_series(volume, tmp_path / "s", "t")
    for path, value in zip(sorted((tmp_path / "s").iterdir()), ("nan", "-1", "inf", "nan", "-1")):
        ds = pydicom.dcmread(str(path))
        ds.SliceThickness = value
        ds.SpacingBetweenSlices = value
        ds.save_as(str(path))
    read = io.read_volume(tmp_path / "s")
    assert read.meta.get("slice_thickness") is None and read.spacing[2] == pytest.approx(4.0)


def _one_line(capfd) -> str:
    out, err = capfd.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_native_and_library_chatter_never_reaches_stderr(tmp_path, scan, capfd):
    """MetaIO's 'M_Read: Error parsing file', nibabel's pixdim log and numpy cast warnings were extra lines."""
    (tmp_path / "junk.mha").write_bytes(b"NDims = 3\nDimSize = 4 4 4\nElementType = MET_UCHAR\n"
                                        b"ElementSpacing = 1 1 1\nCompressedData = True\n"
                                        b"ElementDataFile = LOCAL\n" + bytes(range(64)))
    assert main(["info", str(tmp_path / "junk.mha")]) == 2
    assert "junk.mha" in _one_line(capfd)
    raw = bytearray(gzip.decompress(scan.read_bytes()))
    struct.pack_into("<f", raw, 80, -1.0)  # pixdim[1] negative: nibabel logs and repairs it
    (tmp_path / "neg.nii").write_bytes(bytes(raw))
    assert main(["info", str(tmp_path / "neg.nii")]) == 2
    assert "negative" in _one_line(capfd)
    big = tmp_path / "big.nii"
    nib.save(nib.Nifti1Image(np.full((4, 4, 4), 1e300), np.eye(4)), str(big))
    assert main(["info", str(big)]) == 2
    assert "NaN or Inf" in _one_line(capfd)


def test_messages_name_the_right_scan_and_flag(tmp_path, scan, capsys):
    far = tmp_path / "far.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((12, 10, 6), np.float32), np.diag([1.0, 1.0, 3.0, 1.0]) +
                             np.array([[0, 0, 0, 500], [0] * 4, [0] * 4, [0] * 4])), str(far))
    out = tmp_path / "o.nii.gz"
    assert main(["run", str(scan), str(far), "-o", str(out), "--method", "cubeavg", "-q"]) == 2
    assert "scan 1 and scan 2 do not overlap" in capsys.readouterr().err
    assert main(["run", str(scan), "--like", str(far), "-o", str(out), "--method", "bspline", "-q"]) == 2
    assert "scan 1 does not reach the output grid" in capsys.readouterr().err
    four = tmp_path / "four.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((12, 10, 18, 3), np.float32), np.eye(4)), str(four))
    assert main(["run", str(scan), "--reference", str(four), "--method", "recnn", "-o", str(out), "-q"]) == 2
    assert "--reference-frame 0..2" in capsys.readouterr().err
    assert main(["run", str(scan), "--reference", str(far), "--method", "recnn", "-o", str(out), "-q"]) == 2
    assert "--reference does not overlap the scans" in capsys.readouterr().err
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        assert main(["run", str(scan), "-o", str(locked / "o.nii.gz"), "--method", "bspline", "-q"]) == 2
        err = capsys.readouterr().err
        assert f"{locked}: cannot write there" in err and ".isovox-" not in err
    assert not out.exists()


def test_the_fuzzer_finds_no_defect():
    """A few hundred seeded mutants of every format through the reader and twelve through 'isovox run'."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "fuzz.py"), "--mutants", "330", "--cli", "12",
                           "--seed", "7"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "defects: 0" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-2000:]
