"""isoSRN (Tian et al., Sensors 2024): a 3-D CNN on the fused (CubeAvg) volume in HR space.

conv3 -> n concat blocks (wide activation x4, learnable pi and lambda, 1x1x1 fusion) ->
global feature residual -> conv3 -> conv3. The paper's configuration is
``IsoSRN(channels=32, blocks=16, in_channels=1, image_residual=False)``; isovox adds
conditioning channels (slice geometry) and an image-level residual.
"""

from __future__ import annotations

import torch
from torch import nn

from . import network


class ConcatBlock(nn.Module):
    """Wide-activation residual-like block fused by a 1x1x1 conv over [pi*x, lambda*h]."""

    def __init__(self, channels: int, expansion: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(channels, channels * expansion, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv3d(channels * expansion, channels, 3, padding=1),
        )
        self.pi = nn.Parameter(torch.ones(1))
        self.lam = nn.Parameter(torch.ones(1))
        self.fuse = nn.Conv3d(2 * channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([self.pi * x, self.lam * self.body(x)], dim=1))


@network("isosrn", bytes_per_tile_voxel=450.0)  # measured 380 B
class IsoSRN(nn.Module):
    def __init__(self, channels: int = 32, blocks: int = 16, in_channels: int = 1, expansion: int = 4,
                 image_residual: bool = False) -> None:
        super().__init__()
        self.head = nn.Conv3d(in_channels, channels, 3, padding=1)
        self.blocks = nn.Sequential(*[ConcatBlock(channels, expansion) for _ in range(blocks)])
        self.body_tail = nn.Conv3d(channels, channels, 3, padding=1)
        self.tail = nn.Sequential(nn.Conv3d(channels, channels, 3, padding=1), nn.Conv3d(channels, 1, 3, padding=1))
        self.image_residual = image_residual
        self.receptive_radius = 2 * blocks + 4
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        if image_residual:  # start at the fused input, so training learns only the correction
            nn.init.normal_(self.tail[-1].weight, std=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.head(x)
        y = self.tail(x0 + self.body_tail(self.blocks(x0)))
        return y + x[:, :1] if self.image_residual else y
