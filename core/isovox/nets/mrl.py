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

from . import network


class ResidualUnit(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(channels, channels, 3, padding=1), nn.ReLU(inplace=True), nn.Conv3d(channels, channels, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def keys_weights(r: int, a: float = -0.5) -> torch.Tensor:
    """(r, 1, 5, 1, 1) kernel: cubic-convolution (Keys) interpolation of sub-slice q of each slice.

    Sub-slice q of slice j sits at j + (q + 0.5) / r - 0.5; taps are slices j-2..j+2. A local,
    fixed operator (unlike the B-spline's recursive prefilter), so tiling stays exact.
    """
    def kernel(x: float) -> float:
        x = abs(x)
        if x <= 1:
            return (a + 2) * x**3 - (a + 3) * x**2 + 1
        if x < 2:
            return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
        return 0.0

    weights = torch.zeros(r, 1, 5, 1, 1)
    for q in range(r):
        t = (q + 0.5) / r - 0.5
        for tap, m in enumerate(range(-2, 3)):
            weights[q, 0, tap, 0, 0] = kernel(t - m)
    return weights


def shuffle_depth(x: torch.Tensor, r: int) -> torch.Tensor:
    """(N, r, D, H, W) -> (N, 1, D*r, H, W): sub-slice q of slice j goes to j*r + q."""
    n, _, d, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(n, 1, d * r, h, w)


@network("mrl", bytes_per_tile_voxel=2400.0)  # per LR tile voxel and upsampling factor
class MRL(nn.Module):
    def __init__(self, channels: int = 32, units: int = 4, in_channels: int = 2, factors: tuple = (2, 3, 4, 5, 6, 7, 8),
                 base: str = "bspline") -> None:
        super().__init__()
        if base not in ("bspline", "cubic", "trilinear"):
            raise ValueError(f"base must be 'bspline', 'cubic' or 'trilinear', got {base!r}")
        self.base = base
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
        if self.base == "bspline":  # channels 2..2+r carry the exact B-spline sub-slices
            if x.shape[1] < 2 + r:
                raise ValueError(f"a bspline-base MRL at x{r} needs {2 + r} input channels, got {x.shape[1]}")
            base = shuffle_depth(x[:, 2:2 + r], r)
            x = x[:, :2]
        else:
            base = self.upsample(x[:, :1], r)
        f0 = self.head(x)
        f = f0
        outs = []
        for unit, head in zip(self.units, self.up[str(r)]):
            f = unit(f) + f0
            outs.append(base + shuffle_depth(head(f), r))
        return outs

    def upsample(self, x: torch.Tensor, r: int) -> torch.Tensor:
        """The fixed interpolation the learned detail is added to."""
        if self.base == "trilinear":
            return F.interpolate(x, scale_factor=(r, 1, 1), mode="trilinear", align_corners=False)
        padded = F.pad(x, (0, 0, 0, 0, 2, 2), mode="replicate")
        return shuffle_depth(F.conv3d(padded, keys_weights(r).to(x.dtype).to(x.device)), r)

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
