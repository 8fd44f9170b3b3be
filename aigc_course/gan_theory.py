"""The GAN minimax game (Goodfellow et al., 2014), in one dimension where everything can be plotted.

The value function, maximised by the discriminator D and minimised by the generator G:

    V(D, G) = E_{x ~ p_data}[log D(x)] + E_{z ~ p(z)}[log(1 - D(G(z)))]

For a fixed G with density p_g, the best discriminator is, pointwise,

    D*(x) = p_data(x) / (p_data(x) + p_g(x)),

because a log D + b log(1 - D) is maximised over D in (0, 1) at D = a / (a + b). Substituting it,

    V(D*, G) = -log 4 + 2 * JSD(p_data || p_g),

so with an optimal D the generator minimises the Jensen-Shannon divergence, which is zero exactly when
p_g = p_data. In practice G does not minimise log(1 - D(G(z))): early in training D rejects fakes
confidently, D(G(z)) ~ 0, and that loss has almost no gradient ("saturates"). G minimises the
*non-saturating* loss -log D(G(z)) instead, which has the same fixed point and strong gradients there.

Discriminators here output **logits** a, with D = sigmoid(a); log D = -softplus(-a) and
log(1 - D) = -softplus(a) are computed from the logits, which is stable where D is near 0 or 1.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from aigc_course import runtime
from aigc_course.divergences import GaussianMixture1D, kl_categorical

LOG_4 = math.log(4.0)


# --------------------------------------------------------------------------------------------
# The value function and the losses
# --------------------------------------------------------------------------------------------


def value_function(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """V = mean log D(x) over real samples + mean log(1 - D(G(z))) over fakes, from D's logits."""
    return -F.softplus(-real_logits).mean() - F.softplus(fake_logits).mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-V: binary cross-entropy with label 1 for real, 0 for fake. D minimises this (maximises V)."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss_saturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """E[log(1 - D(G(z)))]: the minimax generator loss, G's term of V. Weak gradients early on."""
    return -F.softplus(fake_logits).mean()


def generator_loss_non_saturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """-E[log D(G(z))]: the loss generators are trained with in practice."""
    return F.softplus(-fake_logits).mean()


