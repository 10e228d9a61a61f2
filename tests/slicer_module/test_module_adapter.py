"""IsoVox.py's Logic adapter, imported with stand-ins for the parts only the Slicer app has."""

from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import pytest

import vtk
from IsoVoxLib.convert import matrix_to_array, volume_from_node
from isovox import api


@pytest.fixture
def module(monkeypatch):
    """Import IsoVox.py with minimal qt and ScriptedLoadableModule stand-ins (no Slicer app here)."""
    qt = types.ModuleType("qt")
    qt.QSettings = type("QSettings", (), {"value": lambda self, key: None})
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleTest"):
        setattr(scripted, name, type(name, (), {"__init__": lambda self, *args: None}))
    scripted.ScriptedLoadableModuleLogic = type("ScriptedLoadableModuleLogic", (), {"__init__": lambda self: None})
    monkeypatch.setitem(sys.modules, "qt", qt)
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", scripted)
    monkeypatch.delitem(sys.modules, "IsoVox", raising=False)
    yield importlib.import_module("IsoVox")
    sys.modules.pop("IsoVox", None)


def test_logic_adapter_processes_with_the_contract_signature(module, scan_nodes):
    logic = module.IsoVoxLogic()
    assert logic.engineInstalled()
    assert logic.setupPythonRequirements(askConfirmation=False)  # nothing to install here
    node = logic.process(scan_nodes, method="cubeavg", spacing=2.0, register=False)
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    expected = api.plan([volume_from_node(n) for n in scan_nodes], "cubeavg", spacing=2.0).grid
    np.testing.assert_allclose(matrix_to_array(matrix), expected.affine, atol=1e-9)


def test_parameter_defaults_fill_only_missing_values(module, scene):
    parameters = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    parameters.SetParameter("device", "cuda")
    module.IsoVoxLogic().setDefaultParameters(parameters)
    assert parameters.GetParameter("device") == "cuda"
    assert parameters.GetParameter("background") == "true"
    assert parameters.GetParameter("overlay") == module.OVERLAY_REFERENCE
