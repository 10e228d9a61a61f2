"""IsoVox: the "Super-resolve" module of 3D Slicer (module, widget, logic adapter, self-test).

All processing lives in ``IsoVoxLib`` (plain Python, tested on real MRML nodes with
PyPI's slicer-core) and in the isovox engine; this file only wires Slicer's GUI to
them. The engine is imported lazily, after the first-use installation, so the module
loads even before its dependencies are there.
"""

import logging
import os
import shutil
import sys
import tempfile
import time
import unittest

import qt
import vtk

import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from IsoVoxLib import dependencies

ENGINE_SOURCE_SETTING = "IsoVox/EngineSource"  # PyPI name, wheel or source folder of the engine
SAVE_FORMATS = (("NRRD (.nrrd)", ".nrrd"), ("NIfTI (.nii.gz)", ".nii.gz"), ("DICOM series (new folder)", ""))
AUTO_METHOD = "auto (best available)"
SLICE_PROFILES = ("box", "gaussian")  # the forward model's slice profiles offered in the panel
OVERLAY_NONE = "None"
OVERLAY_REFERENCE = "Result - reference"
OVERLAY_FUSED = "Result - fused input"


#
# IsoVox
#


class IsoVox(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Super-resolve (IsoVox)"
        self.parent.categories = ["Filtering"]
        self.parent.dependencies = []
        self.parent.contributors = ["isovox developers"]
        self.parent.helpText = (
            "Fuse one to three thick-slice MRI scans of any orientation into one isotropic high-resolution "
            "volume with the isovox engine, then compare it with the fused input and a reference in linked "
            "views, with residual overlays, line profiles and a lesion table. "
            "See <a href='https://github.com/isovox/isovox#3d-slicer-extension'>the documentation</a>."
        )
        self.parent.acknowledgementText = "The isovox project. Built on 3D Slicer, SimpleITK and PyTorch."


#
# IsoVoxLogic (the Slicer-side adapter over IsoVoxLib.logic.IsoVoxLogic)
#


class IsoVoxLogic(ScriptedLoadableModuleLogic):
    """Parameter defaults, first-use installation, and the plain-Python IsoVoxLib logic."""

    DEFAULTS = {
        "method": "", "spacing": "0.0", "scale": "0.0", "device": "auto", "register": "false",
        "matchIntensity": "false", "ensemble": "false", "adapt": "false", "background": "true", "previewHalfWidth": "5.0",
        "sliceProfile": "box", "smoothness": "0.0", "consistency": "true",
        "overlay": OVERLAY_REFERENCE, "opacity": "0.5", "lesionBox": "3.0",
    }

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self._engine = None

    def setDefaultParameters(self, parameterNode):
        for name, value in self.DEFAULTS.items():
            if not parameterNode.GetParameter(name):
                parameterNode.SetParameter(name, value)

    @staticmethod
    def engineInstalled():
        return not dependencies.install_plan().needed

    def setupPythonRequirements(self, askConfirmation=True):
        """Install PyTorch (via PyTorchUtils when present) and the engine; False if the user declines."""
        plan = dependencies.install_plan()
        if not plan.needed:
            return True
        try:
            import PyTorchUtils  # the SlicerPyTorch extension picks the right CUDA/CPU build
        except ModuleNotFoundError:
            PyTorchUtils = None
        source = qt.QSettings().value(ENGINE_SOURCE_SETTING) or os.environ.get("ISOVOX_ENGINE_SOURCE") \
            or dependencies.default_engine_source()
        confirm = slicer.util.confirmOkCancelDisplay if askConfirmation else (lambda text: True)
        return dependencies.install(plan, slicer.util.pip_install, confirm, PyTorchUtils, source)

    @property
    def engine(self):
        """The IsoVoxLib logic (imports the engine, so only after setupPythonRequirements)."""
        if self._engine is None:
            from IsoVoxLib.logic import IsoVoxLogic as LibraryLogic

            self._engine = LibraryLogic()
        return self._engine

    def clearCache(self):
        if self._engine is not None:
            self._engine.clear_cache()

    def process(self, inputVolumes, method="cubeavg", spacing=None, reference=None, outputVolume=None, **options):
        """Super-resolve synchronously; returns the output vtkMRMLScalarVolumeNode."""
        return self.engine.process(inputVolumes, method, spacing, reference, outputVolume, **options)


#
# IsoVoxWidget
#


class IsoVoxWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._updatingGUI = False
        self._run = None
        self._timer = None
        self._profile = None
        self._profileNodes = None
        self._made = {}  # nodes this widget made and reuses: fused, overlay, preview, lesionTable

    # ------------------------------------------------------------------ setup
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/IsoVox.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = IsoVoxLogic()

        self.ui.saveFormatComboBox.addItems([label for label, _ in SAVE_FORMATS])
        self.ui.sliceProfileComboBox.addItems(list(SLICE_PROFILES))
        self.ui.overlayComboBox.addItems([OVERLAY_NONE, OVERLAY_REFERENCE, OVERLAY_FUSED])
        self.ui.progressBar.hide()
        self.populateMethods()

        self.parameterEditWidgets = [
            (self.ui.inputSelector1, "input1"), (self.ui.inputSelector2, "input2"),
            (self.ui.inputSelector3, "input3"), (self.ui.referenceSelector, "reference"),
            (self.ui.outputSelector, "output"), (self.ui.methodComboBox, "method"),
            (self.ui.spacingSliderWidget, "spacing"), (self.ui.scaleSliderWidget, "scale"),
            (self.ui.deviceComboBox, "device"), (self.ui.registerCheckBox, "register"),
            (self.ui.matchIntensityCheckBox, "matchIntensity"), (self.ui.ensembleCheckBox, "ensemble"),
            (self.ui.adaptCheckBox, "adapt"), (self.ui.backgroundCheckBox, "background"),
            (self.ui.sliceProfileComboBox, "sliceProfile"), (self.ui.smoothnessSpinBox, "smoothness"),
            (self.ui.consistencyCheckBox, "consistency"),
            (self.ui.previewHalfWidthSliderWidget, "previewHalfWidth"), (self.ui.overlayComboBox, "overlay"),
            (self.ui.opacitySliderWidget, "opacity"), (self.ui.lineSelector, "line"),
            (self.ui.lesionListSelector, "lesions"), (self.ui.lesionBoxSliderWidget, "lesionBox"),
        ]
        slicer.util.addParameterEditWidgetConnections(self.parameterEditWidgets, self.updateParameterNodeFromGUI)

        for selector in (self.ui.inputSelector1, self.ui.inputSelector2, self.ui.inputSelector3,
                         self.ui.referenceSelector):
            selector.connect("currentNodeChanged(vtkMRMLNode*)", self.onInputsChanged)
        self.ui.methodComboBox.connect("currentIndexChanged(int)", self.onMethodChanged)
        self.ui.suggestButton.connect("clicked(bool)", self.onSuggestButton)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.previewButton.connect("clicked(bool)", self.onPreviewButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.compareButton.connect("clicked(bool)", self.onCompareButton)
        self.ui.consistencyButton.connect("clicked(bool)", self.onConsistencyButton)
        self.ui.profileButton.connect("toggled(bool)", self.onProfileToggled)
        self.ui.placeLesionButton.connect("clicked(bool)", self.onPlaceLesionButton)
        self.ui.jumpButton.connect("clicked(bool)", self.onJumpButton)
        self.ui.compareLesionsButton.connect("clicked(bool)", self.onCompareLesionsButton)
        self.ui.saveButton.connect("clicked(bool)", self.onSaveButton)
        self.ui.loadDicomButton.connect("clicked(bool)", self.onLoadDicomButton)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self):
        self.stopProfile()
        if self._run is not None:
            self._run.cancel()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event):
        self.stopProfile()
        if self._run is not None:
            self._run.cancel()
        self.setParameterNode(None)
        self.logic.clearCache()
        self._made = {}
        self._profileNodes = None

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    # ------------------------------------------------------------------ parameter node
    def initializeParameterNode(self):
        node = self.logic.getParameterNode()
        self.logic.setDefaultParameters(node)
        if not node.GetNodeReference("input1"):
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first is not None:
                node.SetNodeReferenceID("input1", first.GetID())
        self.setParameterNode(node)

    def setParameterNode(self, node):
        if self._parameterNode is not None:
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameterNode = node
        if node is not None:
            self.addObserver(node, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self.updateGUIFromParameterNode()

    def updateGUIFromParameterNode(self, caller=None, event=None):
        if self._parameterNode is None or self._updatingGUI:
            return
        self._updatingGUI = True
        try:
            slicer.util.updateParameterEditWidgetsFromNode(self.parameterEditWidgets, self._parameterNode)
        finally:
            self._updatingGUI = False
        self.updateButtons()

    def updateParameterNodeFromGUI(self, caller=None, event=None):
        if self._parameterNode is None or self._updatingGUI:
            return
        wasModified = self._parameterNode.StartModify()
        slicer.util.updateNodeFromParameterEditWidgets(self.parameterEditWidgets, self._parameterNode)
        self._parameterNode.EndModify(wasModified)

    # ------------------------------------------------------------------ state
    def inputNodes(self):
        nodes = [s.currentNode() for s in (self.ui.inputSelector1, self.ui.inputSelector2, self.ui.inputSelector3)]
        return [n for n in nodes if n is not None]

    def resultNode(self):
        return self.ui.outputSelector.currentNode()

    def updateButtons(self):
        busy = self._run is not None
        ready = bool(self.inputNodes()) and not busy
        self.ui.applyButton.enabled = ready
        self.ui.previewButton.enabled = ready and self.logic.engineInstalled()
        self.ui.cancelButton.enabled = busy
        hasResult = self.resultNode() is not None and not busy
        for button in (self.ui.compareButton, self.ui.consistencyButton, self.ui.saveButton):
            button.enabled = hasResult

    def populateMethods(self):
        """Fill the method list from the engine's registry (empty until the engine is installed)."""
        self.ui.methodComboBox.clear()
        self.ui.deviceComboBox.clear()
        if not self.logic.engineInstalled():
            self.ui.deviceComboBox.addItem("auto")
            self.ui.methodDescriptionLabel.text = (
                "The isovox engine and PyTorch are installed (after you agree) when you first press Super-resolve.")
            return
        from isovox import frontend

        self.ui.deviceComboBox.addItems(list(frontend.DEVICES))
        self.ui.methodComboBox.addItem(AUTO_METHOD)  # the engine's default for the number of scans and device
        for spec in frontend.all_methods():
            self.ui.methodComboBox.addItem(spec.name)
            self.ui.methodComboBox.setItemData(self.ui.methodComboBox.count - 1, frontend.method_help(spec),
                                               qt.Qt.ToolTipRole)
        self.onMethodChanged()

    def onMethodChanged(self, index=None):
        if not self.logic.engineInstalled() or not self.ui.methodComboBox.currentText:
            return
        from isovox import frontend

        if self.ui.methodComboBox.currentText == AUTO_METHOD:
            self.ui.methodDescriptionLabel.text = "The engine picks the best available method for these scans."
            self.onInputsChanged()
            return
        self.ui.methodDescriptionLabel.text = frontend.method_help(frontend.get_method(self.ui.methodComboBox.currentText))
        self.onInputsChanged()

    def onInputsChanged(self, node=None):
        self.updateButtons()
        if not self.inputNodes() or not self.logic.engineInstalled():
            self.ui.preflightLabel.text = "Select a scan." if not self.inputNodes() else ""
            return
        try:
            settings = self.runSettings()
            warnings = self.logic.engine.warnings(self.inputNodes(), settings["method"], settings["spacing"],
                                                  settings["reference"], settings["device"])
        except Exception as error:  # pre-flight is advice: show the reason, never a traceback
            warnings = [str(error)]
        self.ui.preflightLabel.text = "\n".join(f"\u26a0 {w}" for w in warnings) or "No warnings."

    def runSettings(self):
        """The settings of the panel as keyword arguments for the logic."""
        spacing = self.ui.spacingSliderWidget.value or None
        if self.ui.scaleSliderWidget.value > 0:
            spacing = self.logic.engine.spacing_for_scale(self.inputNodes(), self.ui.scaleSliderWidget.value)
        from isovox.frontend import reference_for_method
        from isovox.options import RunOptions

        method = None if self.ui.methodComboBox.currentText in ("", AUTO_METHOD) else self.ui.methodComboBox.currentText
        return {
            "method": method,
            "spacing": spacing,
            "reference": reference_for_method(method, self.ui.referenceSelector.currentNode()),
            "device": self.ui.deviceComboBox.currentText or "auto",
            "options": RunOptions(
                register=self.ui.registerCheckBox.checked, match_intensity=self.ui.matchIntensityCheckBox.checked,
                ensemble=self.ui.ensembleCheckBox.checked, adapt=self.ui.adaptCheckBox.checked,
                slice_profile=self.ui.sliceProfileComboBox.currentText or None,
                smoothness=self.ui.smoothnessSpinBox.value or None, consistency=self.ui.consistencyCheckBox.checked),
        }

    def showError(self, error):
        """One clear sentence for the user; the trace goes to the log only."""
        from isovox.errors import IsovoxError

        if isinstance(error, IsovoxError):
            message = str(error)
        else:
            logging.exception("IsoVox failed")
            message = f"IsoVox failed: {type(error).__name__}: {error}"
        self.ui.statusLabel.text = message
        slicer.util.errorDisplay(message, windowTitle="IsoVox")

    def ensureEngine(self):
        if self.logic.engineInstalled():
            return True
        try:
            with slicer.util.WaitCursor():
                installed = self.logic.setupPythonRequirements(askConfirmation=True)
        except Exception as error:
            logging.exception("IsoVox installation failed")
            slicer.util.errorDisplay(f"Installing the isovox engine failed: {error}", windowTitle="IsoVox")
            return False
        if installed:
            self.populateMethods()
        return installed and self.logic.engineInstalled()

    # ------------------------------------------------------------------ super-resolve
    def onSuggestButton(self):
        if not self.inputNodes():
            return
        from IsoVoxLib.geometry import suggest_partners, suggest_references

        first = self.ui.inputSelector1.currentNode()
        partners = suggest_partners(slicer.mrmlScene, first)
        self.ui.inputSelector2.setCurrentNode(partners[0] if partners else None)
        self.ui.inputSelector3.setCurrentNode(partners[1] if len(partners) > 1 else None)
        references = suggest_references(slicer.mrmlScene, first)
        if references and self.ui.referenceSelector.currentNode() is None:
            self.ui.referenceSelector.setCurrentNode(references[0])
        self.ui.statusLabel.text = f"Suggested {len(partners)} crossing scan(s) and {len(references)} reference(s)."

    def onApplyButton(self):
        if not self.ensureEngine():
            return
        try:
            settings = self.runSettings()
            if self.ui.backgroundCheckBox.checked:
                self.startBackgroundRun(settings)
                return
            with slicer.util.WaitCursor():
                start = time.perf_counter()
                node = self.logic.process(self.inputNodes(), outputVolume=self.resultNode(), **settings)
            self.showResult(node, time.perf_counter() - start)
        except Exception as error:
            self.showError(error)

    def startBackgroundRun(self, settings):
        from IsoVoxLib.process import BackgroundRun

        python = shutil.which("PythonSlicer") or sys.executable
        self._run = BackgroundRun(self.logic.engine, self.inputNodes(), settings["method"], settings["spacing"],
                                  settings["reference"], settings["device"], self.resultNode(), python,
                                  settings["options"])
        self._runStart = time.perf_counter()
        self._run.start()
        self.ui.progressBar.value = 0
        self.ui.progressBar.show()
        self.ui.statusLabel.text = "Super-resolving in a background process..."
        self.updateButtons()
        self._timer = qt.QTimer()
        self._timer.setInterval(250)
        self._timer.connect("timeout()", self.onPollRun)
        self._timer.start()

    def onPollRun(self):
        if self._run is None:
            return
        fraction, message = self._run.poll()
        self.ui.progressBar.value = int(round(100 * fraction))
        if message:
            self.ui.statusLabel.text = message
        if self._run.running:
            return
        self._timer.stop()
        run, self._run = self._run, None
        from isovox.errors import CancelledError

        try:
            self.showResult(run.finish(), time.perf_counter() - self._runStart)
        except CancelledError:
            self.ui.statusLabel.text = "Cancelled: no result was created."
        except Exception as error:
            self.showError(error)
        finally:
            self.ui.progressBar.hide()
            self.updateButtons()

    def isRunning(self):
        return self._run is not None

    def onCancelButton(self):
        if self._run is not None:
            self._run.cancel()
            self.onPollRun()

    def onPreviewButton(self):
        try:
            sliceNode = slicer.app.layoutManager().sliceWidget("Red").mrmlSliceNode()
            sliceToRAS = sliceNode.GetSliceToRAS()
            centre = [sliceToRAS.GetElement(i, 3) for i in range(3)]
            normal = [sliceToRAS.GetElement(i, 2) for i in range(3)]
            settings = self.runSettings()
            preview = self._made.get("preview")
            if preview is not None and preview.GetScene() is None:
                preview = None
            with slicer.util.WaitCursor():
                node = self.logic.engine.preview(self.inputNodes(), centre, self.ui.previewHalfWidthSliderWidget.value,
                                                 normal, outputVolume=preview, **settings)
            self._made["preview"] = node
            slicer.util.setSliceViewerLayers(background=node)
            self.ui.statusLabel.text = f"Preview: {node.GetName()} (a slab around the red view's slice)."
        except Exception as error:
            self.showError(error)

    def showResult(self, node, seconds):
        self.ui.outputSelector.setCurrentNode(node)
        slicer.util.setSliceViewerLayers(background=node, fit=True)
        dims = "x".join(str(d) for d in node.GetImageData().GetDimensions())
        spacing = min(node.GetSpacing())
        from isovox.frontend import reconstruction_summary
        from IsoVoxLib.logic import get_provenance

        physics = reconstruction_summary(get_provenance(node) or {})
        self.ui.statusLabel.text = (f"Created {node.GetName()} ({dims} voxels, {spacing:g} mm) in {seconds:.1f} s."
                                    + (f"\n{physics}." if physics else ""))
        self.updateButtons()

    # ------------------------------------------------------------------ compare
    def reuse(self, key):
        node = self._made.get(key)
        return node if node is not None and node.GetScene() is not None else None

    def compareVolumes(self):
        """Volumes shown in profiles and the lesion table: scans, fused input, result, reference."""
        nodes = self.inputNodes() + [self.reuse("fused"), self.resultNode(), self.ui.referenceSelector.currentNode()]
        unique = []
        for node in nodes:
            if node is not None and node not in unique:
                unique.append(node)
        return unique

    def onCompareButton(self):
        from IsoVoxLib import compare

        result = self.resultNode()
        try:
            with slicer.util.WaitCursor():
                fused = compare.fused_input_node(self.logic.engine, self.inputNodes(), result, self.reuse("fused"))
                self._made["fused"] = fused
                reference = self.ui.referenceSelector.currentNode()
                choice = self.ui.overlayComboBox.currentText
                other = reference if choice == OVERLAY_REFERENCE else fused if choice == OVERLAY_FUSED else None
                overlay = None
                if other is not None:
                    overlay = compare.difference_node(result, other, self.reuse("overlay"))
                    self._made["overlay"] = overlay
                self.showCompare(fused, result, reference, overlay)
            self.ui.statusLabel.text = ("Compare: fused input | result | " + ("reference" if reference else "result")
                                        + (f", overlay {overlay.GetName()}" if overlay else ""))
        except Exception as error:
            self.showError(error)

    def showCompare(self, fused, result, reference, overlay):
        from IsoVoxLib import compare

        layoutManager = slicer.app.layoutManager()
        orientation = layoutManager.sliceWidget("Red").mrmlSliceNode().GetOrientation()
        compare.install_compare_layout(layoutManager.layoutLogic().GetLayoutNode())
        slicer.app.processEvents()  # let the layout manager create the views
        for name in compare.COMPARE_VIEWS:
            layoutManager.sliceWidget(name).mrmlSliceNode().SetOrientation(orientation)
        compare.assign_compare_views(slicer.mrmlScene, fused, result, reference, overlay,
                                     self.ui.opacitySliderWidget.value)
        slicer.util.resetSliceViews()

    def onConsistencyButton(self):
        from IsoVoxLib import compare

        result = self.resultNode()
        try:
            with slicer.util.WaitCursor():
                maps = compare.consistency_nodes(self.logic.engine, result, self.inputNodes())
            fused = self.reuse("fused") or result
            self.showCompare(fused, result, self.ui.referenceSelector.currentNode(), maps[0])
            self.ui.statusLabel.text = "Consistency maps: " + ", ".join(m.GetName() for m in maps)
        except Exception as error:
            self.showError(error)

    # ------------------------------------------------------------------ line profile
    def onProfileToggled(self, checked):
        if not checked:
            self.stopProfile()
            return
        from IsoVoxLib.profile import ProfileObserver

        line = self.ui.lineSelector.currentNode()
        if line is None or line.GetNumberOfControlPoints() < 2:
            if line is None:
                line = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "IsoVox profile line")
                self.ui.lineSelector.setCurrentNode(line)
            self.startPlacing(line, "vtkMRMLMarkupsLineNode")
            self.ui.statusLabel.text = "Place the line's two points, then press Show live profile again."
            self.ui.profileButton.checked = False
            return
        try:
            self.stopProfile()
            self._profile = ProfileObserver(line, self.compareVolumes(), self.logic.engine.volume,
                                            self._profileNodes, on_error=self.setStatus)
            self._profileNodes = self._profile.nodes
            slicer.modules.plots.logic().ShowChartInLayout(self._profileNodes.chart)
        except Exception as error:
            self.ui.profileButton.checked = False
            self.showError(error)

    def setStatus(self, text):
        self.ui.statusLabel.text = text

    def stopProfile(self):
        if self._profile is not None:
            self._profile.stop()
            self._profile = None

    def startPlacing(self, markupsNode, className):
        selectionNode = slicer.app.applicationLogic().GetSelectionNode()
        selectionNode.SetReferenceActivePlaceNodeClassName(className)
        selectionNode.SetActivePlaceNodeID(markupsNode.GetID())
        interactionNode = slicer.app.applicationLogic().GetInteractionNode()
        interactionNode.SetCurrentInteractionMode(interactionNode.Place)

    # ------------------------------------------------------------------ lesion QA
    def lesionList(self):
        from IsoVoxLib.lesions import lesion_list

        points = self.ui.lesionListSelector.currentNode()
        if points is None:
            points = lesion_list(slicer.mrmlScene)
            self.ui.lesionListSelector.setCurrentNode(points)
        self.ui.lesionIndexSpinBox.maximum = max(1, points.GetNumberOfControlPoints())
        return points

    def onPlaceLesionButton(self):
        points = self.lesionList()
        self.startPlacing(points, "vtkMRMLMarkupsFiducialNode")
        self.ui.statusLabel.text = "Click on a lesion in a view to add it to the list."

    def onJumpButton(self):
        from IsoVoxLib.lesions import jump_to_lesion

        try:
            jump_to_lesion(slicer.mrmlScene, self.lesionList(), self.ui.lesionIndexSpinBox.value - 1)
        except Exception as error:
            self.showError(error)

    def onCompareLesionsButton(self):
        from IsoVoxLib.lesions import compare_lesions

        try:
            table = compare_lesions(self.lesionList(), self.compareVolumes(), self.logic.engine.volume,
                                    self.ui.lesionBoxSliderWidget.value, self.reuse("lesionTable"))
            self._made["lesionTable"] = table
            self.ui.lesionTableView.setMRMLTableNode(table)
        except Exception as error:
            self.showError(error)

    # ------------------------------------------------------------------ save
    def onSaveButton(self):
        node = self.resultNode()
        suffix = SAVE_FORMATS[max(0, self.ui.saveFormatComboBox.currentIndex)][1]
        start = os.path.join(qt.QDir.homePath(), node.GetName().replace(" ", "_").replace("+", "_") + suffix)
        if not suffix:  # DICOM: a new folder
            path = qt.QFileDialog.getSaveFileName(None, "Save as a derived DICOM series (new folder)", start, "")
        else:
            path = qt.QFileDialog.getSaveFileName(None, "Save super-resolved volume", start,
                                                  "Volumes (*.nrrd *.nii *.nii.gz)")
        if path:
            self.saveResult(path, dicom=not suffix)

    def saveResult(self, path, dicom=False):
        """Write the result (a volume file, or a derived DICOM series in the new folder ``path``) and the
        provenance sidecar; returns the path."""
        from IsoVoxLib.save import input_files, save_volume
        from IsoVoxLib.series import save_dicom

        try:
            protect = input_files(self.inputNodes())
            if dicom:
                out = save_dicom(self.resultNode(), path, protect=protect)
            else:
                out = save_volume(self.resultNode(), path, protect=protect)
        except Exception as error:
            self.showError(error)
            return None
        kind = "a derived DICOM series in " if dicom else ""
        self.ui.statusLabel.text = f"Saved {kind}{out} and its provenance sidecar."
        return out

    # ------------------------------------------------------------------ DICOM in
    def onLoadDicomButton(self):
        folder = qt.QFileDialog.getExistingDirectory(None, "Folder with DICOM series", qt.QDir.homePath())
        if not folder:
            return
        from IsoVoxLib.series import list_series, series_label

        try:
            found = list_series(folder)
        except Exception as error:
            self.showError(error)
            return
        keys = self.chooseSeries(found, series_label) if len(found) > 1 else [found[0]["uid"]]
        if keys:
            self.loadDicomSeries(folder, keys)

    def chooseSeries(self, found, label):
        """A dialog listing the folder's series; the UIDs of the 1-3 the user ticks."""
        dialog = qt.QDialog(slicer.util.mainWindow())
        dialog.setWindowTitle("Choose 1-3 series")
        layout = qt.QVBoxLayout(dialog)
        listWidget = qt.QListWidget()
        listWidget.setSelectionMode(qt.QAbstractItemView.MultiSelection)
        for summary in found:
            listWidget.addItem(label(summary))
        layout.addWidget(listWidget)
        buttons = qt.QDialogButtonBox(qt.QDialogButtonBox.Ok | qt.QDialogButtonBox.Cancel)
        buttons.connect("accepted()", dialog.accept)
        buttons.connect("rejected()", dialog.reject)
        layout.addWidget(buttons)
        if not dialog.exec_():
            return []
        rows = sorted(listWidget.row(item) for item in listWidget.selectedItems())
        return [found[row]["uid"] for row in rows]

    def loadDicomSeries(self, folder, keys):
        """Load the chosen series as nodes and put them in the input selectors; returns the nodes."""
        from IsoVoxLib.series import load_series

        try:
            nodes = load_series(slicer.mrmlScene, folder, keys[:3])
        except Exception as error:
            self.showError(error)
            return []
        for selector, node in zip((self.ui.inputSelector1, self.ui.inputSelector2, self.ui.inputSelector3), nodes):
            selector.setCurrentNode(node)
        if len(keys) > 3:
            self.ui.statusLabel.text = "isovox fuses at most 3 scans: the first 3 chosen series were loaded."
        return nodes


