"""ArSSR (Wu et al. 2022): an RDN encoder and an MLP decoder queried at any point, so one
model serves any output spacing, fractional and anisotropic.

The encoder (a 3-D RDN without upsampling) maps the fused input on its own grid to a
feature per voxel. The decoder sees, for each output voxel, the trilinearly interpolated
feature at its centre plus its position relative to the nearest input voxel and its size,
both in input voxels. ArSSR feeds absolute patch coordinates instead; relative ones keep
the decoder translation-invariant, so tiled whole-volume inference decodes exactly what
training taught (and the output size tells it how much detail to put in). The paper's
configuration is ``ArSSR(features=128, blocks=8, layers=3, growth=64, width=256)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import network


class DenseBlock(nn.Module):
    """Residual dense block: ``layers`` conv3 + ReLU, each seeing all earlier outputs; 1x1 fusion."""

    def __init__(self, features: int, layers: int, growth: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [nn.Conv3d(features + i * growth, growth, 3, padding=1) for i in range(layers)]
        )
        self.fuse = nn.Conv3d(features + layers * growth, features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = [x]
        for conv in self.convs:
            maps.append(F.relu(conv(torch.cat(maps, 1))))
        return x + self.fuse(torch.cat(maps, 1))


class RDNEncoder(nn.Module):
    def __init__(self, in_channels: int, features: int, blocks: int, layers: int, growth: int) -> None:
        super().__init__()
        self.shallow1 = nn.Conv3d(in_channels, features, 3, padding=1)
        self.shallow2 = nn.Conv3d(features, features, 3, padding=1)
        self.blocks = nn.ModuleList([DenseBlock(features, layers, growth) for _ in range(blocks)])
        self.global_fuse = nn.Sequential(nn.Conv3d(blocks * features, features, 1),
                                         nn.Conv3d(features, features, 3, padding=1))
        self.receptive_radius = 3 + blocks * layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.shallow1(x)
        f = self.shallow2(f1)
        outs = []
        for block in self.blocks:
            f = block(f)
            outs.append(f)
        return f1 + self.global_fuse(torch.cat(outs, 1))


class MLPDecoder(nn.Module):
    """``depth`` fully connected layers with ReLU; the input joins again after the 4th (skip link)."""

    def __init__(self, in_features: int, width: int, depth: int = 8) -> None:
        super().__init__()
        if depth < 6:
            raise ValueError("the decoder needs at least 6 layers")
        self.first = nn.ModuleList([nn.Linear(in_features if i == 0 else width, width) for i in range(4)])
        self.second = nn.ModuleList(
            [nn.Linear(width + in_features if i == 0 else width, width) for i in range(depth - 5)]
        )
        self.out = nn.Linear(width, 1)
        nn.init.normal_(self.out.weight, std=1e-3)
        nn.init.zeros_(self.out.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for layer in self.first:
            h = F.relu(layer(h))
        h = torch.cat([h, z], -1)
        for layer in self.second:
            h = F.relu(layer(h))
        return self.out(h)


def sample(volume: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Trilinear values of ``volume`` (1, C, D, H, W) at ``points`` (P, 3) in voxel indices -> (P, C).

    Points outside the volume take the value at the nearest border voxel.
    """
    sizes = torch.tensor(volume.shape[2:], dtype=points.dtype, device=points.device)
    norm = torch.where(sizes > 1, 2 * points / (sizes - 1).clamp(min=1) - 1, torch.zeros_like(points))
    grid = norm.flip(-1).view(1, -1, 1, 1, 3)  # grid_sample wants (x, y, z) = (W, H, D)
    out = F.grid_sample(volume, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.view(volume.shape[1], -1).t()


@network("arssr", bytes_per_tile_voxel=2048.0)  # the RDN encoder, per input crop voxel
class ArSSR(nn.Module):
    def __init__(self, in_channels: int = 3, features: int = 32, blocks: int = 3, layers: int = 3, growth: int = 16,
                 width: int = 64, depth: int = 8, image_residual: bool = True) -> None:
        super().__init__()
        self.encoder = RDNEncoder(in_channels, features, blocks, layers, growth)
        self.decoder = MLPDecoder(features + 6, width, depth)
        self.image_residual = image_residual
        self.receptive_radius = self.encoder.receptive_radius

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def query(self, x: torch.Tensor, features: torch.Tensor, points: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """Values (P,) at ``points`` (P, 3, input voxel indices) for output voxels of size ``cell`` (3,)."""
        offset = points - torch.floor(points + 0.5)  # not round(): half-even breaks shift invariance
        z = torch.cat([sample(features, points), offset, cell.expand(points.shape[0], 3)], -1)
        out = self.decoder(z)[:, 0]
        return out + sample(x[:, :1], points)[:, 0] if self.image_residual else out

    def forward(self, x: torch.Tensor, points: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """One volume ``x`` (1, C, D, H, W); see :meth:`query`."""
        return self.query(x, self.encode(x), points, cell)
