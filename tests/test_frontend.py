"""The front-end layer both UIs and the command line share: methods, scales, previews, colour windows,
provenance, progress lines, exit codes, and the typed run options and model cards they pass on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from isovox import api, frontend, io
from isovox.errors import CancelledError, InputError, IsovoxError, ResourceError
from isovox.methods import all_methods, default_method
from isovox.models import ModelCard, models_root
from isovox.models.card import json_schema
from isovox.options import RunOptions
from isovox.sample import sample_scan_paths


@pytest.fixture(scope="module")
def scans():
    return [io.read_volume(p) for p in sample_scan_paths()]


def test_methods_for_a_selection_list_the_default_first():
    one = [m.name for m in frontend.methods_for(1)]
    three = [m.name for m in frontend.methods_for(3)]
    assert set(one) | set(three) <= {m.name for m in all_methods()}
    assert "bspline" in one and "bspline" not in three
    assert one[0] == default_method(1, "cpu").name and three[0] == default_method(3, "cpu").name
    assert all(m.reference != "required" for m in frontend.methods_for(2, with_reference=False))


def test_scale_and_spacing_are_inverse(scans):
    spacing = frontend.spacing_for_scale(scans, 2.5)
    assert spacing == pytest.approx(4.0 / 2.5)
    assert frontend.scale_for_spacing(scans, spacing) == pytest.approx(2.5)
    assert api.plan(scans, "cubeavg", spacing=spacing).scale == pytest.approx(2.5)
    for bad in (0, -1, float("nan")):
        with pytest.raises(InputError, match="positive"):
            frontend.spacing_for_scale(scans, bad)


def test_preview_is_a_slab_across_the_view_normal_without_adaptation(scans):
    full = api.plan(scans, "cubeavg", spacing=2.0).grid
    centre = full.affine[:3, :3] @ (np.array(full.shape) / 2) + full.affine[:3, 3]
    directions = full.affine[:3, :3] / full.spacing
    for axis in range(3):
        plan = frontend.preview_plan(scans, centre, 2.0, -directions[:, axis], "cubeavg", 2.0)
        assert plan.grid.shape[axis] == 3 and all(plan.grid.shape[a] == full.shape[a] for a in range(3) if a != axis)
        offset = np.linalg.solve(full.affine[:3, :3], plan.grid.affine[:3, 3] - full.affine[:3, 3])
        np.testing.assert_allclose(offset, np.rint(offset), atol=1e-6)  # on the full grid's voxels
    assert frontend.slab_axis(full, None) is None
    adapted = RunOptions(adapt=True, adapt_seconds=30)
    with pytest.raises(InputError, match="interpolation"):
        api.plan(scans, "cubeavg", options=adapted)
    assert not frontend.preview_plan(scans, centre, 2.0, None, "cubeavg", 2.0, options=adapted).options.adapt


def test_colour_windows():
    values = np.concatenate([np.linspace(-1, 1, 1001), [np.nan, 50.0]])
    assert frontend.diverging_limit(values) == pytest.approx(np.percentile(np.abs(values[np.isfinite(values)]), 99))
    assert frontend.diverging_limit(np.zeros(10)) == 1.0 and frontend.diverging_limit(np.full(3, np.nan)) == 1.0
    assert frontend.diverging_limit(np.r_[np.zeros(999), 2.0]) == 2.0  # mostly zero: the largest value, not 0
    lo, hi = frontend.display_limits(np.arange(1001.0))
    assert (lo, hi) == pytest.approx((5.0, 995.0))
    assert frontend.display_limits(np.ones(5)) == (1.0, 2.0)


def test_provenance_records_each_input_file_and_its_hash(tmp_path, digest):
    path = tmp_path / "scan.nii.gz"
    path.write_bytes(b"not really a scan")
    record = frontend.record_inputs({"inputs": [{"source": "a"}, {"source": "b"}]}, [str(path), None])
    assert record["inputs"][0]["sha256"] == digest(path) and record["inputs"][0]["path"] == str(path.resolve())
    assert record["inputs"][1] == {"source": "b"}


def test_progress_lines_round_trip():
    line = frontend.progress_line(0.42, "cubeavg", "fusing")
    assert line == "isovox-progress 0.4200 cubeavg: fusing"
    assert frontend.parse_progress(line) == (0.42, "cubeavg: fusing")
    assert frontend.parse_progress(frontend.progress_line(1.0, "")) == (1.0, "")
    assert frontend.parse_progress("wrote x.nrrd") is None and frontend.parse_progress("isovox-progress x") is None


@pytest.mark.parametrize("error, code", [
    (InputError("bad"), frontend.ExitCode.BAD_INPUT), (ResourceError("big"), frontend.ExitCode.RESOURCES),
    (CancelledError("stop"), frontend.ExitCode.CANCELLED), (MemoryError(), frontend.ExitCode.RESOURCES),
    (OSError(28, "No space left", "/out"), frontend.ExitCode.RESOURCES), (ValueError("x"), frontend.ExitCode.INTERNAL),
])
def test_exit_codes_and_messages(error, code):
    assert frontend.exit_code(error) == code
    message = frontend.user_message(error)
    assert "\n" not in message and message
    back = frontend.error_for_exit(int(code), message)
    assert isinstance(back, IsovoxError) and str(back) == message
    if code in (frontend.ExitCode.BAD_INPUT, frontend.ExitCode.RESOURCES, frontend.ExitCode.CANCELLED):
        assert type(back) is {2: InputError, 1: ResourceError, 130: CancelledError}[int(code)]


def test_run_options_are_typed_and_validated():
    options = RunOptions.of(register=True, adapt=True, adapt_seconds=20)
    assert options.to_dict() == {"register": True, "match_intensity": False, "ensemble": False, "adapt": True,
                                 "adapt_seconds": 20.0, "consistency": True}
    assert options.seconds_to_adapt == 20 and RunOptions(adapt=True).seconds_to_adapt == 300
    assert RunOptions.of(options, adapt=None) is options  # None means "not given"
    with pytest.raises(InputError, match="unknown run option"):
        RunOptions.of(ensembel=True)
    with pytest.raises(InputError, match="needs --adapt"):
        RunOptions(adapt_seconds=5)
    with pytest.raises(InputError, match="between 1 and 3600"):
        RunOptions(adapt=True, adapt_seconds=0.5)
    with pytest.raises(InputError, match="precision"):
        RunOptions(precision="fp8")


def test_model_cards_follow_their_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json_schema()
    committed = json.loads((models_root() / "model_card.schema.json").read_text())
    assert committed == schema, "regenerate models/model_card.schema.json from isovox.models.card.json_schema()"
    cards = sorted(models_root().glob("*/model.json"))
    assert len(cards) >= 6
    for path in cards:
        values = json.loads(path.read_text())
        jsonschema.validate(values, schema)
        assert ModelCard.from_dict(values).to_dict() == {**ModelCard.from_dict(values).to_dict(), **values}
    with pytest.raises(InputError, match="unknown field"):
        ModelCard.from_dict({"name": "m", "architecture": "recnn", "arguments": {}, "min_scal": 2})
    with pytest.raises(InputError, match="min_scale has the wrong type"):
        ModelCard.from_dict({"name": "m", "architecture": "recnn", "arguments": {}, "min_scale": "2"})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "m", "architecture": "recnn", "arguments": {}, "kind": "3d"}, schema)
