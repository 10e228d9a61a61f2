"""First-use installation: skip list, consent, PyTorchUtils when present, pip otherwise."""

from __future__ import annotations

import tomllib
from pathlib import Path

from IsoVoxLib.dependencies import (ENGINE_REQUIREMENTS, InstallPlan, default_engine_source, install, install_plan,
                                    to_install)

ROOT = Path(__file__).resolve().parents[2]


def test_engine_requirements_match_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert sorted(ENGINE_REQUIREMENTS) == sorted(project["dependencies"])


def test_slicer_shipped_packages_and_torch_are_never_in_the_pip_list():
    missing = to_install(installed=lambda name: False)
    names = " ".join(missing)
    assert "numpy" not in names and "SimpleITK" not in names and "torch" not in names
    assert "scipy>=1.10" in missing and "nibabel>=5.0" in missing


def test_nothing_to_do_when_everything_is_there():
    plan = install_plan(installed=lambda name: True)
    assert not plan.needed
    assert install(plan, pip_install=lambda r: 1 / 0, confirm=lambda t: 1 / 0)


def test_declining_installs_nothing():
    calls = []
    assert not install(InstallPlan(True, True, ["scipy"]), calls.append, confirm=lambda text: False)
    assert calls == []


def test_torch_through_pytorchutils_when_present_then_the_engine_without_deps():
    calls, torch_calls = [], []

    class FakeTorchLogic:
        def installTorch(self, askConfirmation):
            torch_calls.append(askConfirmation)
            return object()

    class FakePyTorchUtils:
        PyTorchUtilsLogic = FakeTorchLogic

    asked = []
    plan = InstallPlan(torch=True, engine=True, packages=["scipy>=1.10"])
    assert install(plan, calls.append, confirm=lambda text: asked.append(text) or True, torch_utils=FakePyTorchUtils)
    assert torch_calls == [False] and "PyTorch" in asked[0]
    assert calls == ["scipy>=1.10", "--no-deps isovox"]


def test_torch_with_pip_without_the_extension():
    calls = []
    install(InstallPlan(torch=True, engine=False, packages=[]), calls.append, confirm=lambda text: True)
    assert calls == ["torch"]


def test_engine_installs_from_the_checkout_when_the_module_runs_from_one(tmp_path):
    assert default_engine_source() == str(ROOT)
    assert default_engine_source(tmp_path / "a" / "b") == "isovox"
