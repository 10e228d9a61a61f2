"""Background runs of the engine's CLI: same result as in-process, progress, Cancel, errors."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from IsoVoxLib.convert import volume_from_node
from IsoVoxLib.logic import IsoVoxLogic, get_provenance
from IsoVoxLib.process import BackgroundRun, EngineProcess, engine_command
from isovox.frontend import parse_progress
from isovox.options import RunOptions
from isovox.errors import CancelledError, InputError


def volume_count(scene) -> int:
    return scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")


def test_background_run_gives_the_in_process_result_with_progress(scene, scan_nodes):
    logic = IsoVoxLogic()
    run = BackgroundRun(logic, scan_nodes, "cubeavg", spacing=1.5, device="cpu")
    run.start()
    seen = []
    deadline = time.monotonic() + 120
    while run.running and time.monotonic() < deadline:
        seen.append(run.poll())
        time.sleep(0.05)
    node = run.finish()
    seen.append(run.progress)
    reported = [parse_progress(line) for line in run.process.lines]
    fractions = [r[0] for r in reported if r is not None]
    assert run.progress[0] == 1.0 and any(0 < f < 1 for f in fractions) and fractions == sorted(fractions)
    assert not run.folder.exists()
    expected = volume_from_node(logic.process(scan_nodes, "cubeavg", spacing=1.5))
    got = volume_from_node(node)
    np.testing.assert_allclose(got.affine, expected.affine, atol=1e-9)
    np.testing.assert_allclose(got.data, expected.data, rtol=1e-5, atol=1e-3)
    assert node.GetName() == "T2ax+T2sag isovox-cubeavg"
    provenance = get_provenance(node)
    assert [e["node"] for e in provenance["inputs"]] == ["T2ax", "T2sag"] and "path" not in provenance["inputs"][0]
    assert len(provenance["inputs"][0]["sha256"]) == 64


def test_cancel_leaves_no_node_and_no_files(scene, scan_nodes):
    before = volume_count(scene)
    run = BackgroundRun(IsoVoxLogic(), scan_nodes, "cubeavg", spacing=1.0, device="cpu")
    run.start()
    run.cancel()
    assert not run.running
    with pytest.raises(CancelledError):
        run.finish()
    assert volume_count(scene) == before and not run.folder.exists()


def test_bad_settings_are_refused_before_any_process_starts(scan_nodes):
    with pytest.raises(InputError, match="finer than"):
        BackgroundRun(IsoVoxLogic(), scan_nodes, "cubeavg", spacing=0.01)


def test_an_engine_error_reaches_the_user_as_its_one_line(tmp_path):
    process = EngineProcess(engine_command(sys.executable, [str(tmp_path / "missing.nrrd")], str(tmp_path / "o.nrrd")))
    process.start()
    assert process.wait(60) == 2
    assert "missing.nrrd" in process.error_message()
    assert "Traceback" not in "\n".join(process.lines)


def test_command_line_and_progress_parsing():
    command = engine_command("py", ["a.nrrd", "b.nrrd"], "o.nrrd", "cubeavg", (0.8, 0.8, 1), "r.nrrd", "cpu",
                             RunOptions(register=True, match_intensity=True))
    assert command[:3] == ["py", "-m", "isovox.cli.main"]
    assert command[3:] == ["run", "a.nrrd", "b.nrrd", "-o", "o.nrrd", "--device", "cpu", "--progress", "lines",
                           "--method", "cubeavg", "--spacing", "0.8,0.8,1", "--reference", "r.nrrd", "--register",
                           "--match-intensity"]
    options = RunOptions(ensemble=True, adapt=True, slice_profile="gaussian", slice_thickness=(4.5,), smoothness=0.002,
                         consistency=False)
    tail = engine_command("py", ["a.nrrd"], "o.nrrd", "mrl", options=options)[13:]
    assert tail == ["--ensemble", "--adapt", "--slice-profile", "gaussian", "--slice-thickness", "4.5",
                    "--smoothness", "0.002", "--no-consistency"]
    from isovox.cli.main import build_parser  # the engine parses back exactly these options

    args = build_parser().parse_args(["run", "a.nrrd", "-o", "o.nrrd"] + tail)
    parsed = RunOptions.of(ensemble=args.ensemble, adapt=args.adapt, slice_profile=args.slice_profile,
                           slice_thickness=args.slice_thickness, smoothness=args.smoothness,
                           consistency=args.consistency)
    assert parsed == options
    assert parse_progress("isovox-progress 0.4200 cubeavg: fusing") == (0.42, "cubeavg: fusing")
    assert parse_progress("isovox-progress 1.0000") == (1.0, "")
    assert parse_progress("wrote result.nrrd") is None and parse_progress("isovox-progress x") is None
