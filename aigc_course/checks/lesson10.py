"""Checks for lesson 10: noising in closed form, the training loss, one DDPM step, one DDIM step."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from aigc_course.checks._core import (
    Case,
    Draws,
    draw_choice,
    draw_dtype,
    draw_int,
    randn,
    run_check,
)
from aigc_course.i18n import _
from aigc_course.models import diffusion
from aigc_course.models.diffusion import NoiseSchedule
from aigc_course.models.unet import UNet, UNetConfig

# A short chain whose alphas, alpha_bars and betas all differ clearly, and steps per image that differ
_SCHEDULE = NoiseSchedule.make("linear", 50)
_T = torch.tensor([3, 25, 49])


def _images(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.rand(3, 1, 4, 4, generator=generator) * 2 - 1
    return x0, torch.randn(3, 1, 4, 4, generator=generator)


def _column(values: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return values[t].view(-1, 1, 1, 1)


def q_sample(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(x0, t, noise, schedule)``: x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps.

    Drawn: batches of 1 to 5 images of 1 to 6 pixels a side, linear and cosine schedules of 10
    to 1000 steps, steps per image including t = 0 and t = T - 1, float32 and float64; values
    and gradients."""
    x0, noise = _images(1)
    s = _SCHEDULE
    a, alpha = _column(s.alpha_bars, _T), _column(s.alphas, _T)
    first = s.alpha_bars[_T[0]]
    mistakes = {
        _(
            "the square roots are swapped: the signal is scaled by sqrt(alpha_bar_t), the noise "
            "by sqrt(1 - alpha_bar_t)"
        ): (1 - a).sqrt() * x0 + a.sqrt() * noise,
        _(
            "use alpha_bar_t (the product of all alphas up to t), not alpha_t: x_t comes from x_0 "
            "in one jump"
        ): alpha.sqrt() * x0 + (1 - alpha).sqrt() * noise,
        _(
            "scale by the standard deviations sqrt(alpha_bar_t) and sqrt(1 - alpha_bar_t), not by "
            "the variances"
        ): [a * x0 + (1 - a) * noise, a.sqrt() * x0 + (1 - a) * noise],
        _(
            "each image has its own step: index the schedule with t (B,) and reshape to "
            "(B, 1, 1, 1), not one step for the batch"
        ): first.sqrt() * x0 + (1 - first).sqrt() * noise,
    }
    cases = [
        Case(
            _("three images at steps 3, 25 and 49 of a 50-step linear schedule"),
            (x0, _T, noise, s),
            diffusion.q_sample(x0, _T, noise, s),
            mistakes=mistakes,
        )
    ]
    hint = _(
        "a = schedule.alpha_bars[t].view(-1, 1, 1, 1); return a.sqrt() * x0 + (1 - a).sqrt() * noise"
    )
    return run_check("q_sample", function, cases, hint, strict, Q_SAMPLE)


def _tiny_unet() -> UNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(21)
        model = UNet(UNetConfig(channels=8, groups=4))
        torch.nn.init.normal_(model.out[-1].weight, std=0.2)  # open the zero-initialised output
    return model.eval()


