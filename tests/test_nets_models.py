"""Network shapes, the paper configuration, and safe model loading."""

from __future__ import annotations

import json

import pytest
import torch

from isovox import models
from isovox.errors import InputError
from isovox.nets import build


@pytest.mark.parametrize("shape", [(8, 10, 12), (13, 7, 9)])
def test_hr_space_networks_keep_the_grid(shape):
    x = torch.randn(2, 3, *shape)
    for net in (build("isosrn", channels=4, blocks=2, in_channels=3, image_residual=True),
                build("recnn", layers=3, filters=4, in_channels=3)):
        assert net(x).shape == (2, 1, *shape)


@pytest.mark.parametrize("factor", [2, 3, 5, 8])
def test_mrl_upsamples_the_slice_axis(factor):
    net = build("mrl", channels=4, units=2, in_channels=2)  # B-spline base: 2 + r input channels
    x = torch.randn(1, 2 + 8, 5, 6, 7)
    assert net(x, factor).shape == (1, 1, 5 * factor, 6, 7)
    branches = net.branches(x, factor)
    assert len(branches) == 2 and all(b.shape == (1, 1, 5 * factor, 6, 7) for b in branches)
    with pytest.raises(ValueError):
        net(x, 9)


def test_paper_isosrn_is_constructible():
    net = build("isosrn", channels=32, blocks=16, in_channels=1)
    params = sum(p.numel() for p in net.parameters())
    assert 3.5e6 < params < 3.8e6  # the paper reports about 3.63 M
    assert net.receptive_radius == 36


def _save(tmp_path, name="tiny"):
    net = build("recnn", layers=3, filters=4, in_channels=3)
    card = models.ModelCard(name, "recnn", {"layers": 3, "filters": 4, "in_channels": 3})
    models.save_model(net, card, tmp_path)
    return net


def test_model_round_trip_and_hash_check(tmp_path, monkeypatch):
    net = _save(tmp_path)
    monkeypatch.setenv("ISOVOX_MODELS", str(tmp_path))
    loaded, card = models.load_model("tiny")
    for a, b in zip(net.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    recorded = json.loads((tmp_path / "tiny" / "model.json").read_text())["weights_sha256"]
    assert models.model_card("tiny").weights_sha256 == recorded == models.sha256(tmp_path / "tiny" / "weights.safetensors")
    weights = tmp_path / "tiny" / "weights.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0xFF  # one flipped bit in a weight
    weights.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="does not match the recorded"):
        models.load_model("tiny")


def test_a_model_without_its_card_or_recorded_hash_is_not_loaded(tmp_path, monkeypatch):
    _save(tmp_path)
    monkeypatch.setenv("ISOVOX_MODELS", str(tmp_path))
    card = tmp_path / "tiny" / "model.json"
    values = json.loads(card.read_text())
    values.pop("weights_sha256")
    card.write_text(json.dumps(values))
    with pytest.raises(InputError, match="does not match the recorded"):
        models.load_model("tiny")
    card.unlink()
    assert not models.has_model("tiny")
    with pytest.raises(InputError, match="not installed"):
        models.load_model("tiny")


def test_mrl_starts_from_the_exact_bspline():
    """With zero detail heads the output is the cubic B-spline of the scan along its slice axis."""
    import numpy as np

    from isovox.features import lr_inputs
    from isovox.fusion import spline_matrix
    from isovox.volume import Volume

    data = np.random.default_rng(0).random((6, 5, 4)).astype(np.float32)
    lr = lr_inputs(Volume(data, np.diag([3.0, 1, 1, 1])), 1.0)
    net = build("mrl", channels=4, units=1, in_channels=2)
    for heads in net.up.values():
        for conv in heads:
            torch.nn.init.zeros_(conv.weight)
            torch.nn.init.zeros_(conv.bias)
    with torch.no_grad():
        out = net(torch.from_numpy(lr.array[None]), 3)[0, 0].numpy()
    expected = np.tensordot(spline_matrix(6, (np.arange(18) + 0.5) / 3 - 0.5), data / lr.scale, axes=([1], [0]))
    np.testing.assert_allclose(out, expected, atol=1e-5)
