"""A few-step training smoke run: batches, checkpoint, resume, export, load."""

from __future__ import annotations

import json

import pytest

from isovox import models
from isovox_train.cli import main


@pytest.mark.parametrize("kind", ["hr", "lr", "implicit"])
def test_train_resume_export(tmp_path, kind, monkeypatch, capsys):
    config = {
        "name": f"smoke-{kind}", "kind": kind, "volumes": ["colin27-sample"], "validation_fraction": 0.35,
        "batch": 2, "lr": 1e-3, "warmup": 1, "steps": 3, "val_every": 3, "checkpoint_every": 1,
        "validation_samples": 1, "validation_patch": 24, "validation_slices": 4, "seed": 0, "bf16": False,
        "relative_loss": True, "clean_fraction": 0.5, "contrast_randomisation": 0.5,
    }
    if kind == "hr":
        config.update(architecture="isosrn", patch=20, loss_border=2,
                      arguments={"channels": 4, "blocks": 1, "in_channels": 3, "image_residual": True})
    elif kind == "implicit":
        config.update(architecture="arssr", patch=16, points=64, coarsening=[1.2, 1.6],
                      protocol={"scale": [2, 3]}, validation_patch=20, validation_border=4,
                      arguments={"in_channels": 3, "features": 4, "blocks": 1, "layers": 2, "growth": 4,
                                 "width": 8, "depth": 6})
    else:
        config.update(architecture="mrl", patch=16, factors=[2, 3],
                      arguments={"channels": 4, "units": 1, "in_channels": 2, "factors": [2, 3, 4, 5, 6, 7, 8]})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    run, export = tmp_path / "run", tmp_path / "models"
    assert main([str(path), "--out", str(run), "--export", str(export), "--steps", "2", "-q"]) == 0
    assert "stopped" not in capsys.readouterr().err
    assert json.loads((run / "checkpoint.json").read_text())["step"] == 2
    assert main([str(path), "--out", str(run), "--export", str(export), "-q"]) == 0  # resumes to step 3
    lines = (run / "training.csv").read_text().strip().splitlines()
    assert [ln.split(",")[0] for ln in lines[1:]] == ["1", "2", "3"]
    monkeypatch.setenv("ISOVOX_MODELS", str(export))
    module, card = models.load_model(f"smoke-{kind}")
    assert card.training["steps"] == 3 and card.kind == kind and card.training["contrast_randomisation"] == 0.5
    assert card.kind == kind and (export / f"smoke-{kind}" / "MODEL_CARD.md").exists()


def test_only_allowed_volumes_train():
    from isovox_train.data import load_volumes

    with pytest.raises(ValueError, match="may not be used for training"):
        load_volumes(["ct_head"], 0.3)


def test_random_contrast_reorders_tissues_keeps_air_dark():
    """The SynthSR-style remap must produce contrasts a T1 never has (tissue order reversed), keep air at
    zero, and give a divisor that brings the remapped head back to about 1."""
    import numpy as np

    from isovox_train.data import augment, random_contrast

    rng = np.random.default_rng(0)
    ramp = np.broadcast_to(np.linspace(0.0, 1.0, 16, dtype=np.float32)[:, None, None], (16, 16, 16)).copy()
    reversed_order = 0
    for _ in range(20):
        out, peak = random_contrast(ramp, rng)
        assert np.all(out[0] == 0) and np.isfinite(out).all() and 0.05 <= peak <= 1.0
        reversed_order += out[4].mean() > out[14].mean()  # "grey" brighter than "white": not a T1 order
        remapped, divisor = augment(ramp, rng, contrast=1.0)
        assert 0.3 < np.percentile(remapped, 99) / divisor < 3.0
    assert 3 <= reversed_order <= 17
    # without the remap, augment draws exactly what it drew before the option existed (shipped weights reproduce)
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    np.testing.assert_array_equal(augment(ramp, a)[0], augment(ramp, b, contrast=0.0)[0])
    assert a.random() == b.random()
