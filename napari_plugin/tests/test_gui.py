"""The plugin in a real napari viewer under Xvfb: manifest, reader, sample, dock, run, cancel, compare, profile, lesions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from qtpy.QtCore import Qt

from isovox.io import read_volume, sidecar_path, write_volume
from napari_isovox import _core

pytestmark = pytest.mark.usefixtures("display")
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer(show=True)


@pytest.fixture
def dock(viewer):
    viewer.open_sample("napari-isovox", "colin27")
    _, widget = viewer.window.add_plugin_dock_widget("napari-isovox", "isovox")
    return widget


def wait_for(qtbot, panel, timeout=60_000):
    qtbot.waitUntil(lambda: panel.worker is None, timeout=timeout)


def run_cubeavg(qtbot, dock, spacing=2.0):
    panel = dock.run_panel
    panel.method.setCurrentIndex(panel.method.findData("cubeavg"))
    panel.spacing.setValue(spacing)
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)  # as a user clicks Run
    assert panel.worker is not None and panel.cancel_button.isEnabled()
    wait_for(qtbot, panel)
    return panel


def test_npe2_validate():
    npe2 = Path(sys.executable).with_name("npe2")
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    out = subprocess.run([str(npe2), "validate", "napari-isovox"], capture_output=True, text=True,
                         encoding="utf-8", errors="replace", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in out.stdout


def test_open_oblique_file_through_the_reader(viewer, tmp_path, oblique_volume):
    path = tmp_path / "oblique.nrrd"
    write_volume(oblique_volume, path)
    (layer,) = viewer.open(str(path), plugin="napari-isovox")
    volume = read_volume(path)
    order = _core.display_order(volume.affine)
    for ijk in ([0, 0, 0], [11, 8, 14], [3, 7, 2]):
        np.testing.assert_allclose(layer.data_to_world(np.array(ijk)[list(order)]),
                                   volume.index_to_world(np.array(ijk)), atol=1e-4)


def test_sample_data_opens_with_geometry(viewer):
    layers = viewer.open_sample("napari-isovox", "colin27")
    assert len(layers) == 4
    from isovox.sample import sample_reference_path

    hr = read_volume(sample_reference_path())
    np.testing.assert_allclose(layers[3].data_to_world([5, 6, 7]), hr.index_to_world([5, 6, 7]), atol=1e-5)


def test_dock_suggests_roles_and_lists_registry_methods(dock, viewer):
    from isovox.frontend import methods_for
    from isovox.methods import all_methods, get_method

    assert tuple(viewer.dims.order) == (2, 1, 0)  # opens on the axial plane: A up, R across

    panel = dock.run_panel
    assert panel.scan_names() == ["colin27_axial_4mm", "colin27_coronal_4mm", "colin27_sagittal_4mm"]
    assert panel.reference.currentText() == "colin27_hr (reference)"
    listed = {panel.method.itemData(i) for i in range(panel.method.count())}
    assert listed == {m.name for m in methods_for(3, True)} and listed <= {m.name for m in all_methods()}
    first = get_method(panel.method.itemData(0))
    assert first.name == methods_for(3, True)[0].name
    assert first.description in panel.method_help.text() and first.inputs in panel.method_help.text()


def test_preflight_panel(qtbot, dock):
    panel = dock.run_panel
    qtbot.mouseClick(panel.check_button, Qt.MouseButton.LeftButton)
    wait_for(qtbot, panel)
    text = panel.report.toPlainText()
    assert "scan 3" in text and "slice directions 90.0 deg apart" in text
    assert panel.warnings.text()


def test_run_in_worker_adds_result_with_geometry(qtbot, dock, viewer, tmp_path):
    panel = run_cubeavg(qtbot, dock)
    layer = viewer.layers[-1]
    assert layer.name.startswith("isovox cubeavg") and layer.metadata["isovox_role"] == "result"
    plan = _core.plan_run(_core.RunRequest([_core.layer_to_volume(viewer.layers[i]) for i in range(3)],
                                           "cubeavg", spacing=2.0))
    np.testing.assert_allclose(_core.layer_affine(layer), plan.grid.affine, atol=1e-6)
    assert panel.progress.value() == 1000 and "added" in panel.status.text()
    # Save it with the plugin's writer (File > Save Selected Layers): geometry and provenance kept.
    out = tmp_path / "result.nii.gz"
    viewer.layers.selection = {layer}
    viewer.layers.save(str(out), selected=True, plugin="napari-isovox")
    saved = read_volume(out)
    np.testing.assert_allclose(saved.affine, plan.grid.affine, atol=1e-5)
    side = json.loads(sidecar_path(out).read_text())
    assert side["provenance"]["method"] == "cubeavg" and side["provenance"]["spacing"] == [2.0, 2.0, 2.0]
    first = side["provenance"]["inputs"][0]
    assert first["path"].endswith("colin27_axial_4mm.nii.gz") and len(first["sha256"]) == 64
    assert side["provenance"]["options"] == {"register": False, "match_intensity": False, "ensemble": False,
                                             "adapt": False, "slice_profile": "box", "consistency": True}


def test_bad_choice_is_a_notification_not_a_traceback(qtbot, dock, viewer):
    panel = dock.run_panel
    before = len(viewer.layers)
    panel.method.setCurrentIndex(panel.method.findData("cubeavg"))
    panel.spacing.setValue(0.1)  # 40x finer than the 4 mm slices: the engine refuses
    panel.run()
    wait_for(qtbot, panel)
    assert "finer than the finest" in panel.status.text() and len(viewer.layers) == before
    assert panel.run_button.isEnabled()


def test_cancel_mid_run_adds_nothing(qtbot, dock, viewer):
    panel = dock.run_panel
    report = panel._report
    seen = []

    def report_then_cancel(fraction, message):  # the user presses Cancel after the first update
        seen.append(fraction)
        report(fraction, message)
        panel.cancel()

    panel._report = report_then_cancel
    before = [layer.name for layer in viewer.layers]
    panel.method.setCurrentIndex(panel.method.findData("cubeavg"))
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    assert panel.cancel_button.isEnabled()
    wait_for(qtbot, panel)
    assert [layer.name for layer in viewer.layers] == before
    assert len(seen) == 1 and "cancelled" in panel.status.text()
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()


def test_preview_slab_around_the_current_slice(qtbot, dock, viewer):
    panel = dock.run_panel
    viewer.dims.order = (2, 0, 1)  # axial view: S is the slice axis
    viewer.dims.set_point(2, 10.0)
    panel.method.setCurrentIndex(panel.method.findData("cubeavg"))
    panel.slab.setValue(3.0)
    panel.preview()
    wait_for(qtbot, panel)
    layer = viewer.layers[-1]
    assert layer.name == "isovox preview cubeavg"
    corners = np.array([layer.data_to_world(c) for c in ([0, 0, 0], np.array(layer.data.shape) - 1)])
    assert corners[:, 2].min() >= 10.0 - 3.5 and corners[:, 2].max() <= 10.0 + 3.5
    assert layer.data.shape[2] == 7


def test_layer_context_menu_super_resolves_selection(qtbot, dock, viewer):
    from napari._app_model import get_app_model

    app = get_app_model()
    for menu in ("napari/layers/context", "napari/layers/filter"):  # right-click menu and Layers > Filter
        items = [item for item in app.menus.get_menu(menu)
                 if getattr(getattr(item, "command", None), "id", "") == "napari-isovox.super_resolve_selected"]
        assert len(items) == 1 and items[0].command.title.startswith("Super-resolve")
        assert items[0].when.eval({"num_selected_image_layers": 1})
        assert not items[0].when.eval({"num_selected_image_layers": 0})
    viewer.layers.selection = {viewer.layers[0]}
    app.commands.execute_command("napari-isovox.super_resolve_selected").result()
    qtbot.waitUntil(lambda: viewer.layers[-1].name.startswith("isovox srr"), timeout=120_000)
    result = viewer.layers[-1]
    assert result.data.shape == (100, 100, 100) and result.metadata["isovox_role"] == "result"


def test_compare_profile_lesions_and_screenshot(qtbot, dock, viewer, tmp_path):
    run_cubeavg(qtbot, dock, spacing=1.0)
    result_name = viewer.layers[-1].name
    compare = dock.compare_panel
    assert compare.result.currentText() == result_name
    compare.compute()
    qtbot.waitUntil(lambda: compare.worker is None, timeout=120_000)
    added = viewer.layers["result - CubeAvg"]
    assert np.nanmax(np.abs(added.data)) < 1e-3  # CubeAvg adds nothing to CubeAvg
    error = viewer.layers["result - reference"]
    assert error.colormap.name == "bwr" and error.contrast_limits[0] == -error.contrast_limits[1]
    assert viewer.canvas.grid.enabled
    shown = [layer.name for layer in viewer.layers if layer.visible]
    assert shown[::2] == compare.compared and shown[2] == result_name and len(compare.compared) == 5
    assert shown[1::2] == [f"cursor: {name}" for name in compare.compared]  # one cursor per cell
    assert viewer.canvas.grid.stride == 2 and viewer.canvas.grid.actual_shape(viewer.layers) == (2, 3)

    class Move:  # what napari hands mouse-move callbacks
        position = (0.0, -10.0, 5.0)

    compare._on_mouse_move(viewer, Move())
    for cursor in compare.cursors:  # linked: every cell's cursor sits at the mouse's RAS point
        np.testing.assert_allclose(cursor.data, [[0.0, -10.0, 5.0]])
    assert "R 0.0  A -10.0  S 5.0 mm" in compare.cursor_text(np.array(Move.position))

    profiles = dock.profile_panel
    profiles.refresh()
    chosen = ["fused input (CubeAvg)", result_name, "colin27_hr (reference)"]
    profiles.set_chosen(chosen)
    start, end = np.array([-30.0, 5.0, 10.0]), np.array([30.0, 5.0, 10.0])
    profiles.set_line(start, end)
    assert set(profiles.curves) == set(chosen)
    volumes = [_core.layer_to_volume(viewer.layers[n]) for n in chosen]
    _, expected = _core.profile_along(volumes, start, end)
    for name, values in zip(chosen, expected):
        np.testing.assert_allclose(profiles.curves[name], values, atol=1e-4)
    # moving the line moves the plot
    line = viewer.layers["isovox profile line"]
    line.data = [np.array([start, end + [0, 0, 0]]) + [0, 4, 0]]
    assert not np.allclose(profiles.curves[result_name], expected[1])

    lesions = dock.lesion_panel
    points = lesions.points_layer()
    points.add([[10.0, 5.0, 10.0]])
    points.add([[-20.0, -15.0, 0.0]])
    assert lesions.list.count() == 2
    lesions.list.setCurrentRow(1)
    assert viewer.dims.point[-3:] == pytest.approx((-20.0, -15.0, 0.0), abs=1.0)
    crops = lesions.show_crops(1)
    assert set(crops) == set(compare.compared)
    out = lesions.export(str(tmp_path / "lesions.csv"))
    assert "R_mm" in Path(out).read_text().splitlines()[0]

    # The README picture: the compare grid (axial, radiological) with the profile in the dock.
    from napari_isovox._layers import set_view

    profiles.start_drawing()  # drawing leaves the grid for the single view; overlays come back
    assert not viewer.canvas.grid.enabled and not compare.grid.isChecked()
    assert line.visible and points.visible and not any(c.visible for c in compare.cursors)
    compare.grid.setChecked(True)
    assert not line.visible and viewer.canvas.grid.enabled and all(c.visible for c in compare.cursors)
    line.mode = "pan_zoom"
    profiles.update_profile()
    set_view(viewer, "axial")
    viewer.dims.set_point(2, 10.0)
    viewer.layers.selection.active = viewer.layers[result_name]
    compare.move_cursors(np.array([-14.0, 17.0, 10.0]))  # on the left frontal horn
    dock.tabs.setCurrentIndex(2)
    viewer.window._qt_window.resize(1500, 900)
    viewer.reset_view()
    qtbot.wait(300)
    canvas = viewer.screenshot(canvas_only=True)
    assert canvas[..., :3].std() > 20, "the napari canvas is blank"
    window = viewer.screenshot(canvas_only=False)
    from imageio.v3 import imwrite

    # The README's picture is refreshed on request only, so a test run leaves the tree clean.
    target = DOCS / "napari_compare.png" if os.environ.get("ISOVOX_UPDATE_DOCS") else tmp_path / "napari_compare.png"
    target.parent.mkdir(exist_ok=True)
    imwrite(target, window)
    assert window.shape[0] > 500
