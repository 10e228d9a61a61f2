"""Multi-resolution-learning residual CNN (paper 004), made 3-D through-plane SR.

It works on a scan's own low-resolution grid with the thick axis first (dim 2 of
N, C, D, H, W): a first conv, then residual units whose outputs all receive the
first conv's output; each unit's output is upsampled along D by a learned
sub-voxel head (a stride-r transposed convolution written as conv + shuffle) and
added to the interpolated input; learned weights combine the N upsampled maps.
One head per integer factor r shares the trunk, so one model serves x2..x8.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualUnit(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(channels, channels, 3, padding=1), nn.ReLU(inplace=True), nn.Conv3d(channels, channels, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def shuffle_depth(x: torch.Tensor, r: int) -> torch.Tensor:
    """(N, r, D, H, W) -> (N, 1, D*r, H, W): sub-slice q of slice j goes to j*r + q."""
    n, _, d, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(n, 1, d * r, h, w)


class MRL(nn.Module):
    def __init__(self, channels: int = 32, units: int = 4, in_channels: int = 2, factors: tuple = (2, 3, 4, 5, 6, 7, 8)) -> None:
        super().__init__()
        self.head = nn.Conv3d(in_channels, channels, 3, padding=1)
        self.units = nn.ModuleList([ResidualUnit(channels) for _ in range(units)])
        self.factors = tuple(int(f) for f in factors)
        self.up = nn.ModuleDict({
            str(r): nn.ModuleList([nn.Conv3d(channels, r, 3, padding=1) for _ in range(units)]) for r in self.factors
        })
        self.weights = nn.Parameter(torch.full((units,), 1.0 / units))
        self.receptive_radius = 1 + 2 * units + 1
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        for heads in self.up.values():
            for conv in heads:
                nn.init.normal_(conv.weight, std=1e-3)

    def branches(self, x: torch.Tensor, r: int) -> list[torch.Tensor]:
        """The N upsampled maps (each = interpolated input + learned detail), for deep supervision."""
        if str(r) not in self.up:
            raise ValueError(f"this model has no x{r} head (has {self.factors})")
        base = F.interpolate(x[:, :1], scale_factor=(r, 1, 1), mode="trilinear", align_corners=False)
        f0 = self.head(x)
        f = f0
        outs = []
        for unit, head in zip(self.units, self.up[str(r)]):
            f = unit(f) + f0
            outs.append(base + shuffle_depth(head(f), r))
        return outs

    def combine(self, branches: list[torch.Tensor]) -> torch.Tensor:
        return sum(w * b for w, b in zip(self.weights, branches)) / self.weights.sum()

    def forward(self, x: torch.Tensor, r: int = 4) -> torch.Tensor:
        return self.combine(self.branches(x, r))


class FixedFactor(nn.Module):
    """MRL at one upsampling factor, so generic tiling can call ``module(x)``."""

    def __init__(self, mrl: MRL, factor: int) -> None:
        super().__init__()
        self.mrl = mrl
        self.factor = int(factor)
        self.receptive_radius = mrl.receptive_radius

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mrl(x, self.factor)
