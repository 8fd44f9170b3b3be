"""Denoising diffusion (DDPM, Ho et al., 2020) and its deterministic sampler (DDIM, Song et al., 2021).

**Forward process.** Noise is added in T small steps, q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1},
beta_t I). With alpha_t = 1 - beta_t and alpha_bar_t = prod_{s<=t} alpha_s, any step has a closed form:

    q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I),
    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,      eps ~ N(0, I)          (q_sample)

so training never runs the chain: draw t, draw eps, make x_t in one line. alpha_bar_t falls from
about 1 (clean) to about 0 (pure noise); its signal-to-noise ratio is alpha_bar_t / (1 - alpha_bar_t).
Two schedules: **linear** betas from 1e-4 to 0.02 (Ho et al.) and **cosine** alpha_bar (Nichol &
Dhariwal, 2021), which destroys information more evenly over t.

**Loss.** The ELBO of lesson 05, written for this chain, is a sum over t of KL terms between Gaussians;
with the network predicting the noise eps_theta(x_t, t), each is a weighted squared error of the
predicted noise. Ho et al. drop the weights (and the last decoder term's details): the **simple loss**

    L = E_{x_0, t ~ U{1..T}, eps} || eps - eps_theta(x_t, t) ||^2                       (diffusion_loss)

is no longer the ELBO, but trains better samples.

**Reverse step (DDPM).** With the predicted noise, the mean of p(x_{t-1} | x_t) is

    mu = 1 / sqrt(alpha_t) * (x_t - beta_t / sqrt(1 - alpha_bar_t) * eps_theta),
    x_{t-1} = mu + sigma_t z,   z ~ N(0, I),   sigma_t^2 = beta_t,   and no noise at the last step.  (ddpm_step)

**DDIM.** The same trained network, a different (non-Markovian) reverse process that can skip
steps: predict x_0 from x_t, then move to an earlier step t' along the predicted noise,

    x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_theta) / sqrt(alpha_bar_t)
    x_t' = sqrt(alpha_bar_t') x0_hat + sqrt(1 - alpha_bar_t' - s^2) eps_theta + s z,
    s = eta * sqrt((1 - alpha_bar_t') / (1 - alpha_bar_t)) * sqrt(1 - alpha_bar_t / alpha_bar_t')   (ddim_step)

With eta = 0 it is deterministic (the same noise gives the same image); with eta = 1 and every step
it is DDPM with the posterior variance.

**The bound itself (lesson 11).** The simple loss drops the ELBO's weights, but the trained network
still defines a reverse chain, and its bound on -log p(x_0) can be evaluated term by term
(:func:`variational_bound_terms`): the prior term KL(q(x_T | x_0) || N(0, I)), one Gaussian KL per
step between the true posterior q(x_{t-1} | x_t, x_0) and the model's step, and a discretised
Gaussian decoder for the 8-bit pixels at the last step. In bits per dimension it is comparable
with any other likelihood of the same 8-bit images.

Steps are numbered 0..T-1 in code (t = 0 is the first noising step), images live in [-1, 1].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from aigc_course.divergences import kl_gaussians
from aigc_course.errors import SettingError
from aigc_course.i18n import _

SCHEDULES = ("linear", "cosine")


def linear_betas(steps: int, start: float = 1e-4, end: float = 0.02) -> torch.Tensor:
    """Ho et al.'s schedule for 1000 steps, stretched to ``steps`` so that alpha_bar ends alike
    (betas capped at 0.999 for very short chains)."""
    scale = 1000 / steps
    return torch.linspace(scale * start, scale * end, steps, dtype=torch.float64).clamp(max=0.999)


def cosine_betas(steps: int, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal's schedule: alpha_bar(t) = f(t) / f(0), f(t) = cos^2((t/T + s) / (1 + s) * pi/2);
    betas from consecutive ratios, capped at 0.999 so the last step stays invertible."""
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)


