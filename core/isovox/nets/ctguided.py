"""CT-guided unsupervised SR (Wang et al. 2023): SRNet, and the CITNet that guides its training.

SRNet is the only part that runs at inference: an RDN in HR space on the same inputs as the
other HR-space networks (fused volume, distance to the acquired slices, k), with a residual
on the fused volume. CITNet (MUNIT-like) translates between MR and CT through a shared
content space: per domain a content encoder (a half-resolution feature map), an attribute
encoder (an 8-d code), a generator (content + attribute through AdaIN residual blocks) and a
discriminator (a 3-D PatchGAN). CITNet works on images scaled to [-1, 1], as in the paper;
it exists only in training (``training/isovox_train/ctguided.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import network
from .arssr import RDNEncoder


@network("ctguided", bytes_per_tile_voxel=1200.0)
class SRNet(nn.Module):
    """RDN without upsampling: fused volume + conditioning channels -> super-resolved volume."""

    def __init__(self, in_channels: int = 3, features: int = 16, blocks: int = 3, layers: int = 3,
                 growth: int = 16) -> None:
        super().__init__()
        self.encoder = RDNEncoder(in_channels, features, blocks, layers, growth)
        self.out = nn.Conv3d(features, 1, 3, padding=1)
        nn.init.normal_(self.out.weight, std=1e-3)
        nn.init.zeros_(self.out.bias)
        self.receptive_radius = self.encoder.receptive_radius + 1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Shallow features (first two convs): the frozen perceptual feature network of stage 3."""
        return self.encoder.shallow2(F.relu(self.encoder.shallow1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] + self.out(self.encoder(x))


class ResBlock(nn.Module):
    """conv3-norm-ReLU-conv3-norm with identity skip; ``adain`` takes scale/shift from outside."""

    def __init__(self, channels: int, adain: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)
        self.adain = adain
        self.params = channels * 4  # (gamma, beta) for each of the two norms

    def _norm(self, x: torch.Tensor, style: torch.Tensor | None, which: int) -> torch.Tensor:
        x = F.instance_norm(x)
        if style is None:
            return x
        c = x.shape[1]
        gamma, beta = style[:, (2 * which) * c:(2 * which + 1) * c], style[:, (2 * which + 1) * c:(2 * which + 2) * c]
        return x * (1 + gamma[..., None, None, None]) + beta[..., None, None, None]

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(self._norm(self.conv1(x), style, 0))
        return x + self._norm(self.conv2(h), style, 1)


class ContentEncoder(nn.Module):
    """Image -> domain-invariant content code at half resolution (2 * channels maps)."""

    def __init__(self, channels: int = 8, res_blocks: int = 2) -> None:
        super().__init__()
        self.head = nn.Sequential(
            nn.Conv3d(1, channels, 3, padding=1), nn.InstanceNorm3d(channels), nn.ReLU(inplace=True),
            nn.Conv3d(channels, 2 * channels, 4, stride=2, padding=1), nn.InstanceNorm3d(2 * channels),
            nn.ReLU(inplace=True),
        )
        self.blocks = nn.ModuleList([ResBlock(2 * channels) for _ in range(res_blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        for block in self.blocks:
            h = block(h)
        return h


class AttributeEncoder(nn.Module):
    """Image -> domain-specific attribute code (``dim`` numbers; no normalisation, as in MUNIT)."""

    def __init__(self, channels: int = 8, dim: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(1, channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv3d(channels, 2 * channels, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv3d(2 * channels, 2 * channels, 4, stride=2, padding=1), nn.ReLU(inplace=True),
        )
        self.code = nn.Conv3d(2 * channels, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.code(F.adaptive_avg_pool3d(self.body(x), 1)).flatten(1)


class Generator(nn.Module):
    """Content code + attribute code -> image in [-1, 1] (AdaIN residual blocks, then upsampling)."""

    def __init__(self, channels: int = 8, dim: int = 8, res_blocks: int = 2) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([ResBlock(2 * channels, adain=True) for _ in range(res_blocks)])
        total = sum(b.params for b in self.blocks)
        self.style = nn.Sequential(nn.Linear(dim, 4 * channels), nn.ReLU(inplace=True), nn.Linear(4 * channels, total))
        self.tail = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv3d(2 * channels, channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv3d(channels, 1, 3, padding=1), nn.Tanh(),
        )

    def forward(self, content: torch.Tensor, attribute: torch.Tensor) -> torch.Tensor:
        style = self.style(attribute)
        h, start = content, 0
        for block in self.blocks:
            h = block(h, style[:, start:start + block.params])
            start += block.params
        return self.tail(h)


class Discriminator(nn.Module):
    """3-D PatchGAN: one real/fake logit per overlapping patch."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(1, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv3d(channels, 2 * channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv3d(2 * channels, 1, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class CITNet(nn.Module):
    """Cross-modality image translation: X = MR, Y = CT; all parts in one module for checkpoints."""

    def __init__(self, channels: int = 8, dim: int = 8, res_blocks: int = 2) -> None:
        super().__init__()
        self.dim = dim
        self.content_x, self.content_y = ContentEncoder(channels, res_blocks), ContentEncoder(channels, res_blocks)
        self.attribute_x, self.attribute_y = AttributeEncoder(channels, dim), AttributeEncoder(channels, dim)
        self.gen_x, self.gen_y = Generator(channels, dim, res_blocks), Generator(channels, dim, res_blocks)
        self.dis_x, self.dis_y = Discriminator(channels), Discriminator(channels)

    def generator_parameters(self):
        return [p for name, p in self.named_parameters() if not name.startswith("dis_")]

    def discriminator_parameters(self):
        return list(self.dis_x.parameters()) + list(self.dis_y.parameters())
