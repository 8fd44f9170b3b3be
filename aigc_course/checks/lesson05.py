"""Checks for lesson 05: the reparameterised sample, the KL to the prior, the ELBO, REINFORCE."""

from __future__ import annotations

from collections.abc import Callable

import torch

from aigc_course import divergences, elbo
from aigc_course.checks._core import Case, run_check


def _mean_logvar(seed: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator), torch.randn(*shape, generator=generator)


def reparameterised_sample(
    function: Callable[..., torch.Tensor], *, strict: bool | None = None
) -> bool:
    """Check ``function(mu, logvar, eps)``: z = mu + exp(logvar / 2) * eps."""
    mu, logvar = _mean_logvar(0, (3, 4))
    eps = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    log4 = torch.log(torch.tensor([4.0]))
    cases = [
        Case(
            "mu = 0, logvar = log 4 (sigma = 2), eps = 1 (answer: 2)",
            (torch.zeros(1), log4, torch.ones(1)),
            torch.tensor([2.0]),
            hint="logvar is log(sigma^2), so sigma = exp(logvar / 2), not exp(logvar) or logvar",
        ),
        Case("a batch (3, 4)", (mu, logvar, eps), elbo.reparameterised_sample(mu, logvar, eps)),
    ]
    hint = "z = mu + sigma * eps with sigma = torch.exp(0.5 * logvar)"
    return run_check("reparameterised_sample", function, cases, hint, strict)


def kl_to_standard_normal(
    function: Callable[..., torch.Tensor], *, strict: bool | None = None
) -> bool:
    """Check ``function(mu, logvar)``: KL(N(mu, diag(exp(logvar))) || N(0, I)), summed over dim -1."""
    mu, logvar = _mean_logvar(2, (5, 3))
    cases = [
        Case(
            "mu = 0, logvar = 0 (q is the prior; answer: 0)",
            (torch.zeros(2, 3), torch.zeros(2, 3)),
            torch.zeros(2),
        ),
        Case(
            "a batch of 5 posteriors over 3 latent dimensions",
            (mu, logvar),
            divergences.kl_standard_normal(mu, logvar),
            hint="-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(-1): note the leading minus sign; "
            "a KL is never negative",
        ),
    ]
    hint = "sum over the latent dimensions (dim=-1), one KL per example"
    return run_check("kl_to_standard_normal", function, cases, hint, strict)


def gaussian_elbo(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(log_likelihood, mu, logvar)``: ELBO = log p(x | z) - KL(q || N(0, I))."""
    mu, logvar = _mean_logvar(3, (4, 2))
    log_likelihood = -torch.rand(4, generator=torch.Generator().manual_seed(4)) * 100
    expected = log_likelihood - divergences.kl_standard_normal(mu, logvar)
    cases = [
        Case(
            "a batch of 4",
            (log_likelihood, mu, logvar),
            expected,
            hint="the ELBO subtracts the KL: reconstruction term minus KL(q(z|x) || p(z))",
        ),
    ]
    hint = "log_likelihood - (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(-1))"
    return run_check("gaussian_elbo", function, cases, hint, strict)


def score_function_estimate(
    function: Callable[..., torch.Tensor], *, strict: bool | None = None
) -> bool:
    """Check ``function(f_values, z, mean, std)``: mean of f(z) * (z - mean) / std^2."""
    generator = torch.Generator().manual_seed(5)
    z = 1.0 + 2.0 * torch.randn(1000, generator=generator)
    f_values = (z - 3.0) ** 2
    expected = (f_values * (z - 1.0) / 4.0).mean()
    cases = [
        Case(
            "1000 samples of N(1, 2^2), f(z) = (z - 3)^2",
            (f_values, z, 1.0, 2.0),
            expected,
            hint="d/d mean log N(z; mean, std^2) = (z - mean) / std^2 (divide by the variance, "
            "not the standard deviation)",
            rtol=1e-4,
            atol=1e-4,
        ),
    ]
    hint = "(f_values * (z - mean) / std**2).mean()"
    return run_check("score_function_estimate", function, cases, hint, strict)
