"""A small U-Net that predicts the noise in a noised 1x28x28 image, given the step t (Ho et al., 2020).

    x_t (B, 1, 28, 28), t (B,); c = config.channels, the width of the first level
    time      t -> sinusoidal embedding (B, c) -> MLP -> (B, 4c), added inside every residual block
    down      conv 3x3 -> (B, c, 28, 28) -> res -> (B, c, 28, 28) -> downsample -> (B, c, 14, 14)
              -> res -> (B, 2c, 14, 14) -> downsample -> (B, 2c, 7, 7) -> res -> (B, 2c, 7, 7)
    middle    res -> (B, 2c, 7, 7)
    up        [skip] res -> (B, 2c, 7, 7) -> upsample -> (B, 2c, 14, 14) -> [skip] res -> (B, c, 14, 14)
              -> upsample -> (B, c, 28, 28) -> [skip] res -> (B, c, 28, 28)
    out       GroupNorm, SiLU, conv 3x3 -> the predicted noise (B, 1, 28, 28)

"U": the resolution halves twice on the way down and doubles back on the way up; each level's
output is handed across ("skip") and concatenated to the way up, so fine detail need not pass
through the 7x7 bottleneck. Each residual block adds the time embedding to its features: one
network serves every noise level, told which one it is denoising. With ``n_classes`` the label's
embedding is added to the time embedding (a class-conditional model).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aigc_course.i18n import _


@dataclass(frozen=True)
class UNetConfig:
    channels: int = 32  # the first level's width; the lower levels have twice as many
    groups: int = 8  # GroupNorm groups
    n_classes: int = 0  # 0: unconditional; 10: conditioned on the Fashion-MNIST class

    def to_dict(self) -> dict:
        return asdict(self)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of the steps ``t`` ``(B,)`` -> ``(B, dim)``, as the Transformer's
    positions: sines and cosines at geometrically spaced frequencies from 1 to 1/max_period."""
    half = dim // 2
    frequencies = torch.exp(
        -math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )
    angles = t.float()[:, None] * frequencies[None, :]  # (B, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResidualBlock(nn.Module):
    """``(B, c_in, H, W)`` and a step embedding ``(B, embedding)`` -> ``(B, c_out, H, W)``:
    norm, SiLU, conv; add the projected time embedding; norm, SiLU, conv; add the (projected) input."""

    def __init__(self, c_in: int, c_out: int, embedding: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(embedding, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(embedding)[:, :, None, None]  # the noise level, broadcast over H, W
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """Three levels: 28x28 with ``width`` feature maps, 14x14 and 7x7 with ``2 * width``; every
    residual block also reads the step's embedding (``4 * width`` numbers)."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        width, embedding_dim = config.channels, 4 * config.channels

        def block(c_in: int, c_out: int) -> ResidualBlock:
            return ResidualBlock(c_in, c_out, embedding_dim, config.groups)

        self.time_mlp = nn.Sequential(
            nn.Linear(width, embedding_dim), nn.SiLU(), nn.Linear(embedding_dim, embedding_dim)
        )
        self.label_embedding = (
            nn.Embedding(config.n_classes, embedding_dim) if config.n_classes else None
        )
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.down = nn.ModuleList(
            [block(width, width), block(width, 2 * width), block(2 * width, 2 * width)]
        )
        self.downsample = nn.ModuleList(
            [
                nn.Conv2d(width, width, 3, stride=2, padding=1),
                nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),
            ]
        )
        self.middle = block(2 * width, 2 * width)
        self.up = nn.ModuleList(
            [
                block(4 * width, 2 * width),  # 7x7: the middle and the skip from down[2]
                block(4 * width, width),  # 14x14: and the skip from down[1]
                block(2 * width, width),  # 28x28: and the skip from down[0]
            ]
        )
        self.upsample = nn.ModuleList(
            [
                nn.ConvTranspose2d(2 * width, 2 * width, 4, stride=2, padding=1),
                nn.ConvTranspose2d(width, width, 4, stride=2, padding=1),
            ]
        )
        self.out = nn.Sequential(
            nn.GroupNorm(config.groups, width), nn.SiLU(), nn.Conv2d(width, 1, 3, padding=1)
        )
        nn.init.zeros_(self.out[-1].weight)  # start by predicting zero noise: a calm first step
        nn.init.zeros_(self.out[-1].bias)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Noised images ``(B, 1, 28, 28)`` at steps ``t`` ``(B,)`` -> predicted noise ``(B, 1, 28, 28)``."""
        embedding = self.time_mlp(timestep_embedding(t, self.config.channels))  # (B, 4 width)
        if self.label_embedding is not None:
            if labels is None:
                raise ValueError(_("this U-Net is class-conditional: pass labels (B,)"))
            embedding = embedding + self.label_embedding(labels)
        h = self.stem(x)  # (B, width, 28, 28)
        skips = []
        for level, block in enumerate(self.down):
            h = block(h, embedding)
            skips.append(h)  # (B, width, 28, 28), (B, 2 width, 14, 14), (B, 2 width, 7, 7)
            if level < len(self.downsample):
                h = self.downsample[level](h)
        h = self.middle(h, embedding)  # (B, 2 width, 7, 7)
        for level, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], dim=1), embedding)
            if level < len(self.upsample):
                h = self.upsample[level](h)
        return self.out(h)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
