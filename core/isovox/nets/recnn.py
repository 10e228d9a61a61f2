"""ReCNN (Pham et al. 2019): residual CNN on the spline-interpolated volume, output Z + F(Z).

L layers of conv3 + ReLU (the last linear). ``in_channels`` > 1 carries conditioning
channels and, for guided SR, a registered HR image of another contrast.
"""

from __future__ import annotations

import torch
from torch import nn

from . import network


@network("recnn", bytes_per_tile_voxel=300.0)  # measured 190 B
class ReCNN(nn.Module):
    def __init__(self, layers: int = 10, filters: int = 64, in_channels: int = 1) -> None:
        super().__init__()
        if layers < 2:
            raise ValueError("ReCNN needs at least 2 layers")
        convs: list[nn.Module] = [nn.Conv3d(in_channels, filters, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(layers - 2):
            convs += [nn.Conv3d(filters, filters, 3, padding=1), nn.ReLU(inplace=True)]
        convs.append(nn.Conv3d(filters, 1, 3, padding=1))
        self.body = nn.Sequential(*convs)
        self.receptive_radius = layers
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        last = convs[-1]
        nn.init.normal_(last.weight, std=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] + self.body(x)
