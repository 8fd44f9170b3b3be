"""Checks for lesson 05: the reparameterised sample, the KL to the prior, the ELBO, REINFORCE."""

from __future__ import annotations

from collections.abc import Callable

import torch

from aigc_course import divergences, elbo
from aigc_course.checks._core import (
    Case,
    Draws,
    draw_choice,
    draw_dtype,
    draw_int,
    draw_shape,
    randn,
    run_check,
)
from aigc_course.i18n import _


def _mean_logvar(seed: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator), torch.randn(*shape, generator=generator)


def reparameterised_sample(
    function: Callable[..., torch.Tensor], *, strict: bool | None = None
) -> bool:
    """Check ``function(mu, logvar, eps)``: z = mu + exp(logvar / 2) * eps.

    Edge cases: logvar = log 4 (sigma 2). Drawn: 1 to 3 dimensions, float32 and float64; values
    and gradients.
    """
    mu, logvar = _mean_logvar(0, (3, 4))
    eps = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    log4 = torch.log(torch.tensor([4.0]))

    def mistakes(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor):
        return {
            _(
                "sigma = exp(logvar / 2): logvar is log(sigma^2), so exp(logvar) is the variance, "
                "not the standard deviation"
            ): mu + torch.exp(logvar) * eps,
            _("sigma = exp(logvar / 2): logvar is log(sigma^2), not sigma itself"): mu
            + logvar * eps,
            _("sigma = exp(logvar / 2): you halved logvar but forgot the exp"): mu
            + 0.5 * logvar * eps,
            _("add the mean: z = mu + sigma * eps"): torch.exp(0.5 * logvar) * eps,
        }

    zero_noise = torch.zeros(3, 4)
    cases = [
        Case(
            _("eps = 0 (answer: exactly mu)"),
            (mu, logvar, zero_noise),
            mu.clone(),
            hint=_(
                "use the eps you are given (do not draw new noise with torch.randn): with eps = 0 "
                "the sample is the mean"
            ),
            mistakes=mistakes(mu, logvar, zero_noise),
        ),
        Case(
            _("mu = 0, logvar = log 4 (sigma = 2), eps = 1 (answer: 2)"),
            (torch.zeros(1), log4, torch.ones(1)),
            torch.tensor([2.0]),
            hint=_("logvar is log(sigma^2), so sigma = exp(logvar / 2), not exp(logvar) or logvar"),
            mistakes=mistakes(torch.zeros(1), log4, torch.ones(1)),
        ),
        Case(
            _("a batch (3, 4)"),
            (mu, logvar, eps),
            elbo.reparameterised_sample(mu, logvar, eps),
            mistakes=mistakes(mu, logvar, eps),
        ),
    ]
    hint = _("z = mu + sigma * eps with sigma = torch.exp(0.5 * logvar)")
    return run_check("reparameterised_sample", function, cases, hint, strict, SAMPLE)


def _kl_prior_mistakes(mu: torch.Tensor, logvar: torch.Tensor) -> dict[str, torch.Tensor]:
    terms = 1 + logvar - mu**2 - logvar.exp()
    return {
        _(
            "the sign: KL = -1/2 sum(1 + logvar - mu^2 - exp(logvar)), and a KL is never negative"
        ): 0.5 * terms.sum(-1),
        _(
            "sum over the latent dimensions (dim=-1), one KL per example: you summed over dim 0, "
            "across the batch"
        ): -0.5 * terms.sum(0),
        _(
            "sum over the latent dimensions only (dim=-1), one KL per example, not over the whole "
            "batch"
        ): -0.5 * terms.sum(),
        _(
            "sum over the latent dimensions, do not average them: the KL of independent "
            "dimensions adds up"
        ): -0.5 * terms.mean(-1),
        _("the mu^2 term is missing: -1/2 sum(1 + logvar - mu^2 - exp(logvar))"): -0.5
        * (1 + logvar - logvar.exp()).sum(-1),
        _(
            "logvar is log(sigma^2), so sigma^2 = exp(logvar) and log sigma^2 = logvar (you "
            "treated it as log sigma)"
        ): -0.5 * (1 + 2 * logvar - mu**2 - (2 * logvar).exp()).sum(-1),
        _("the factor 1/2: KL = -1/2 sum(1 + logvar - mu^2 - exp(logvar))"): -terms.sum(-1),
    }