#
# IsoVoxTest
#


class IsoVoxTest(ScriptedLoadableModuleTest):
    """Self-test: the logic and the widget on oblique thick-slice scans loaded from files."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_logic_geometry_on_oblique_scans()
        self.setUp()
        self.test_widget_super_resolve_compare_profile_lesions_save()

    def loadScans(self):
        """Two 3x thick-slice scans of an oblique phantom, written by the engine, loaded by Slicer."""
        if not IsoVoxLogic.engineInstalled():
            raise unittest.SkipTest("the isovox engine is not installed; open the module and press Super-resolve")
        import numpy as np

        from isovox.io import write_volume
        from isovox.simulate import Acquisition, simulate_scan
        from isovox.volume import Volume

        angles = np.radians([17.0, -23.0, 31.0])
        cx, cy, cz = np.cos(angles)
        sx, sy, sz = np.sin(angles)
        rotation = (np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
                    @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]))
        affine = np.eye(4)
        affine[:3, :3] = rotation * [1.0, 1.1, 0.9]
        affine[:3, 3] = [-20.0, 35.0, 12.0]
        grid = np.indices((24, 28, 20), dtype=float)
        centre = np.array([11.5, 13.5, 9.5])[:, None, None, None]
        data = 400.0 * np.exp(-(((grid - centre) / 6.0) ** 2).sum(0)) + 50.0
        hr = Volume(data, affine)
        folder = tempfile.mkdtemp(prefix="IsoVoxTest-")
        nodes = []
        for axis, name in ((2, "T2ax"), (0, "T2sag")):
            path = os.path.join(folder, f"{name}.nrrd")
            write_volume(simulate_scan(hr, Acquisition(axis=axis, scale=3)), path)
            nodes.append(slicer.util.loadVolume(path, {"name": name}))
        return nodes

    def test_logic_geometry_on_oblique_scans(self):
        self.delayDisplay("Logic on oblique scans")
        import numpy as np

        from isovox import api
        from IsoVoxLib.convert import volume_from_node

        scans = self.loadScans()
        node = IsoVoxLogic().process(scans, method="cubeavg", spacing=1.5)
        expected = api.plan([volume_from_node(n) for n in scans], "cubeavg", spacing=1.5).grid
        matrix = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(matrix)
        got = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
        self.assertTrue(np.allclose(got, expected.affine, atol=1e-6))
        self.assertEqual(node.GetImageData().GetDimensions(), tuple(expected.shape))
        self.assertEqual(node.GetName(), "T2ax+T2sag isovox-cubeavg")
        self.delayDisplay("Logic test passed")

    def test_widget_super_resolve_compare_profile_lesions_save(self):
        self.delayDisplay("Widget: super-resolve, compare, profile, lesions, save")
        import numpy as np

        scans = self.loadScans()
        widget = slicer.modules.isovox.widgetRepresentation().self()
        ui = widget.ui
        ui.inputSelector1.setCurrentNode(scans[0])
        ui.inputSelector2.setCurrentNode(None)
        widget.onSuggestButton()  # geometry picks the crossing scan
        self.assertEqual(ui.inputSelector2.currentNode(), scans[1])
        ui.methodComboBox.setCurrentText("cubeavg")
        ui.spacingSliderWidget.value = 1.5
        ui.scaleSliderWidget.value = 0
        ui.outputSelector.setCurrentNode(None)

        ui.backgroundCheckBox.checked = False  # in-process run
        ui.applyButton.click()
        direct = ui.outputSelector.currentNode()
        self.assertIsNotNone(direct)

        ui.backgroundCheckBox.checked = True  # background process, polled by the widget's timer
        ui.outputSelector.setCurrentNode(None)
        ui.applyButton.click()
        deadline = time.time() + 300
        while widget.isRunning() and time.time() < deadline:
            slicer.app.processEvents()
            time.sleep(0.05)
        result = ui.outputSelector.currentNode()
        self.assertIsNotNone(result)
        self.assertNotEqual(result.GetID(), direct.GetID())
        a, b = slicer.util.arrayFromVolume(direct), slicer.util.arrayFromVolume(result)
        self.assertTrue(np.allclose(a, b, rtol=1e-4, atol=1e-2))

        ui.overlayComboBox.setCurrentText(OVERLAY_FUSED)
        ui.compareButton.click()
        layoutNode = slicer.app.layoutManager().layoutLogic().GetLayoutNode()
        from IsoVoxLib.compare import COMPARE_LAYOUT_ID

        self.assertEqual(layoutNode.GetViewArrangement(), COMPARE_LAYOUT_ID)
        yellow = slicer.app.layoutManager().sliceWidget("Yellow").mrmlSliceCompositeNode()
        self.assertEqual(yellow.GetBackgroundVolumeID(), result.GetID())
        self.assertIsNotNone(yellow.GetForegroundVolumeID())

        line = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", "profile")
        centre = np.array(slicer.util.arrayFromVolume(result).shape[::-1]) / 2.0
        matrix = vtk.vtkMatrix4x4()
        result.GetIJKToRASMatrix(matrix)
        ras = matrix.MultiplyPoint(list(centre) + [1.0])[:3]
        line.AddControlPointWorld([ras[0] - 8, ras[1], ras[2]])
        line.AddControlPointWorld([ras[0] + 8, ras[1], ras[2]])
        ui.lineSelector.setCurrentNode(line)
        ui.profileButton.checked = True
        table = widget._profileNodes.table
        self.assertGreater(table.GetNumberOfRows(), 10)
        self.assertEqual(widget._profileNodes.chart.GetNumberOfPlotSeriesNodes(), len(widget.compareVolumes()))
        line.SetNthControlPointPositionWorld(1, ras[0] + 12, ras[1], ras[2])
        distances = slicer.util.arrayFromTableColumn(table, "Distance (mm)")
        self.assertAlmostEqual(float(distances[-1]), 20.0, places=4)
        ui.profileButton.checked = False

        points = widget.lesionList()
        points.AddControlPointWorld(list(ras))
        ui.compareLesionsButton.click()
        lesionTable = widget._made["lesionTable"]
        self.assertEqual(lesionTable.GetNumberOfRows(), 1)
        ui.lesionIndexSpinBox.value = 1
        ui.jumpButton.click()

        out = widget.saveResult(os.path.join(tempfile.mkdtemp(prefix="IsoVoxTest-"), "iso.nrrd"))
        self.assertTrue(out is not None and os.path.exists(out))
        self.assertTrue(os.path.exists(os.path.splitext(str(out))[0] + ".json"))
        reloaded = slicer.util.loadVolume(str(out))
        self.assertTrue(np.allclose(slicer.util.arrayFromVolume(reloaded), slicer.util.arrayFromVolume(result)))
        self.delayDisplay("Widget test passed")
