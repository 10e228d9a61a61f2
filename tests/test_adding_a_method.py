"""Adding a learned method is one network file, one method file and a model folder: nothing else is edited."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

import isovox.methods
import isovox.nets
from isovox import api, io, models, nets, registry
from isovox.cli.main import main
from isovox.sample import sample_scan_paths

NETWORK_FILE = '''
"""A toy HR-space network: the fused input plus a learned 3x3x3 correction."""
import torch
from torch import nn

from isovox.nets import network


@network("toynet", bytes_per_tile_voxel=64.0)
class ToyNet(nn.Module):
    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, 1, 3, padding=1)
        self.receptive_radius = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] + self.conv(x)
'''

METHOD_FILE = '''
"""The toy method."""
from isovox.learned import learned_spec, run_hr_network
from isovox.registry import register

register(learned_spec("toynet", "A toy CNN on the fused volume.", lambda request: run_hr_network(request, "toynet"),
                      scales=(1.5, 8.0)))
'''


@pytest.fixture
def toy_method(tmp_path, monkeypatch):
    """The two files in folders added to the packages' search paths, and the model folder that training writes."""
    for package, text in ((isovox.nets, NETWORK_FILE), (isovox.methods, METHOD_FILE)):
        folder = tmp_path / package.__name__.replace(".", "_")
        folder.mkdir()
        (folder / "toynet.py").write_text(textwrap.dedent(text))
        monkeypatch.setattr(package, "__path__", list(package.__path__) + [str(folder)])
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry.registered()))
    monkeypatch.setattr(isovox.methods, "_loaded", False)
    root = tmp_path / "models"
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    network = nets.build("toynet", in_channels=3)
    models.save_model(network, models.ModelCard("toynet", "toynet", {"in_channels": 3}, kind="hr"), root)
    monkeypatch.setenv("ISOVOX_MODELS", str(root))
    yield network
    import sys

    for name in ("isovox.nets.toynet", "isovox.methods.toynet"):
        sys.modules.pop(name, None)
    nets._NETWORKS.pop("toynet", None)


def test_a_new_method_is_listed_planned_and_run(toy_method, tmp_path, capsys):
    assert main(["methods", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["toynet"]["available"] and rows["toynet"]["model_card"]["architecture"] == "toynet"
    scans = [io.read_volume(p) for p in sample_scan_paths()]
    plan = api.plan(scans, "toynet")
    assert plan.memory_bytes > 0 and nets.spec("toynet").bytes_per_tile_voxel == 64.0
    out = tmp_path / "toy.nii.gz"
    assert main(["run", *map(str, sample_scan_paths()), "--method", "toynet", "-o", str(out), "-q"]) == 0
    result = io.read_volume(out).data
    fused = api.super_resolve(scans, "cubeavg").volume.data
    assert result.shape == fused.shape and np.abs(result - fused).max() > 0
