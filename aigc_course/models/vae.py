"""A convolutional variational autoencoder for 1x28x28 images (Kingma & Welling, 2013).

    encoder   x (B, 1, 28, 28) -> conv 4x4/2 -> (B, c1, 14, 14) -> conv 4x4/2 -> (B, c2, 7, 7)
              -> linear -> (B, hidden) -> mean (B, k) and log-variance (B, k) of q(z | x)
    sample    z = mean + exp(logvar / 2) * eps,  eps ~ N(0, I)          (reparameterisation)
    decoder   z (B, k) -> linear -> (B, c2, 7, 7) -> transposed convs -> logits (B, 1, 28, 28)
              of p(x | z), a Bernoulli per pixel

The loss is the negative ELBO per image, in nats:

    -ELBO(x) = -E_q[log p(x | z)] + beta * KL(q(z | x) || N(0, I)),
    KL = -1/2 * sum_j (1 + logvar_j - mean_j^2 - exp(logvar_j))             (lesson 01, lesson 05)

with one sample of z for the expectation and beta = 1 for the true ELBO. A Bernoulli likelihood
is a likelihood of *binary* images, so the course binarises Fashion-MNIST (each pixel is 1 with
probability equal to its intensity): then log p(x) is a proper log-probability, and the
importance-weighted bound of Burda et al. (2015),

    log p(x) >= log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x),   z_k ~ q(z | x),

estimates it in nats and in bits per dimension (nats / (784 ln 2)). It is >= the ELBO and grows with K.

:class:`MLPVAE` is the same model with fully connected layers (784-400-20, Kingma & Welling's own):
the baseline ``benchmarks/vae.py`` measures the conv VAE against at equal wall-clock time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aigc_course.divergences import kl_standard_normal
from aigc_course.i18n import N_
from aigc_course.validators import count, setting

PIXELS = 28 * 28


@dataclass(frozen=True)
class VAEConfig:
    latent_dim: int = setting(16, N_("size of z"), count)
    channels: tuple[int, int] = (32, 64)
    hidden: int = 128

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> VAEConfig:
        return cls(**{**values, "channels": tuple(values["channels"])})


class BernoulliVAE(nn.Module):
    """What every VAE of the course shares: a Gaussian q(z | x) from ``encoder`` followed by
    ``to_mean`` and ``to_logvar``, the prior N(0, I), and a Bernoulli p(x | z) whose logits come
    from ``decoder``. Subclasses build those four modules and set ``config.latent_dim``."""

    config: VAEConfig | MLPVAEConfig

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x): mean and log-variance, each ``(B, k)``, for images ``(B, 1, 28, 28)``."""
        features = self.encoder(x)
        return self.to_mean(features), self.to_logvar(features)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """p(x | z): Bernoulli logits ``(B, 1, 28, 28)`` for codes ``(B, k)``."""
        return self.decoder(z)

    def loss_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image: the reconstruction NLL -log p(x | z) with one z ~ q, and KL(q || p(z)). ``(B,)`` each."""
        mean, logvar = self.encode(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        logits = self.decode(z)
        reconstruction = (
            F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        )
        return reconstruction, kl_standard_normal(mean, logvar)

    def forward(
        self, x: torch.Tensor, beta: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(negative ELBO with weight beta on the KL, reconstruction term, KL term), batch means in nats."""
        reconstruction, kl = self.loss_terms(x)
        return (reconstruction + beta * kl).mean(), reconstruction.mean(), kl.mean()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images ``(n, 1, 28, 28)``: z ~ N(0, I), shown as the pixel probabilities of p(x | z)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.config.latent_dim, generator=generator).to(device)
        return torch.sigmoid(self.decode(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities decoded from the posterior mean of each image: ``(B, 1, 28, 28)``."""
        mean, _logvar = self.encode(x)
        return torch.sigmoid(self.decode(mean))

    @torch.no_grad()
    def iwae_log_likelihood(self, x: torch.Tensor, k: int = 100) -> torch.Tensor:
        """The importance-weighted estimate of log p(x) with ``k`` samples, per image ``(B,)``, in nats.

        k = 1 is the ELBO (one-sample estimate); the bound tightens as k grows.
        """
        mean, logvar = self.encode(x)
        std = torch.exp(0.5 * logvar)
        log_weights = []
        for _sample in range(k):
            eps = torch.randn_like(mean)
            z = mean + std * eps
            log_likelihood = (
                -F.binary_cross_entropy_with_logits(self.decode(z), x, reduction="none")
                .flatten(1)
                .sum(1)
            )
            log_prior = -0.5 * (z**2 + math.log(2 * math.pi)).sum(1)
            log_q = -0.5 * (eps**2 + logvar + math.log(2 * math.pi)).sum(1)
            log_weights.append(log_likelihood + log_prior - log_q)
        return torch.logsumexp(torch.stack(log_weights), dim=0) - math.log(k)


class VAE(BernoulliVAE):
    """The course's convolutional VAE (the diagram at the top of this file)."""

    def __init__(self, config: VAEConfig = VAEConfig()) -> None:
        super().__init__()
        self.config = config
        c1, c2 = config.channels
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c1, 4, stride=2, padding=1),  # (B, c1, 14, 14)
            nn.ReLU(),
            nn.Conv2d(c1, c2, 4, stride=2, padding=1),  # (B, c2, 7, 7)
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(c2 * 7 * 7, config.hidden),
            nn.ReLU(),
        )
        self.to_mean = nn.Linear(config.hidden, config.latent_dim)
        self.to_logvar = nn.Linear(config.hidden, config.latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(config.latent_dim, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, c2 * 7 * 7),
            nn.ReLU(),
            nn.Unflatten(1, (c2, 7, 7)),
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1),  # (B, c1, 14, 14)
            nn.ReLU(),
            nn.ConvTranspose2d(c1, 1, 4, stride=2, padding=1),  # (B, 1, 28, 28) logits
        )


