"""CT-guided SR: the shapes of every CITNet part, SRNet tiling, the degradation, the three-stage trainer."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from isovox import models
from isovox.models import ModelCard
from isovox.nets import build
from isovox.nets.ctguided import AttributeEncoder, CITNet, ContentEncoder, Discriminator, Generator
from isovox.tiling import run_tiled
from isovox_train import ctguided_data
from isovox_train.cli import main

SMOKE = {
    "name": "ctguided-smoke", "kind": "ctguided",
    "arguments": {"in_channels": 3, "features": 4, "blocks": 1, "layers": 2, "growth": 4},
    "citnet": {"channels": 2, "dim": 8, "res_blocks": 1},
    "mr": {"volume": "colin27-sample", "axis": 1, "scale": 4},
    "ct": {"volume": "ct-sample", "scale": [2.0, 4.0]},
    "evaluate": ["colin27-sample"], "validation_fraction": 0.3, "patch": 16, "batch": 2, "loss_border": 2,
    "stages": {"1": 2, "2": 1, "3": 1}, "lr": 1e-3, "checkpoint_every": 1, "seed": 0, "threads": 1,
    "range_scales": [4],
}


@pytest.mark.parametrize("size", [16, 24])
def test_citnet_parts_have_the_right_shapes(size):
    torch.manual_seed(0)
    x = torch.rand(2, 1, size, size, size) * 2 - 1
    content = ContentEncoder(channels=3, res_blocks=2)(x)
    assert content.shape == (2, 6, size // 2, size // 2, size // 2)
    attribute = AttributeEncoder(channels=3, dim=8)(x)
    assert attribute.shape == (2, 8)
    image = Generator(channels=3, dim=8, res_blocks=2)(content, attribute)
    assert image.shape == x.shape and image.abs().max() <= 1
    assert Discriminator(channels=3)(x).shape == (2, 1, size // 4, size // 4, size // 4)
    net = CITNet(channels=3)
    split = set(map(id, net.generator_parameters())) | set(map(id, net.discriminator_parameters()))
    assert split == set(map(id, net.parameters()))
    assert not set(map(id, net.generator_parameters())) & set(map(id, net.discriminator_parameters()))


def test_attribute_changes_the_generated_image():
    torch.manual_seed(0)
    gen = Generator(channels=3, dim=8)
    content = torch.randn(1, 6, 8, 8, 8)
    assert not torch.allclose(gen(content, torch.randn(1, 8)), gen(content, torch.randn(1, 8)))


def test_srnet_keeps_the_grid_and_tiles_exactly():
    torch.manual_seed(0)
    net = build("ctguided", in_channels=3, features=4, blocks=2, layers=2, growth=4).eval()
    x = np.random.default_rng(0).random((3, 30, 26, 22)).astype(np.float32)
    with torch.inference_mode():
        whole = net(torch.from_numpy(x[None]))[0].numpy()
    tiled = run_tiled(net, x, (net.receptive_radius,) * 3, budget_bytes=3e5, bytes_per_voxel=200)
    assert whole.shape == (1, 30, 26, 22)
    assert np.abs(tiled - whole).max() <= 1e-5


def test_mr_crops_are_re_acquired_at_their_own_slice_positions():
    """D re-slices a crop where the scan's slices were: the distance-to-slice channels agree."""
    source = ctguided_data.load_mr("colin27-sample", axis=1, k=4, validation_fraction=0.3)
    rng = np.random.default_rng(0)
    for _ in range(5):
        crop, axis = ctguided_data.mr_crop(source, 16, rng)
        again = ctguided_data.degrade(crop[0], axis, 4)
        np.testing.assert_allclose(again[1], crop[1], atol=1e-6)
        np.testing.assert_allclose(again[2], crop[2], atol=1e-6)
    assert (source.centres[:, 0] >= round(source.inputs.shape[1] * 0.3)).all()  # validation slab never sampled