def kl_to_standard_normal(
    function: Callable[..., torch.Tensor], *, strict: bool | None = None
) -> bool:
    """Check ``function(mu, logvar)``: KL(N(mu, diag(exp(logvar))) || N(0, I)), summed over dim -1.

    Edge cases: mu = 0, logvar = 0 (0). Drawn: 1 to 3 dimensions (the sum is over the last),
    float32 and float64; values and gradients.
    """
    mu, logvar = _mean_logvar(2, (5, 3))
    zeros = torch.zeros(2, 3)
    cases = [
        Case(
            _("mu = 0, logvar = 0 (q is the prior; answer: 0)"),
            (zeros, zeros.clone()),
            torch.zeros(2),
            mistakes=_kl_prior_mistakes(zeros, zeros),
        ),
        Case(
            _("a batch of 5 posteriors over 3 latent dimensions"),
            (mu, logvar),
            divergences.kl_standard_normal(mu, logvar),
            hint=_(
                "-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(-1): note the leading minus sign; "
                "a KL is never negative"
            ),
            mistakes=_kl_prior_mistakes(mu, logvar),
        ),
    ]
    hint = _("sum over the latent dimensions (dim=-1), one KL per example")
    return run_check("kl_to_standard_normal", function, cases, hint, strict, KL_PRIOR)


