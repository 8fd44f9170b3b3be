"""Checks for lesson 01: entropy, KL divergence between categoricals and Gaussians, Monte Carlo KL."""

from __future__ import annotations

from collections.abc import Callable

import torch

from aigc_course import divergences
from aigc_course.checks._core import Case, run_check


def _distributions(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(2 * torch.randn(*shape, generator=generator), dim=-1)


def entropy(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(p)``: the entropy -sum p log p in nats along the last dimension."""
    uniform = torch.full((4,), 0.25)
    one_hot = torch.tensor([0.0, 1.0, 0.0])
    batch = _distributions(0, (3, 5))
    cases = [
        Case("uniform over 4 outcomes (answer: log 4)", (uniform,), divergences.entropy(uniform)),
        Case(
            "a certain outcome [0, 1, 0] (answer: 0)",
            (one_hot,),
            torch.tensor(0.0),
            hint="0 * log 0 is nan in floating point, but its limit is 0: use torch.xlogy(p, p), "
            "or torch.where(p > 0, p * p.log(), 0)",
        ),
        Case("a batch of 3 distributions", (batch,), divergences.entropy(batch)),
    ]
    hint = "sum over the last dimension (dim=-1), and mind the minus sign: entropy is >= 0"
    return run_check("entropy", function, cases, hint, strict)


def kl_categorical(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(p, q)``: KL(p || q) = sum p log(p / q) along the last dimension."""
    p, q = _distributions(1, (4, 6)), _distributions(2, (4, 6))
    with_zero = torch.tensor([0.5, 0.5, 0.0])
    target = torch.tensor([0.2, 0.3, 0.5])
    cases = [
        Case("p = q (answer: 0)", (p, p.clone()), torch.zeros(4)),
        Case("a batch of 4 pairs", (p, q), divergences.kl_categorical(p, q)),
        Case(
            "the other direction, KL(q || p)",
            (q, p),
            divergences.kl_categorical(q, p),
            hint="KL is not symmetric: the weights are p, the first argument",
        ),
        Case(
            "p with a zero entry",
            (with_zero, target),
            divergences.kl_categorical(with_zero, target),
            hint="terms where p = 0 contribute 0: use torch.xlogy(p, p) - torch.xlogy(p, q)",
        ),
    ]
    hint = "KL(p || q) = sum over the last dimension of p * (log p - log q)"
    return run_check("kl_categorical", function, cases, hint, strict)


def kl_gaussians(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(mean_p, std_p, mean_q, std_q)``: the closed-form KL of 1-D Gaussians."""
    generator = torch.Generator().manual_seed(3)
    mean_p, mean_q = torch.randn(5, generator=generator), torch.randn(5, generator=generator)
    std_p = torch.rand(5, generator=generator) + 0.5
    std_q = torch.rand(5, generator=generator) + 0.5
    one, zero = torch.tensor(1.0), torch.tensor(0.0)
    cases = [
        Case("N(0, 1) against itself (answer: 0)", (zero, one, zero, one), torch.tensor(0.0)),
        Case(
            "N(1, 1) || N(0, 1) (answer: 1/2)",
            (one, one, zero, one),
            torch.tensor(0.5),
            hint="with equal variances the KL is (mean_p - mean_q)^2 / (2 std^2)",
        ),
        Case(
            "N(0, 1) || N(0, 2^2)",
            (zero, one, zero, torch.tensor(2.0)),
            divergences.kl_gaussians(zero, one, zero, torch.tensor(2.0)),
            hint="the formula uses standard deviations: log(std_q / std_p) + "
            "(std_p^2 + (mean_p - mean_q)^2) / (2 std_q^2) - 1/2",
        ),
        Case(
            "5 random pairs",
            (mean_p, std_p, mean_q, std_q),
            divergences.kl_gaussians(mean_p, std_p, mean_q, std_q),
        ),
    ]
    hint = "log(std_q / std_p) + (std_p^2 + (mean_p - mean_q)^2) / (2 std_q^2) - 1/2"
    return run_check("kl_gaussians", function, cases, hint, strict)


def monte_carlo_kl(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(samples, log_p, log_q)``: the Monte Carlo estimate of KL(p || q)."""
    generator = torch.Generator().manual_seed(4)
    samples = torch.randn(1000, generator=generator)

    def log_p(x: torch.Tensor) -> torch.Tensor:
        return divergences.normal_log_prob(x, torch.tensor(0.0), torch.tensor(1.0))

    def log_q(x: torch.Tensor) -> torch.Tensor:
        return divergences.normal_log_prob(x, torch.tensor(1.0), torch.tensor(2.0))

    expected = (log_p(samples) - log_q(samples)).mean()
    cases = [
        Case(
            "1000 samples of N(0, 1) against N(1, 2^2)",
            (samples, log_p, log_q),
            expected,
            hint="the estimate is the average of log p(x) - log q(x) over the samples; return a "
            "0-dim tensor (use .mean())",
        ),
        Case(
            "the same samples, p = q (answer: exactly 0)",
            (samples, log_p, log_p),
            torch.tensor(0.0),
        ),
    ]
    hint = "average log_p(samples) - log_q(samples): the samples come from p"
    return run_check("monte_carlo_kl", function, cases, hint, strict)