@dataclass(frozen=True)
class MLPVAEConfig:
    """The fully connected VAE of Kingma & Welling (2013): 784-400-k, one hidden layer each way."""

    latent_dim: int = setting(20, N_("size of z"), count)
    hidden: int = 400

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> MLPVAEConfig:
        return cls(**values)


class MLPVAE(BernoulliVAE):
    """The classic MLP VAE: the baseline the conv VAE is measured against (``benchmarks/vae.py``).

    encoder  x (B, 1, 28, 28) -> flatten (B, 784) -> linear -> (B, hidden) -> mean, logvar (B, k)
    decoder  z (B, k) -> linear -> (B, hidden) -> linear -> logits (B, 1, 28, 28)
    """

    def __init__(self, config: MLPVAEConfig = MLPVAEConfig()) -> None:
        super().__init__()
        self.config = config
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(PIXELS, config.hidden), nn.ReLU())
        self.to_mean = nn.Linear(config.hidden, config.latent_dim)
        self.to_logvar = nn.Linear(config.hidden, config.latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(config.latent_dim, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, PIXELS),
            nn.Unflatten(1, (1, 28, 28)),
        )


def build_vae(config: VAEConfig | MLPVAEConfig) -> BernoulliVAE:
    """The VAE a config describes: :class:`VAE` for a :class:`VAEConfig`, :class:`MLPVAE` for an
    :class:`MLPVAEConfig`."""
    return MLPVAE(config) if isinstance(config, MLPVAEConfig) else VAE(config)


def nats_to_bits_per_dim(nats: torch.Tensor | float) -> torch.Tensor | float:
    """A negative log-likelihood per image in nats -> bits per pixel."""
    return nats / (PIXELS * math.log(2))


def binarize(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Binary images: each pixel is 1 with probability equal to its intensity in [0, 1]."""
    return torch.bernoulli(images, generator=generator)


# --------------------------------------------------------------------------------------------
# Looking inside a trained VAE (lesson 06)
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def decode_latent(model: BernoulliVAE, z: list[float] | torch.Tensor) -> torch.Tensor:
    """The image ``(28, 28)`` (pixel probabilities) that a VAE decodes from one code ``z``."""
    device = next(model.parameters()).device
    z = torch.as_tensor(z, dtype=torch.float32, device=device).reshape(1, -1)
    return torch.sigmoid(model.decode(z))[0, 0].cpu()


@torch.no_grad()
def latent_grid(model: BernoulliVAE, n: int = 15, span: float = 2.5) -> torch.Tensor:
    """A 2-D latent model's decoded manifold: an ``(n * 28, n * 28)`` image of the grid
    z in [-span, span]^2 (first coordinate left to right, second bottom to top)."""
    values = torch.linspace(-span, span, n)
    rows = [
        torch.cat([decode_latent(model, [x, y]) for x in values], dim=1) for y in values.flip(0)
    ]
    return torch.cat(rows, dim=0)


@torch.no_grad()
def interpolate(
    model: BernoulliVAE, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 10
) -> torch.Tensor:
    """Images decoded along the straight line between the posterior means of two images:
    ``(steps, 28, 28)``, starting at ``x_a`` and ending at ``x_b``."""
    device = next(model.parameters()).device
    mean, _logvar = model.encode(torch.stack([x_a, x_b]).to(device))
    weights = torch.linspace(0, 1, steps, device=device)[:, None]
    z = (1 - weights) * mean[0] + weights * mean[1]
    return torch.sigmoid(model.decode(z))[:, 0].cpu()


@torch.no_grad()
def active_units(model: BernoulliVAE, x: torch.Tensor, threshold: float = 0.01) -> int:
    """How many latent dimensions the encoder uses: Var over x of E[z_j | x] above ``threshold``.

    A dimension whose posterior mean is the same for every image carries no information about x;
    when most are like that, the posterior has *collapsed* onto the prior.
    """
    device = next(model.parameters()).device
    mean, _logvar = model.encode(x.to(device))
    return int((mean.var(dim=0) > threshold).sum().item())