@dataclass
class NoiseSchedule:
    """betas, alphas = 1 - betas and alpha_bars = cumprod(alphas), each ``(T,)`` float32."""

    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bars: torch.Tensor

    @classmethod
    def make(cls, kind: str = "linear", steps: int = 1000) -> NoiseSchedule:
        if kind not in SCHEDULES:
            raise SettingError(
                _("the schedule must be one of {choices}, got {kind}").format(
                    choices=", ".join(SCHEDULES), kind=repr(kind)
                )
            )
        if not isinstance(steps, int) or steps < 2:
            raise SettingError(
                _("a diffusion needs at least 2 steps, got {steps}").format(steps=repr(steps))
            )
        betas = linear_betas(steps) if kind == "linear" else cosine_betas(steps)
        alphas = 1 - betas
        return cls(betas.float(), alphas.float(), torch.cumprod(alphas, 0).float())

    @property
    def steps(self) -> int:
        return len(self.betas)

    def to(self, device: torch.device | str) -> NoiseSchedule:
        return NoiseSchedule(
            self.betas.to(device), self.alphas.to(device), self.alpha_bars.to(device)
        )

    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar / (1 - alpha_bar) at each step: ``(T,)``."""
        return self.alpha_bars / (1 - self.alpha_bars)


def _per_image(values: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``values[t]`` shaped ``(B, 1, 1, 1)`` to broadcast over images."""
    return values.to(t.device)[t].view(-1, 1, 1, 1)