def generator_gradients(d_fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """d loss / d logit of both generator losses, as functions of D(G(z)) in (0, 1).

    With a = logit and D = sigmoid(a): d/da log(1 - sigmoid(a)) = -D, which vanishes as D -> 0;
    d/da -log sigmoid(a) = -(1 - D), which is largest there. Returns (saturating, non_saturating).
    """
    logits = torch.logit(d_fake).detach().requires_grad_(True)
    saturating = torch.autograd.grad(-F.softplus(logits).sum(), logits)[0]
    non_saturating = torch.autograd.grad(F.softplus(-logits).sum(), logits)[0]
    return saturating, non_saturating


# --------------------------------------------------------------------------------------------
# The optimal discriminator and the Jensen-Shannon divergence
# --------------------------------------------------------------------------------------------


def optimal_discriminator(p_data: torch.Tensor, p_model: torch.Tensor) -> torch.Tensor:
    """D*(x) = p_data / (p_data + p_model), elementwise on densities; 1/2 where both are zero."""
    total = p_data + p_model
    return torch.where(total > 0, p_data / total.clamp_min(torch.finfo(total.dtype).tiny), 0.5)


def jensen_shannon(p: torch.Tensor, q: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """JSD(p || q) = 1/2 KL(p || m) + 1/2 KL(q || m) with m = (p + q) / 2; in [0, log 2] nats.

    For densities on a uniform grid, pass the normalised masses ``p(x_i) dx / sum`` (see
    :func:`grid_masses`). Unlike KL it is symmetric and always finite.
    """
    middle = (p + q) / 2
    return 0.5 * kl_categorical(p, middle, dim) + 0.5 * kl_categorical(q, middle, dim)


def grid_masses(density: torch.Tensor) -> torch.Tensor:
    """Densities on a uniform grid -> probabilities of the grid cells (summing to one)."""
    return density / density.sum()


def value_on_grid(
    discriminator: torch.Tensor, p_data: torch.Tensor, p_model: torch.Tensor
) -> torch.Tensor:
    """V(D, G) = sum_x p_data log D + p_model log(1 - D), with D, p_data, p_model on one grid.

    ``p_data`` and ``p_model`` are grid masses (summing to one); terms with zero mass contribute 0.
    """
    return (torch.xlogy(p_data, discriminator) + torch.xlogy(p_model, 1 - discriminator)).sum()


def value_at_optimum(p_data: torch.Tensor, p_model: torch.Tensor) -> torch.Tensor:
    """V(D*, G) = sum p_data log(p_data / (p_data + p_model)) + p_model log(p_model / (...)).

    The same as ``value_on_grid(optimal_discriminator(p_data, p_model), p_data, p_model)``, but
    computed from the ratios directly, so that D* rounding to exactly 0 or 1 cannot produce log 0.
    """
    total = p_data + p_model
    return (
        torch.xlogy(p_data, p_data)
        - torch.xlogy(p_data, total)
        + torch.xlogy(p_model, p_model)
        - torch.xlogy(p_model, total)
    ).sum()


# --------------------------------------------------------------------------------------------
# One step of the game: D ascends V, then G descends its non-saturating loss
# --------------------------------------------------------------------------------------------


def _discriminate(
    discriminator: nn.Module, x: torch.Tensor, labels: torch.Tensor | None
) -> torch.Tensor:
    return discriminator(x) if labels is None else discriminator(x, labels)


def discriminator_step(
    discriminator: nn.Module,
    optimizer: torch.optim.Optimizer,
    real: torch.Tensor,
    fake: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    precision: runtime.Precision | None = None,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One update of D: ascend V on ``real`` (label 1) and ``fake`` (label 0) by minimising the BCE.

    Pass ``fake`` detached (``generator(z).detach()``), so that D's loss cannot reach G's
    parameters. Returns D's loss and its logits on the real and the fake batch.
    """
    with _autocast(precision):
        real_logits = _discriminate(discriminator, real, labels)
        fake_logits = _discriminate(discriminator, fake, labels)
        loss = discriminator_loss(real_logits, fake_logits)
    runtime.optimizer_step(loss, optimizer, scaler, grad_clip)
    return loss, real_logits, fake_logits


def generator_step(
    discriminator: nn.Module,
    optimizer: torch.optim.Optimizer,
    fake: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    precision: runtime.Precision | None = None,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One update of G: descend the non-saturating loss -log D(G(z)) through D.

    ``fake`` is ``generator(z)``, *not* detached. The backward pass also fills D's gradients, but
    only G's ``optimizer`` steps, so D does not change here (and D's next step clears them).
    Returns G's loss and D's logits on the fakes.
    """
    with _autocast(precision):
        fake_logits = _discriminate(discriminator, fake, labels)
        loss = generator_loss_non_saturating(fake_logits)
    runtime.optimizer_step(loss, optimizer, scaler, grad_clip)
    return loss, fake_logits


@dataclass
class GANStep:
    """What one step of the game returns: both losses and D's logits before its update."""

    loss_d: torch.Tensor
    loss_g: torch.Tensor
    real_logits: torch.Tensor
    fake_logits: torch.Tensor


def gan_step(
    generator: nn.Module,
    discriminator: nn.Module,
    optimizer_g: torch.optim.Optimizer,
    optimizer_d: torch.optim.Optimizer,
    real: torch.Tensor,
    z: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    precision: runtime.Precision | None = None,
    scalers: tuple[torch.amp.GradScaler | None, torch.amp.GradScaler | None] = (None, None),
    grad_clip: float | None = None,
) -> GANStep:
    """One step of the game on one batch: a D update on ``real`` and ``G(z)`` (detached), then a G
    update through the updated D, on the same fakes. ``scalers`` is (G's, D's)."""
    with _autocast(precision):
        fake = generator(z) if labels is None else generator(z, labels)
    scaler_g, scaler_d = scalers
    loss_d, real_logits, fake_logits = discriminator_step(
        discriminator, optimizer_d, real, fake.detach(), labels,
        precision=precision, scaler=scaler_d, grad_clip=grad_clip,
    )  # fmt: skip
    loss_g, _ = generator_step(
        discriminator, optimizer_g, fake, labels,
        precision=precision, scaler=scaler_g, grad_clip=grad_clip,
    )  # fmt: skip
    return GANStep(loss_d, loss_g, real_logits, fake_logits)


def _autocast(precision: runtime.Precision | None) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext() if precision is None else precision.autocast()


# --------------------------------------------------------------------------------------------
# Small networks for 1-D experiments
# --------------------------------------------------------------------------------------------


def mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    """Two hidden layers with LeakyReLU: enough for any 1-D density the lesson uses."""
    return nn.Sequential(
        nn.Linear(inputs, hidden),
        nn.LeakyReLU(0.2),
        nn.Linear(hidden, hidden),
        nn.LeakyReLU(0.2),
        nn.Linear(hidden, outputs),
    )


def train_discriminator(
    sample_data: Callable[[int], torch.Tensor],
    sample_model: Callable[[int], torch.Tensor],
    steps: int = 2000,
    batch_size: int = 512,
    hidden: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
) -> nn.Module:
    """Train a discriminator between two fixed samplers by minimising the BCE (maximising V).

    The lesson compares the result with :func:`optimal_discriminator` of the two true densities.
    """
    torch.manual_seed(seed)
    discriminator = mlp(1, hidden, 1)
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    for _ in range(steps):
        real = sample_data(batch_size).float().unsqueeze(1)
        fake = sample_model(batch_size).float().unsqueeze(1)
        loss = discriminator_loss(discriminator(real), discriminator(fake))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return discriminator


@dataclass(frozen=True)
class GAN1DConfig:
    """A generator z -> x and a discriminator x -> logit, both small MLPs, trained with Adam."""

    steps: int = 3000
    batch_size: int = 256
    noise_dim: int = 2
    hidden: int = 32
    lr_generator: float = 1e-3
    lr_discriminator: float = 1e-3
    discriminator_steps: int = 1  # D updates per G update; more makes D stronger
    betas: tuple[float, float] = (0.5, 0.999)
    snapshot_every: int = 250
    snapshot_samples: int = 4000


@dataclass
class GAN1DRun:
    """What a 1-D GAN run records: generator samples over training, and the losses."""

    config: GAN1DConfig
    snapshots: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    discriminator_losses: list[float] = field(default_factory=list)
    generator_losses: list[float] = field(default_factory=list)
    d_real: list[float] = field(default_factory=list)  # mean D(x) on real samples
    d_fake: list[float] = field(default_factory=list)  # mean D(G(z)) on fakes

    @property
    def final_samples(self) -> torch.Tensor:
        return self.snapshots[-1][1]


def train_gan_1d(target: GaussianMixture1D, config: GAN1DConfig, seed: int = 0) -> GAN1DRun:
    """Train a GAN on samples of ``target`` with the non-saturating generator loss."""
    torch.manual_seed(seed)
    data_generator = torch.Generator().manual_seed(seed)
    generator = mlp(config.noise_dim, config.hidden, 1)
    discriminator = mlp(1, config.hidden, 1)
    optimizer_g = torch.optim.Adam(generator.parameters(), config.lr_generator, betas=config.betas)
    optimizer_d = torch.optim.Adam(
        discriminator.parameters(), config.lr_discriminator, betas=config.betas
    )
    run = GAN1DRun(config)

    def snapshot(step: int) -> None:
        with torch.no_grad():
            noise = torch.randn(config.snapshot_samples, config.noise_dim)
            run.snapshots.append((step, generator(noise).squeeze(1)))

    snapshot(0)
    for step in range(1, config.steps + 1):
        for _ in range(config.discriminator_steps):  # D ascends V: G's output is detached
            real = target.sample(config.batch_size, data_generator).float().unsqueeze(1)
            fake = generator(torch.randn(config.batch_size, config.noise_dim)).detach()
            loss_d, real_logits, fake_logits = discriminator_step(
                discriminator, optimizer_d, real, fake
            )
        # G descends the non-saturating loss; only G's optimizer steps.
        fake = generator(torch.randn(config.batch_size, config.noise_dim))
        loss_g, fake_logits = generator_step(discriminator, optimizer_g, fake)
        run.discriminator_losses.append(loss_d.item())
        run.generator_losses.append(loss_g.item())
        run.d_real.append(torch.sigmoid(real_logits).mean().item())
        run.d_fake.append(torch.sigmoid(fake_logits).mean().item())
        if step % config.snapshot_every == 0 or step == config.steps:
            snapshot(step)
    return run


def mode_coverage(
    samples: torch.Tensor, target: GaussianMixture1D, width: float = 3.0
) -> list[float]:
    """The fraction of ``samples`` within ``width`` standard deviations of each mode of ``target``.

    A generator that covers the data puts about the mode's weight near each mode; a collapsed one
    puts (almost) everything near one.
    """
    return [
        ((samples - mean).abs() < width * std).float().mean().item()
        for mean, std in zip(target.means, target.stds, strict=True)
    ]