def training_loss(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(model, x0, t, noise, schedule)``: the mean squared error between ``noise``
    and ``model(x_t, t)``, with x_t from :func:`q_sample`.

    Drawn: schedules, 1 to 3 images at steps including 0 and T - 1; values and gradients (a loss
    without a graph fails).
    """
    model = _tiny_unet()
    generator = torch.Generator().manual_seed(2)
    x0 = torch.rand(3, 1, 28, 28, generator=generator) * 2 - 1
    noise = torch.randn(3, 1, 28, 28, generator=generator)
    s = _SCHEDULE
    with torch.no_grad():
        x_t = diffusion.q_sample(x0, _T, noise, s)
        predicted = model(x_t, _T)
        expected = ((predicted - noise) ** 2).mean()
        mistakes = {
            _("the network predicts the *noise*: compare its output with noise, not with x0"): (
                (predicted - x0) ** 2
            ).mean(),
            _(
                "the network reads the noised image x_t (q_sample(x0, t, noise)), not the clean x0"
            ): ((model(x0, _T) - noise) ** 2).mean(),
            _(
                "tell the network the step: model(x_t, t); it denoises every noise level with one "
                "set of weights"
            ): ((model(x_t, torch.zeros_like(_T)) - noise) ** 2).mean(),
            _("the loss is the *mean* squared error (over images and pixels), not the sum"): (
                (predicted - noise) ** 2
            ).sum(),
        }
    cases = [
        Case(
            _("a small U-Net, three 28x28 images at steps 3, 25 and 49"),
            (model, x0, _T, noise, s),
            expected,
            mistakes=mistakes,
        )
    ]
    hint = _("x_t = q_sample(x0, t, noise); return ((model(x_t, t) - noise) ** 2).mean()")
    return run_check("training_loss", function, cases, hint, strict, TRAINING_LOSS)


def ddpm_step(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(x_t, t, predicted_noise, schedule, z)``: one reverse step x_t -> x_{t-1},
    mean 1/sqrt(alpha_t) (x_t - beta_t / sqrt(1 - alpha_bar_t) eps), plus sqrt(beta_t) z if t > 0.

    Edge cases: t = 0 (no noise), t = 1, t = T - 1. Drawn: schedules of 10 to 1000 steps (t = 0
    and T - 1 among them), image sizes, float32 and float64; values and gradients.
    """
    x_t, eps = _images(3)
    z = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(4))
    s = _SCHEDULE

    def case(t: int) -> Case:
        beta, alpha, a = (float(v[t]) for v in (s.betas, s.alphas, s.alpha_bars))
        mean = (x_t - beta / math.sqrt(1 - a) * eps) / math.sqrt(alpha)
        noise_term = math.sqrt(beta) * z if t else 0
        mistakes = {
            _("divide by sqrt(alpha_t), the one step's alpha, not sqrt(alpha_bar_t)"): (
                x_t - beta / math.sqrt(1 - a) * eps
            )
            / math.sqrt(a)
            + noise_term,
            _("the noise term is beta_t / sqrt(1 - alpha_bar_t) times eps, subtracted"): [
                (x_t + beta / math.sqrt(1 - a) * eps) / math.sqrt(alpha) + noise_term,
                (x_t - beta / (1 - a) * eps) / math.sqrt(alpha) + noise_term,
            ],
        }
        a_prev = float(s.alpha_bars[t - 1]) if t > 0 else 1.0
        beta_tilde = (1 - a_prev) / (1 - a) * beta
        mistakes[
            _(
                "sigma_t^2 = beta_tilde_t (the posterior variance) is Ho et al.'s other valid "
                "choice, but this exercise (and the course's sampler) uses sigma_t^2 = beta_t"
            )
        ] = mean + math.sqrt(beta_tilde) * z
        if t == 1:
            mistakes[
                _(
                    "steps are numbered from 0 here: add noise at every t > 0 (the paper's t = 1 "
                    "is the code's t = 0)"
                )
            ] = mean
        if t == 0:
            mistakes[_("the last step (t = 0) adds no noise: it returns the mean")] = (
                mean + math.sqrt(beta) * z
            )
        else:
            mistakes[
                _(
                    "add sigma_t z with the standard deviation sigma_t = sqrt(beta_t), not the "
                    "variance beta_t"
                )
            ] = mean + beta * z
            mistakes[
                _(
                    "add fresh noise sqrt(beta_t) z at every step but the last: without it the "
                    "chain collapses to blurry averages"
                )
            ] = mean
        expected = diffusion.ddpm_step(x_t, t, eps, s, noise=z)
        return Case(
            _("step t = {step}").format(step=t), (x_t, t, eps, s, z), expected, mistakes=mistakes
        )

    hint = _(
        "mean = (x_t - beta_t / sqrt(1 - alpha_bar_t) * eps) / sqrt(alpha_t); "
        "return mean + sqrt(beta_t) * z if t > 0 else mean"
    )
    return run_check(
        "ddpm_step", function, [case(25), case(1), case(0), case(49)], hint, strict, DDPM_STEP
    )


