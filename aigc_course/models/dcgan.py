"""DCGAN (Radford et al., 2015) for 1x28x28 images, unconditional or class-conditional.

    generator      z (B, k) [+ label embedding] -> linear -> (B, 2c, 7, 7) -> BN, ReLU
                   -> transposed conv 4x4/2 -> (B, c, 14, 14) -> BN, ReLU
                   -> transposed conv 4x4/2 -> (B, 1, 28, 28) -> tanh          (images in [-1, 1])
    discriminator  x (B, 1, 28, 28) [+ label map channel] -> conv 4x4/2 -> LeakyReLU(0.2)
                   -> conv 4x4/2 -> BN, LeakyReLU(0.2) -> linear -> one logit per image

The DCGAN recipe: strided (transposed) convolutions instead of pooling, batch norm in the generator
(and in D after its first layer), ReLU in G and LeakyReLU in D, weights N(0, 0.02²), and Adam with
lr 2e-4 and betas (0.5, 0.999) (the cpu profile trains c = 32 at lr 1e-3: trainers/gan.py). The
losses are lesson 03's, term for term:

    D maximises  E[log D(x)] + E[log(1 - D(G(z)))]   -> aigc_course.gan_theory.discriminator_loss
    G minimises  -E[log D(G(z))]  (non-saturating)   -> aigc_course.gan_theory.generator_loss_non_saturating

A class-conditional GAN gives both networks the label: G concatenates a label embedding to z, D
reads the label as an extra input channel; then G can be asked for a chosen class.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from aigc_course.i18n import N_, _
from aigc_course.validators import setting


@dataclass(frozen=True)
class GANConfig:
    latent_dim: int = 64
    channels: int = 64  # c
    n_classes: int = setting(  # 0: unconditional; 10: conditioned on the Fashion-MNIST class
        0,
        N_("condition on the class (a cGAN)"),
        flag="--conditional",
        switch=10,
        names_checkpoint=True,
    )

    def to_dict(self) -> dict:
        return asdict(self)


def dcgan_init(module: nn.Module) -> None:
    """The DCGAN paper's initialisation: conv weights N(0, 0.02²), batch-norm gains N(1, 0.02²) (std 0.02)."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class Generator(nn.Module):
    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        self.config = config
        c, k = config.channels, config.latent_dim
        self.label_embedding = nn.Embedding(config.n_classes, k) if config.n_classes else None
        inputs = 2 * k if config.n_classes else k
        self.project = nn.Sequential(
            nn.Linear(inputs, 2 * c * 7 * 7, bias=False), nn.Unflatten(1, (2 * c, 7, 7))
        )
        self.net = nn.Sequential(
            nn.BatchNorm2d(2 * c),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1, bias=False),  # (B, c, 14, 14)
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1),  # (B, 1, 28, 28)
            nn.Tanh(),
        )
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Noise ``(B, k)`` (and labels ``(B,)`` if conditional) -> images ``(B, 1, 28, 28)`` in [-1, 1]."""
        if self.label_embedding is not None:
            if labels is None:
                raise ValueError(_("this generator is class-conditional: pass labels (B,)"))
            z = torch.cat([z, self.label_embedding(labels)], dim=1)
        return self.net(self.project(z))


class Discriminator(nn.Module):
    def __init__(self, config: GANConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.label_map = nn.Embedding(config.n_classes, 28 * 28) if config.n_classes else None
        inputs = 2 if config.n_classes else 1
        self.net = nn.Sequential(
            nn.Conv2d(inputs, c, 4, stride=2, padding=1),  # (B, c, 14, 14)
            nn.LeakyReLU(0.2),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1, bias=False),  # (B, 2c, 7, 7)
            nn.BatchNorm2d(2 * c),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(2 * c * 7 * 7, 1),
        )
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images ``(B, 1, 28, 28)`` in [-1, 1] (and labels) -> logits ``(B,)``: log-odds of "real"."""
        if self.label_map is not None:
            if labels is None:
                raise ValueError(_("this discriminator is class-conditional: pass labels (B,)"))
            x = torch.cat([x, self.label_map(labels).view(-1, 1, 28, 28)], dim=1)
        return self.net(x).squeeze(1)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> pixel intensities in [0, 1]."""
    return (images + 1) / 2


def to_signed_range(images: torch.Tensor) -> torch.Tensor:
    """Pixel intensities in [0, 1] -> [-1, 1], the range the discriminator sees."""
    return images * 2 - 1