def gaussian_elbo(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(log_likelihood, mu, logvar)``: ELBO = log p(x | z) - KL(q || N(0, I)).

    Drawn: batches and latent sizes 1 to 6, float32 and float64; values and gradients.
    """
    mu, logvar = _mean_logvar(3, (4, 2))
    log_likelihood = -torch.rand(4, generator=torch.Generator().manual_seed(4)) * 100
    kl = divergences.kl_standard_normal(mu, logvar)
    mistakes = {
        _(
            "the ELBO *subtracts* the KL: log p(x | z) - KL(q(z | x) || p(z)) (check the sign of "
            "your KL: it is -1/2 sum(1 + logvar - mu^2 - exp(logvar)) >= 0)"
        ): log_likelihood + kl,
        _("that is the negative ELBO (the VAE's loss): the ELBO itself is log p(x | z) - KL"): kl
        - log_likelihood,
        _(
            "one KL per example: sum the KL over the latent dimensions (dim=-1), not over the batch"
        ): log_likelihood - kl.sum(),
        _("sum the KL over the latent dimensions, do not average them"): log_likelihood
        - kl / mu.shape[-1],
    }
    cases = [
        Case(
            _("a batch of 4"),
            (log_likelihood, mu, logvar),
            log_likelihood - kl,
            hint=_("the ELBO subtracts the KL: reconstruction term minus KL(q(z|x) || p(z))"),
            mistakes=mistakes,
        ),
    ]
    hint = _("log_likelihood - (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(-1))")
    return run_check("gaussian_elbo", function, cases, hint, strict, ELBO)


def score_function_estimate(
    function: Callable[..., torch.Tensor], *, strict: bool | None = None
) -> bool:
    """Check ``function(f_values, z, mean, std)``: mean of f(z) * (z - mean) / std^2.

    Drawn: 1 to 200 samples, three means and three standard deviations (two wrong formulas agree
    at std = 1), float32 and float64; values and gradients.
    """
    generator = torch.Generator().manual_seed(5)
    z = 1.0 + 2.0 * torch.randn(1000, generator=generator)
    f_values = (z - 3.0) ** 2
    score = (z - 1.0) / 4.0  # d/d mean log N(z; mean = 1, std = 2)
    mistakes = {
        _(
            "divide by the variance std^2, not the standard deviation: d/d mean log N(z; mean, "
            "std^2) = (z - mean) / std^2"
        ): (f_values * (z - 1.0) / 2.0).mean(),
        _(
            "multiply the score by f(z): the estimate is the mean of f(z) * (z - mean) / std^2 "
            "(the score alone averages to 0)"
        ): score.mean(),
        _("the sign: the score is (z - mean) / std^2, not (mean - z) / std^2"): -(
            f_values * score
        ).mean(),
        _("average over the samples (.mean()), not the sum"): (f_values * score).sum(),
        _("the score is (z - mean) / std^2: divide by std^2"): (f_values * (z - 1.0)).mean(),
    }
    cases = [
        Case(
            _("1000 samples of N(1, 2^2), f(z) = (z - 3)^2"),
            (f_values, z, 1.0, 2.0),
            (f_values * score).mean(),
            mistakes=mistakes,
            hint=_(
                "d/d mean log N(z; mean, std^2) = (z - mean) / std^2 (divide by the variance, "
                "not the standard deviation)"
            ),
        ),
    ]
    hint = _("(f_values * (z - mean) / std**2).mean()")
    return run_check("score_function_estimate", function, cases, hint, strict, SCORE)


# --- inputs drawn per call: any number of dimensions, latent sizes, several means and std's --------


def _draw_mu_logvar(generator: torch.Generator, dtype, shape) -> tuple[torch.Tensor, torch.Tensor]:
    return randn(generator, *shape, dtype=dtype), randn(generator, *shape, dtype=dtype)


def _draw_sample(generator: torch.Generator) -> tuple[str, tuple, dict]:
    dtype, shape = draw_dtype(generator), draw_shape(generator, 1, 3)
    mu, logvar = _draw_mu_logvar(generator, dtype, shape)
    eps = randn(generator, *shape, dtype=dtype)
    description = _("mu, logvar and eps of shape {shape}, {dtype}").format(shape=shape, dtype=dtype)
    return description, (mu, logvar, eps), {}


def _draw_prior(generator: torch.Generator) -> tuple[str, tuple, dict]:
    dtype, shape = draw_dtype(generator), draw_shape(generator, 1, 3)
    description = _("mu and logvar of shape {shape}, {dtype}").format(shape=shape, dtype=dtype)
    return description, _draw_mu_logvar(generator, dtype, shape), {}


def _draw_elbo(generator: torch.Generator) -> tuple[str, tuple, dict]:
    dtype, batch, latent = (
        draw_dtype(generator),
        draw_int(generator, 1, 6),
        draw_int(generator, 1, 6),
    )
    mu, logvar = _draw_mu_logvar(generator, dtype, (batch, latent))
    log_likelihood = -50 * randn(generator, batch, dtype=dtype).abs()
    description = _("a batch of {batch}, {latent} latents, {dtype}").format(
        batch=batch, latent=latent, dtype=dtype
    )
    return description, (log_likelihood, mu, logvar), {}


def _elbo_reference(log_likelihood, mu, logvar) -> torch.Tensor:
    return log_likelihood - divergences.kl_standard_normal(mu, logvar)


def _draw_score(generator: torch.Generator) -> tuple[str, tuple, dict]:
    dtype, n = draw_dtype(generator), draw_int(generator, 1, 200)
    mean, std = draw_choice(generator, (-2.0, 0.0, 1.5)), draw_choice(generator, (0.5, 1.0, 3.0))
    z = mean + std * randn(generator, n, dtype=dtype)
    f_values = (z - draw_choice(generator, (0.0, 3.0))) ** 2
    description = _("{count} samples of N({mean}, {std}^2), {dtype}").format(
        count=n, mean=f"{mean:g}", std=f"{std:g}", dtype=dtype
    )
    return description, (f_values, z, mean, std), {}


def _score_reference(f_values, z, mean, std) -> torch.Tensor:
    return (f_values * (z - mean) / std**2).mean()


SAMPLE = Draws(_draw_sample, elbo.reparameterised_sample, gradients=True)
KL_PRIOR = Draws(
    _draw_prior, divergences.kl_standard_normal, gradients=True, mistakes=_kl_prior_mistakes
)
ELBO = Draws(_draw_elbo, _elbo_reference, gradients=True)
SCORE = Draws(_draw_score, _score_reference, gradients=True)
reparameterised_sample.draws = SAMPLE
kl_to_standard_normal.draws = KL_PRIOR
gaussian_elbo.draws = ELBO
score_function_estimate.draws = SCORE