def test_mr_inplane_pairs_re_slice_a_sharp_axis_of_the_lr_scan():
    """The LR MR's own pairs: thick along an in-plane axis; the target is the LR scan (no HR MRI)."""
    source = ctguided_data.load_mr("colin27-sample", axis=1, k=4, validation_fraction=0.3)
    rng = np.random.default_rng(2)
    for _ in range(4):
        inputs, target, thick = ctguided_data.mr_inplane_pair(source, 16, rng)
        varies = [a for a in range(3) if np.ptp(inputs[1], axis=a).max() > 0]  # distance to acquired slices
        assert len(varies) == 1 and varies[0] != thick
        assert np.isin(target, source.inputs[0]).all()  # values of the thick-slice scan itself


def test_ct_pairs_re_slice_a_sharp_axis():
    source = ctguided_data.load_ct("ct-sample")
    inputs, target = ctguided_data.ct_pair(source, 16, 4.0, np.random.default_rng(1))
    assert inputs.shape == (3, 16, 16, 16) and target.shape == (1, 16, 16, 16)
    assert 0 <= target.min() and target.max() <= 1
    assert np.abs(inputs[0] - target[0]).mean() > 1e-3  # the input is degraded


def test_only_allowed_volumes_enter_training():
    with pytest.raises(ValueError, match="may not be the MR side"):
        ctguided_data.load_mr("mni152", 1, 4, 0.3)
    with pytest.raises(ValueError, match="may not be the CT side"):
        ctguided_data.load_ct("colin27")


def test_three_stages_train_resume_and_export(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(SMOKE))
    run, export = tmp_path / "run", tmp_path / "models"
    assert main([str(path), "--out", str(run), "--export", str(export), "--minutes", "0", "-q"]) == 0
    assert json.loads((run / "checkpoint.json").read_text())["step"] == 1
    assert main([str(path), "--out", str(run), "--export", str(export), "-q"]) == 0  # resumes
    with open(run / "training.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["step"], r["stage"]) for r in rows] == [("1", "1"), ("2", "1"), ("3", "2"), ("4", "3")]
    assert {"adversarial", "self", "cycle", "latent", "perceptual", "self_consistency", "translated"} <= set(
        json.loads(rows[-1]["terms"]))
    monkeypatch.setenv("ISOVOX_MODELS", str(export))
    module, card = models.load_model("ctguided-smoke")
    assert set(card.extra["stage_ablation"]) == {"1", "2", "3"}
    assert card.single_scan is not None and card.multi_scan is not None and card.min_scale >= 2
    assert "Stage ablation" in (export / "ctguided-smoke" / "MODEL_CARD.md").read_text()


def test_stage3_updates_srnet_citnet_and_discriminators(tmp_path):
    from isovox_train.ctguided import CTGuidedTrainer

    trainer = CTGuidedTrainer({**SMOKE, "stages": {"3": 1}}, tmp_path / "run")
    before = {name: p.detach().clone() for name, p in trainer.nets.named_parameters()}
    trainer.run(quiet=True)
    changed = {name for name, p in trainer.nets.named_parameters() if not torch.equal(p, before[name])}
    assert any(n.startswith("sr.") for n in changed)
    assert any(n.startswith("cit.gen_x") for n in changed) and any(n.startswith("cit.dis_y") for n in changed)
    assert not any(n.startswith("phi.") for n in changed)  # the perceptual feature network stays frozen


def test_multi_scan_runs_outside_the_validated_range_get_cubeavg():
    card = ModelCard("ctguided", "ctguided", {}, single_scan=True, multi_scan=False, min_scale=3)
    assert card.outside_validated_range(4.0, 1) == ""
    assert "CubeAvg used" in card.outside_validated_range(4.0, 3)
    assert "below x3" in card.outside_validated_range(2.5, 1)
    assert "B-spline" in ModelCard("m", "isosrn", {}, single_scan=False).outside_validated_range(4.0, 1)