def ddim_step(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(x_t, t, t_prev, predicted_noise, schedule)``: one deterministic DDIM step
    (eta = 0) from step t to the earlier t_prev (-1: to the clean image, alpha_bar = 1).

    Edge cases: t_prev = 0 and -1 (the clean image), the first and last steps. Drawn: linear and
    cosine schedules of 10 to 1000 steps, image sizes, float32 and float64; values and
    gradients.
    """
    x_t, eps = _images(5)
    s = _SCHEDULE

    def case(t: int, t_prev: int) -> Case:
        a = float(s.alpha_bars[t])
        a_prev = float(s.alpha_bars[t_prev]) if t_prev >= 0 else 1.0
        x0_hat = (x_t - math.sqrt(1 - a) * eps) / math.sqrt(a)
        alpha, alpha_prev = float(s.alphas[t]), float(s.alphas[t_prev])
        mistakes = {
            _(
                "use alpha_bar (the cumulative product), not alpha, in both the x0 estimate and "
                "the step"
            ): math.sqrt(alpha_prev) * (x_t - math.sqrt(1 - alpha) * eps) / math.sqrt(alpha)
            + math.sqrt(1 - alpha_prev) * eps,
            _(
                "move along the predicted noise too: x_prev = sqrt(alpha_bar_prev) x0_hat + "
                "sqrt(1 - alpha_bar_prev) eps"
            ): math.sqrt(a_prev) * x0_hat,
            _("the x0 estimate divides by sqrt(alpha_bar_t) of the *current* step t"): (
                math.sqrt(a_prev) * (x_t - math.sqrt(1 - a) * eps) / math.sqrt(a_prev)
                + math.sqrt(1 - a_prev) * eps
            ),
            _(
                "the square roots are swapped: "
                "x0_hat = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar)"
            ): (
                math.sqrt(a_prev) * (x_t - math.sqrt(a) * eps) / math.sqrt(1 - a)
                + math.sqrt(1 - a_prev) * eps
            ),
        }
        if t_prev == 0:
            mistakes = {
                _(
                    "only t_prev = -1 means the clean image (alpha_bar = 1): step 0 is the first "
                    "noising step, alpha_bar_0 = alpha_bars[0] (steps are numbered from 0 here)"
                ): x0_hat,
            }
        if t_prev < 0:
            last = float(s.alpha_bars[-1])
            mistakes = {
                _(
                    "t_prev = -1 means the clean image: alpha_bar_prev = 1 (not alpha_bars[-1], "
                    "the *last* step's)"
                ): math.sqrt(last) * x0_hat + math.sqrt(1 - last) * eps,
            }
        expected = diffusion.ddim_step(x_t, t, t_prev, eps, s)
        return Case(
            _("from step {step} to {previous}").format(step=t, previous=t_prev),
            (x_t, t, t_prev, eps, s),
            expected,
            mistakes=mistakes,
        )

    hint = _(
        "x0_hat = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t); return sqrt(a_prev) x0_hat + "
        "sqrt(1 - a_prev) eps, with a = alpha_bars and a_prev = 1 when t_prev = -1"
    )
    cases = [case(30, 20), case(10, 0), case(2, -1), case(49, 48), case(0, -1)]
    return run_check("ddim_step", function, cases, hint, strict, DDIM_STEP)


# --- inputs drawn per call: schedules, lengths, batch and image sizes, the first and last step -----


def _draw_schedule(generator: torch.Generator) -> NoiseSchedule:
    steps = draw_choice(generator, (10, 50, 1000))
    return NoiseSchedule.make(draw_choice(generator, ("linear", "cosine")), steps)


def _draw_steps(generator: torch.Generator, steps: int, batch: int) -> torch.Tensor:
    t = torch.randint(0, steps, (batch,), generator=generator)
    edge = draw_choice(generator, ("none", "first", "last"))
    if edge != "none":
        t[0] = 0 if edge == "first" else steps - 1
    return t


def _draw_images(generator: torch.Generator, size: int | None = None):
    dtype, batch = draw_dtype(generator), draw_int(generator, 1, 5)
    side = size or draw_int(generator, 1, 6)
    return (
        dtype,
        batch,
        [randn(generator, batch, 1, side, side, dtype=dtype) for _image in range(3)],
    )


def _draw_q_sample(generator: torch.Generator) -> tuple[str, tuple, dict]:
    schedule = _draw_schedule(generator)
    dtype, batch, (x0, noise, _unused) = _draw_images(generator)
    t = _draw_steps(generator, schedule.steps, batch)
    description = _("x0 {shape} at steps {steps} of {total}, {dtype}").format(
        shape=tuple(x0.shape), steps=t.tolist(), total=schedule.steps, dtype=dtype
    )
    return description, (x0, t, noise, schedule), {}


def _draw_training_loss(generator: torch.Generator) -> tuple[str, tuple, dict]:
    schedule = _draw_schedule(generator)
    batch = draw_int(generator, 1, 3)
    x0, noise = randn(generator, batch, 1, 28, 28), randn(generator, batch, 1, 28, 28)
    t = _draw_steps(generator, schedule.steps, batch)
    description = _("{count} images at steps {steps} of {total}").format(
        count=batch, steps=t.tolist(), total=schedule.steps
    )
    return description, (_tiny_unet(), x0, t, noise, schedule), {}


def _training_loss_reference(model, x0, t, noise, schedule) -> torch.Tensor:
    return ((model(diffusion.q_sample(x0, t, noise, schedule), t) - noise) ** 2).mean()


def _draw_ddpm(generator: torch.Generator) -> tuple[str, tuple, dict]:
    schedule = _draw_schedule(generator)
    dtype, _batch, (x_t, eps, z) = _draw_images(generator)
    t = int(_draw_steps(generator, schedule.steps, 1)[0])
    description = _("x_t {shape} at step {step} of {total}, {dtype}").format(
        shape=tuple(x_t.shape), step=t, total=schedule.steps, dtype=dtype
    )
    return description, (x_t, t, eps, schedule, z), {}


def _ddpm_reference(x_t, t, eps, schedule, z) -> torch.Tensor:
    return diffusion.ddpm_step(x_t, t, eps, schedule, noise=z)


def _draw_ddim(generator: torch.Generator) -> tuple[str, tuple, dict]:
    schedule = _draw_schedule(generator)
    dtype, _batch, (x_t, eps, _unused) = _draw_images(generator)
    t = int(_draw_steps(generator, schedule.steps, 1)[0])
    t_prev = draw_int(generator, -1, t - 1)
    description = _("x_t {shape} from step {step} to {previous} of {total}, {dtype}").format(
        shape=tuple(x_t.shape), step=t, previous=t_prev, total=schedule.steps, dtype=dtype
    )
    return description, (x_t, t, t_prev, eps, schedule), {}


Q_SAMPLE = Draws(_draw_q_sample, diffusion.q_sample, gradients=True)
TRAINING_LOSS = Draws(_draw_training_loss, _training_loss_reference, count=2, gradients=True)
DDPM_STEP = Draws(_draw_ddpm, _ddpm_reference, gradients=True)
DDIM_STEP = Draws(_draw_ddim, diffusion.ddim_step, gradients=True)
q_sample.draws = Q_SAMPLE
training_loss.draws = TRAINING_LOSS
ddpm_step.draws = DDPM_STEP
ddim_step.draws = DDIM_STEP
