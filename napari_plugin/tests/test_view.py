"""``isovox view``: the desktop viewer command (napari imported only inside it)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from isovox.cli.main import main
from isovox.io import read_volume
from isovox.sample import sample_scan_paths


def test_view_opens_files_with_the_dock(display, capsys):
    from napari_isovox._view import open_viewer

    paths = [str(p) for p in sample_scan_paths()]
    viewer = open_viewer(paths)
    try:
        assert [layer.name for layer in viewer.layers] == ["colin27_axial_4mm", "colin27_coronal_4mm",
                                                           "colin27_sagittal_4mm"]
        assert any("isovox" in name for name in viewer.window.dock_widgets)
        volume = read_volume(paths[0])
        np.testing.assert_allclose(viewer.layers[0].data_to_world([3, 4, 5]), volume.index_to_world([3, 4, 5]))
        assert "scan 3" in capsys.readouterr().out  # the pre-flight report, as `isovox info` prints it
    finally:
        viewer.close()


def test_view_refuses_bad_input_in_one_line(tmp_path, capsys):
    assert main(["view", str(tmp_path / "missing.nii.gz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file" in err[0]


def test_view_without_napari_says_how_to_get_it():
    code = ("import sys; sys.modules['napari'] = None\n"
            "from isovox.cli.main import main\n"
            f"sys.exit(main(['view', {str(sample_scan_paths()[0])!r}]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs napari" in lines[0], out.stderr