def q_sample(
    x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps: ``(B, 1, H, W)`` at steps ``t`` ``(B,)``."""
    alpha_bar = _per_image(schedule.alpha_bars, t)
    return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise


def diffusion_loss(
    model: nn.Module,
    x0: torch.Tensor,
    schedule: NoiseSchedule,
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The simple loss: mean squared error between the noise and the model's prediction of it, at
    a uniformly random step per image. ``x0`` ``(B, 1, H, W)`` in [-1, 1]."""
    batch = x0.shape[0]
    if generator is None:  # drawn where the images are (no copy per step on a GPU)
        t = torch.randint(0, schedule.steps, (batch,), device=x0.device)
        noise = torch.randn_like(x0)
    else:
        t = torch.randint(0, schedule.steps, (batch,), generator=generator).to(x0.device)
        noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    x_t = q_sample(x0, t, noise, schedule)
    predicted = model(x_t, t) if labels is None else model(x_t, t, labels)
    return ((predicted - noise) ** 2).mean()


def ddpm_mean(
    x_t: torch.Tensor, t: int, predicted_noise: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """The mean of the model's reverse step p(x_{t-1} | x_t), from the predicted noise:
    1 / sqrt(alpha_t) * (x_t - beta_t / sqrt(1 - alpha_bar_t) * eps)."""
    beta, alpha, alpha_bar = (
        float(v[t]) for v in (schedule.betas, schedule.alphas, schedule.alpha_bars)
    )
    return (x_t - beta / math.sqrt(1 - alpha_bar) * predicted_noise) / math.sqrt(alpha)


def ddpm_step(
    x_t: torch.Tensor,
    t: int,
    predicted_noise: torch.Tensor,
    schedule: NoiseSchedule,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """One ancestral step x_t -> x_{t-1} (sigma_t^2 = beta_t); no noise at t = 0 (the last step)."""
    mean = ddpm_mean(x_t, t, predicted_noise, schedule)
    if t == 0:
        return mean
    if noise is None:
        noise = torch.randn_like(x_t)
    return mean + math.sqrt(float(schedule.betas[t])) * noise


def ddim_step(
    x_t: torch.Tensor,
    t: int,
    t_prev: int,
    predicted_noise: torch.Tensor,
    schedule: NoiseSchedule,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """One DDIM step from step ``t`` to the earlier step ``t_prev`` (-1: to the clean image)."""
    alpha_bar = float(schedule.alpha_bars[t])
    alpha_bar_prev = float(schedule.alpha_bars[t_prev]) if t_prev >= 0 else 1.0
    x0_hat = (x_t - math.sqrt(1 - alpha_bar) * predicted_noise) / math.sqrt(alpha_bar)
    sigma = (
        eta
        * math.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar))
        * math.sqrt(1 - alpha_bar / alpha_bar_prev)
    )
    direction = math.sqrt(max(1 - alpha_bar_prev - sigma**2, 0.0)) * predicted_noise
    x_prev = math.sqrt(alpha_bar_prev) * x0_hat + direction
    if sigma > 0:
        x_prev = x_prev + sigma * (torch.randn_like(x_t) if noise is None else noise)
    return x_prev


def clipped_noise(
    x_t: torch.Tensor, t: int, predicted_noise: torch.Tensor, schedule: NoiseSchedule
) -> torch.Tensor:
    """The predicted noise, corrected so that the clean image it implies, x0_hat, lies in [-1, 1]
    (where the data lies). Early in sampling, alpha_bar_t is tiny and x0_hat = (x_t - sqrt(1 -
    alpha_bar_t) eps) / sqrt(alpha_bar_t) magnifies every error of the network; Ho et al.'s code
    clips x0_hat for the same reason. With a perfect network nothing changes."""
    alpha_bar = float(schedule.alpha_bars[t])
    x0_hat = ((x_t - math.sqrt(1 - alpha_bar) * predicted_noise) / math.sqrt(alpha_bar)).clamp(
        -1, 1
    )
    return (x_t - math.sqrt(alpha_bar) * x0_hat) / math.sqrt(1 - alpha_bar)


def sampling_steps(total: int, steps: int) -> list[int]:
    """``steps`` evenly spaced steps of ``0..total-1``, from the last down to 0 (DDIM's subsequence)."""
    if not 1 <= steps <= total:
        raise SettingError(
            _("sampling steps must be 1 to {total}, got {steps}").format(total=total, steps=steps)
        )
    if steps == 1:  # one step: from pure noise straight to the clean image
        return [total - 1]
    return sorted({round(i * (total - 1) / (steps - 1)) for i in range(steps)}, reverse=True)


@torch.no_grad()
def sample(
    model: nn.Module,
    schedule: NoiseSchedule,
    count: int,
    method: str = "ddim",
    steps: int | None = None,
    eta: float = 0.0,
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
    clip: bool = True,
) -> torch.Tensor:
    """``count`` images ``(count, 1, 28, 28)`` in [-1, 1] from pure noise.

    ``method="ddpm"``: the ancestral chain over all T steps (``steps`` must be None or T).
    ``method="ddim"``: ``steps`` evenly spaced steps (default all), deterministic at ``eta = 0``.
    ``clip`` keeps each step's implied clean image in [-1, 1] (:func:`clipped_noise`).
    ``on_step(t, x)`` sees the chain (e.g. to draw it). Runs on the model's device, in eval mode."""
    if method not in ("ddpm", "ddim"):
        raise SettingError(
            _("the sampler must be ddpm or ddim, got {method}").format(method=repr(method))
        )
    total = schedule.steps
    if method == "ddpm" and steps not in (None, total):
        raise SettingError(
            _("DDPM takes every one of the {total} steps; use method='ddim' to skip steps").format(
                total=total
            )
        )
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = torch.randn((count, 1, 28, 28), generator=generator).to(device)
    times = sampling_steps(total, steps or total)
    try:
        for index, t in enumerate(times):
            t_batch = torch.full((count,), t, device=device, dtype=torch.long)
            predicted = (
                model(x, t_batch) if labels is None else model(x, t_batch, labels.to(device))
            )
            if clip:
                predicted = clipped_noise(x, t, predicted, schedule)
            if method == "ddim" and eta == 0:
                noise = None  # deterministic: nothing to draw
            elif generator is None:
                noise = torch.randn_like(x)
            else:
                noise = torch.randn(x.shape, generator=generator).to(device)
            if method == "ddpm":
                x = ddpm_step(x, t, predicted, schedule, noise)
            else:
                t_prev = times[index + 1] if index + 1 < len(times) else -1
                x = ddim_step(x, t, t_prev, predicted, schedule, eta, noise)
            if on_step is not None:
                on_step(t, x)
    finally:
        model.train(was_training)
    return x.clamp(-1, 1)


# --------------------------------------------------------------------------------------------
# The variational bound in bits per dimension (lesson 11)
# --------------------------------------------------------------------------------------------


def discretised_gaussian_nll(
    x0: torch.Tensor, mean: torch.Tensor, std: float, levels: int = 256
) -> torch.Tensor:
    """-log P(x0) in nats per image ``(B,)``, for images ``(B, ...)`` whose pixels are on the grid
    of ``levels`` values in [-1, 1], under N(mean, std^2) integrated over each pixel's bin (the end
    bins reach to infinity, so the probabilities of the levels sum to 1). Ho et al.'s decoder."""
    x0, mean = x0.double(), mean.double()
    half_bin = 1 / (levels - 1)
    normal = torch.distributions.Normal(0.0, 1.0)
    upper = torch.where(x0 > 1 - half_bin, math.inf, (x0 + half_bin - mean) / std)
    lower = torch.where(x0 < -1 + half_bin, -math.inf, (x0 - half_bin - mean) / std)
    probability = normal.cdf(upper) - normal.cdf(lower)
    return -probability.clamp_min(1e-12).log().flatten(1).sum(1)


@torch.no_grad()
def variational_bound_terms(
    model: nn.Module,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    generator: torch.Generator | None = None,
    clip: bool = True,
    images_per_pass: int = 64,
) -> torch.Tensor:
    """The terms of the bound -log p(x0) <= L_0 + L_1 + ... + L_{T-1} + L_T, in nats per image:
    ``(B, T + 1)`` for images ``x0`` ``(B, 1, H, W)`` on the 8-bit grid in [-1, 1].

    Column 0 is the decoder, -log p(x0 | x_t=0) (:func:`discretised_gaussian_nll`, std sqrt(beta_0));
    column t (1 .. T-1) is KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t)) at one draw of x_t, the
    model's step having the DDPM mean and variance beta_t; column T is KL(q(x_{T-1} | x0) ||
    N(0, I)). ``clip`` uses the sampler's clipped noise estimate (:func:`clipped_noise`), so the
    bound is that of the chain :func:`sample` runs. One network pass per step and image: T passes
    for each image, several steps to a pass when the batch is smaller than ``images_per_pass``
    (the noise drawn in the same order as one step at a time: the terms are the same up to float
    rounding, for a network that treats each image of its batch on its own, as in eval mode)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x0 = x0.to(device)
    batch, total = x0.shape[0], schedule.steps
    steps_per_pass = max(1, images_per_pass // max(batch, 1))
    terms = torch.zeros(batch, total + 1, dtype=torch.float64)
    try:
        for first in range(0, total, steps_per_pass):
            steps = range(first, min(first + steps_per_pass, total))
            noise = torch.cat([torch.randn(x0.shape, generator=generator) for _ in steps])
            t_batch = torch.tensor(steps, device=device).repeat_interleave(batch)  # (S * B,)
            x_t = q_sample(x0.repeat(len(steps), 1, 1, 1), t_batch, noise.to(device), schedule)
            predicted = model(x_t, t_batch)
            for index, t in enumerate(steps):
                rows = slice(index * batch, (index + 1) * batch)
                terms[:, t] = _bound_term(x0, x_t[rows], t, predicted[rows], schedule, clip).cpu()
    finally:
        model.train(was_training)
    alpha_bar_last = float(schedule.alpha_bars[-1])
    prior = kl_gaussians(
        math.sqrt(alpha_bar_last) * x0.double(),
        torch.tensor(math.sqrt(1 - alpha_bar_last), dtype=torch.float64),
        torch.tensor(0.0, dtype=torch.float64),
        torch.tensor(1.0, dtype=torch.float64),
    )
    terms[:, total] = prior.flatten(1).sum(1).cpu()
    return terms


def _bound_term(
    x0: torch.Tensor,
    x_t: torch.Tensor,
    t: int,
    predicted_noise: torch.Tensor,
    schedule: NoiseSchedule,
    clip: bool,
) -> torch.Tensor:
    """Column ``t`` of :func:`variational_bound_terms`, in nats per image ``(B,)``: the decoder's
    -log p(x0 | x_t) at t = 0, else KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t))."""
    if clip:
        predicted_noise = clipped_noise(x_t, t, predicted_noise, schedule)
    beta, alpha, alpha_bar = (
        float(v[t]) for v in (schedule.betas, schedule.alphas, schedule.alpha_bars)
    )
    model_mean = ddpm_mean(x_t, t, predicted_noise, schedule)
    if t == 0:
        return discretised_gaussian_nll(x0, model_mean, math.sqrt(beta))
    alpha_bar_prev = float(schedule.alpha_bars[t - 1])
    posterior_mean = (
        math.sqrt(alpha_bar_prev) * beta / (1 - alpha_bar) * x0
        + math.sqrt(alpha) * (1 - alpha_bar_prev) / (1 - alpha_bar) * x_t
    )
    posterior_std = math.sqrt(beta * (1 - alpha_bar_prev) / (1 - alpha_bar))
    kl = kl_gaussians(
        posterior_mean.double(),
        torch.tensor(posterior_std, dtype=torch.float64),
        model_mean.double(),
        torch.tensor(math.sqrt(beta), dtype=torch.float64),
    )
    return kl.flatten(1).sum(1)
