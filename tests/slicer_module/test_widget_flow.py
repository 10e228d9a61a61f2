"""The widget's handlers, driven with stand-in Qt widgets over a real MRML scene.

No Slicer application is available to pytest, so the .ui widgets are replaced by
small objects with the same properties (value, checked, currentText, currentNode).
This runs the widget's own code paths (in-process and background runs, Cancel,
errors, suggestions, compare, profile, lesions, save) and catches wiring mistakes
that the library tests cannot; IsoVoxTest covers the real widgets inside Slicer.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import time
import types

import numpy as np
import pytest

import slicer
from IsoVoxLib.compare import COMPARE_LAYOUT_ID
from IsoVoxLib.convert import volume_from_node


class Fake:
    """A stand-in Qt widget: plain attributes plus the few methods the module calls."""

    def __init__(self, **values):
        self.enabled, self.visible, self.text = True, True, ""
        self.__dict__.update(values)

    def show(self):
        self.visible = True

    def hide(self):
        self.visible = False


class FakeSelector(Fake):
    def __init__(self, node=None):
        super().__init__(node=node)

    def currentNode(self):
        return self.node

    def setCurrentNode(self, node):
        self.node = node


class FakeTableView(Fake):
    def setMRMLTableNode(self, node):
        self.table = node


class FakeTimer:
    def setInterval(self, ms):
        pass

    def connect(self, signal, slot):
        pass

    def start(self):
        pass

    def stop(self):
        pass


@pytest.fixture
def app(monkeypatch, scene, scan_nodes, hr_node):
    """The module imported with stand-ins, and a widget whose ui holds fake widgets."""
    qt = types.ModuleType("qt")
    qt.QSettings = type("QSettings", (), {"value": lambda self, key: None})
    qt.QTimer = FakeTimer
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleTest",
                 "ScriptedLoadableModuleLogic"):
        setattr(scripted, name, type(name, (), {"__init__": lambda self, *args: None}))
    monkeypatch.setitem(sys.modules, "qt", qt)
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", scripted)
    monkeypatch.delitem(sys.modules, "IsoVox", raising=False)
    module = importlib.import_module("IsoVox")

    errors, charts = [], []
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    monkeypatch.setattr(slicer.util, "WaitCursor", contextlib.nullcontext)
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kw: errors.append(text))
    monkeypatch.setattr(slicer.util, "setSliceViewerLayers", lambda **kw: None)
    monkeypatch.setattr(slicer.util, "resetSliceViews", lambda: None)
    plots = types.SimpleNamespace(logic=lambda: types.SimpleNamespace(ShowChartInLayout=charts.append))
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(plots=plots), raising=False)

    layout = scene.AddNewNodeByClass("vtkMRMLLayoutNode")
    slices = {}
    for name in ("Red", "Yellow", "Green"):
        slices[name] = scene.AddNewNodeByClass("vtkMRMLSliceNode")
        slices[name].SetLayoutName(name)
        scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode").SetLayoutName(name)
    manager = types.SimpleNamespace(
        sliceWidget=lambda name: types.SimpleNamespace(mrmlSliceNode=lambda: slices[name]),
        layoutLogic=lambda: types.SimpleNamespace(GetLayoutNode=lambda: layout))
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(layoutManager=lambda: manager, processEvents=lambda: None),
                        raising=False)

    ui = types.SimpleNamespace(
        inputSelector1=FakeSelector(scan_nodes[0]), inputSelector2=FakeSelector(), inputSelector3=FakeSelector(),
        referenceSelector=FakeSelector(hr_node), outputSelector=FakeSelector(),
        methodComboBox=Fake(currentText="cubeavg"), methodDescriptionLabel=Fake(),
        spacingSliderWidget=Fake(value=2.0), scaleSliderWidget=Fake(value=0.0), deviceComboBox=Fake(currentText="cpu"),
        registerCheckBox=Fake(checked=False), matchIntensityCheckBox=Fake(checked=False),
        ensembleCheckBox=Fake(checked=False), adaptCheckBox=Fake(checked=False),
        sliceProfileComboBox=Fake(currentText="box"), smoothnessSpinBox=Fake(value=0.0),
        consistencyCheckBox=Fake(checked=True),
        backgroundCheckBox=Fake(checked=False), previewHalfWidthSliderWidget=Fake(value=3.0),
        progressBar=Fake(value=0), statusLabel=Fake(), preflightLabel=Fake(),
        applyButton=Fake(), previewButton=Fake(), cancelButton=Fake(), suggestButton=Fake(),
        compareButton=Fake(), consistencyButton=Fake(), saveButton=Fake(),
        overlayComboBox=Fake(currentText=module.OVERLAY_REFERENCE), opacitySliderWidget=Fake(value=0.4),
        lineSelector=FakeSelector(), profileButton=Fake(checked=False),
        lesionListSelector=FakeSelector(), lesionIndexSpinBox=Fake(value=1, maximum=1),
        lesionBoxSliderWidget=Fake(value=3.0), lesionTableView=FakeTableView(),
    )
    widget = module.IsoVoxWidget.__new__(module.IsoVoxWidget)
    module.IsoVoxWidget.__init__(widget)
    widget.ui = ui
    widget.logic = module.IsoVoxLogic()
    yield types.SimpleNamespace(module=module, widget=widget, ui=ui, errors=errors, charts=charts, layout=layout,
                                scene=scene, scans=scan_nodes, reference=hr_node)
    sys.modules.pop("IsoVox", None)


def wait(widget, seconds=120):
    deadline = time.monotonic() + seconds
    while widget.isRunning() and time.monotonic() < deadline:
        widget.onPollRun()
        time.sleep(0.05)


def test_suggest_then_super_resolve_in_process_and_in_background(app):
    w, ui = app.widget, app.ui
    w.onSuggestButton()
    assert ui.inputSelector2.currentNode() is app.scans[1]
    w.onInputsChanged()
    assert ui.preflightLabel.text and not app.errors
    w.onApplyButton()
    direct = ui.outputSelector.currentNode()
    assert direct is not None and direct.GetName() == "T2ax+T2sag isovox-cubeavg", app.errors
    assert ui.statusLabel.text.startswith("Created")

    ui.backgroundCheckBox.checked = True
    ui.outputSelector.setCurrentNode(None)
    w.onApplyButton()
    assert w.isRunning() and ui.cancelButton.enabled and not ui.applyButton.enabled
    wait(w)
    background = ui.outputSelector.currentNode()
    assert background is not None and background is not direct, (app.errors, ui.statusLabel.text)
    np.testing.assert_allclose(volume_from_node(background).data, volume_from_node(direct).data, rtol=1e-5, atol=1e-3)
    assert not ui.progressBar.visible and ui.applyButton.enabled


def test_cancel_and_bad_input_leave_no_node_and_one_message(app):
    w, ui = app.widget, app.ui
    ui.inputSelector2.setCurrentNode(app.scans[1])
    count = app.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    ui.backgroundCheckBox.checked = True
    ui.spacingSliderWidget.value = 1.0
    w.onApplyButton()
    w.onCancelButton()
    assert not w.isRunning() and "Cancelled" in ui.statusLabel.text
    assert app.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == count
    ui.spacingSliderWidget.value = 0.01
    w.onApplyButton()
    assert len(app.errors) == 1 and "finer than" in app.errors[0] and "Traceback" not in app.errors[0]
    assert app.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == count


def test_compare_profile_lesions_and_save(app, tmp_path):
    w, ui = app.widget, app.ui
    ui.inputSelector2.setCurrentNode(app.scans[1])
    w.onApplyButton()
    result = ui.outputSelector.currentNode()

    w.onCompareButton()
    assert not app.errors, app.errors
    assert app.layout.GetViewArrangement() == COMPARE_LAYOUT_ID
    composites = {c.GetLayoutName(): c for c in (app.scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
                                                 for i in range(3))}
    assert composites["Yellow"].GetBackgroundVolumeID() == result.GetID()
    assert composites["Green"].GetBackgroundVolumeID() == app.reference.GetID()
    overlay = app.scene.GetNodeByID(composites["Yellow"].GetForegroundVolumeID())
    assert overlay.GetName() == f"{result.GetName()} - T1ref"
    w.onConsistencyButton()
    assert "consistency" in ui.statusLabel.text.lower() and not app.errors

    centre = volume_from_node(result).index_to_world(np.array(volume_from_node(result).shape) / 2)
    line = app.scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "L")
    line.AddControlPointWorld(list(centre - 6))
    line.AddControlPointWorld(list(centre + 6))
    ui.lineSelector.setCurrentNode(line)
    w.onProfileToggled(True)
    assert app.charts == [w._profileNodes.chart]
    assert w._profileNodes.chart.GetNumberOfPlotSeriesNodes() == len(w.compareVolumes()) == 5  # 2 scans, fused, result, ref
    w.onProfileToggled(False)

    points = w.lesionList()
    points.AddControlPointWorld(list(centre))
    w.onCompareLesionsButton()
    assert ui.lesionTableView.table.GetNumberOfRows() == 1
    w.onJumpButton()
    assert not app.errors, app.errors

    out = w.saveResult(str(tmp_path / "iso.nii.gz"))
    assert out.exists() and (tmp_path / "iso.json").exists()
    assert w.saveResult(str(tmp_path / "iso.png")) is None and "save as" in app.errors[-1]


def test_preview_uses_the_red_views_slice(app):
    w, ui = app.widget, app.ui
    ui.inputSelector2.setCurrentNode(app.scans[1])
    red = app.scene.GetNthNodeByClass(0, "vtkMRMLSliceNode")
    centre = volume_from_node(app.scans[0]).index_to_world(np.array(volume_from_node(app.scans[0]).shape) / 2)
    red.JumpSliceByCentering(*centre)
    w.onPreviewButton()
    assert not app.errors, app.errors
    preview = w._made["preview"]
    assert preview.GetName().endswith("preview")
    assert min(preview.GetImageData().GetDimensions()) <= 5
