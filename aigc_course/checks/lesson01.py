"""Checks for lesson 01: entropy, KL divergence between categoricals and Gaussians, Monte Carlo KL."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from aigc_course import divergences
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


def _distributions(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(2 * torch.randn(*shape, generator=generator), dim=-1)


def _entropy_mistakes(p: torch.Tensor) -> dict[str, torch.Tensor]:
    plogp = torch.xlogy(p, p)
    mistakes = {
        _(
            "the sign: entropy is -sum p log p, which is >= 0 (you returned +sum p log p)"
        ): plogp.sum(-1),
        _(
            "0 * log 0 gave nan: its limit is 0, so use torch.xlogy(p, p) (or "
            "torch.where(p > 0, p * p.log(), 0))"
        ): -(p * p.log()).sum(-1),
        _(
            "the units: the course measures entropy in nats, with the natural log (you returned "
            "bits, log base 2)"
        ): -plogp.sum(-1) / math.log(2),
        _("sum over the outcomes, not the mean: -(p * log p).sum(dim=-1)"): -plogp.mean(-1),
    }
    if p.ndim > 1:
        mistakes[
            _(
                "sum over the last dimension (dim=-1), one entropy per distribution: you "
                "summed over dim 0, across the batch"
            )
        ] = -plogp.sum(0)
        mistakes[
            _(
                "sum over the last dimension only (dim=-1), one entropy per distribution: you "
                "summed over the whole batch"
            )
        ] = -plogp.sum()
    return mistakes


def entropy(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(p)``: the entropy -sum p log p in nats along the last dimension.

    Edge cases: a uniform distribution, a certain outcome (0 log 0). Drawn: 1 to 3 dimensions,
    strictly positive p, float32 and float64; values, and gradients along the simplex.
    """
    uniform = torch.full((4,), 0.25)
    one_hot = torch.tensor([0.0, 1.0, 0.0])
    batch = _distributions(0, (3, 5))
    cases = [
        Case(
            _("uniform over 4 outcomes (answer: log 4)"),
            (uniform,),
            divergences.entropy(uniform),
            mistakes=_entropy_mistakes(uniform),
        ),
        Case(
            _("a certain outcome [0, 1, 0] (answer: 0)"),
            (one_hot,),
            torch.tensor(0.0),
            hint=_(
                "0 * log 0 is nan in floating point, but its limit is 0: use torch.xlogy(p, p), "
                "or torch.where(p > 0, p * p.log(), 0)"
            ),
            mistakes=_entropy_mistakes(one_hot),
        ),
        Case(
            _("a batch of 3 distributions"),
            (batch,),
            divergences.entropy(batch),
            mistakes=_entropy_mistakes(batch),
        ),
    ]
    hint = _("sum over the last dimension (dim=-1), and mind the minus sign: entropy is >= 0")
    return run_check("entropy", function, cases, hint, strict, ENTROPY)


def _kl_categorical_mistakes(p: torch.Tensor, q: torch.Tensor) -> dict[str, torch.Tensor]:
    kl = (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(-1)
    mistakes = {
        _("you computed KL(q || p): KL is not symmetric; the weights are p, the first argument"): (
            torch.xlogy(q, q) - torch.xlogy(q, p)
        ).sum(-1),
        _(
            "the sign: KL(p || q) = sum p log(p / q), which is >= 0 (you returned sum p log(q / p))"
        ): -kl,
        _(
            "that is the cross-entropy H(p, q) = -sum p log q; the KL subtracts the entropy: "
            "sum p (log p - log q)"
        ): -torch.xlogy(p, q).sum(-1),
        _("weight each term by p: KL(p || q) = sum p * (log p - log q), not sum (log p - log q)"): (
            p.log() - q.log()
        ).sum(-1),
        _(
            "0 * log 0 gave nan: terms where p = 0 contribute 0; use torch.xlogy(p, p) - "
            "torch.xlogy(p, q)"
        ): (p * (p / q).log()).sum(-1),
    }
    if p.ndim > 1:
        mistakes[
            _(
                "sum over the last dimension (dim=-1), one KL per pair: you summed over "
                "dim 0, across the batch"
            )
        ] = (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(0)
    return mistakes


def kl_categorical(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(p, q)``: KL(p || q) = sum p log(p / q) along the last dimension.

    Edge cases: p = q, p with a zero, both directions. Drawn: 1 to 3 dimensions, float32 and
    float64; values, and gradients along the simplex.
    """
    p, q = _distributions(1, (4, 6)), _distributions(2, (4, 6))
    with_zero = torch.tensor([0.5, 0.5, 0.0])
    target = torch.tensor([0.2, 0.3, 0.5])
    cases = [
        Case(
            _("p = q (answer: 0)"),
            (p, p.clone()),
            torch.zeros(4),
            mistakes=_kl_categorical_mistakes(p, p.clone()),
        ),
        Case(
            _("a batch of 4 pairs"),
            (p, q),
            divergences.kl_categorical(p, q),
            mistakes=_kl_categorical_mistakes(p, q),
        ),
        Case(
            _("the other direction, KL(q || p)"),
            (q, p),
            divergences.kl_categorical(q, p),
            hint=_("KL is not symmetric: the weights are p, the first argument"),
            mistakes=_kl_categorical_mistakes(q, p),
        ),
        Case(
            _("p with a zero entry"),
            (with_zero, target),
            divergences.kl_categorical(with_zero, target),
            hint=_("terms where p = 0 contribute 0: use torch.xlogy(p, p) - torch.xlogy(p, q)"),
            mistakes=_kl_categorical_mistakes(with_zero, target),
        ),
    ]
    hint = _("KL(p || q) = sum over the last dimension of p * (log p - log q)")
    return run_check("kl_categorical", function, cases, hint, strict, KL_CATEGORICAL)


def _kl_gaussians_mistakes(
    mean_p: torch.Tensor, std_p: torch.Tensor, mean_q: torch.Tensor, std_q: torch.Tensor
) -> dict[str, torch.Tensor]:
    def kl(log_ratio, var_p, var_q, half=0.5, two=2.0):
        return log_ratio + (var_p + (mean_p - mean_q) ** 2) / (two * var_q) - half

    log_ratio = torch.log(std_q / std_p)
    return {
        _(
            "std_p and std_q are standard deviations, not variances: square them in the formula "
            "(the log term is log(std_q / std_p))"
        ): kl(0.5 * log_ratio, std_p, std_q),
        _(
            "you computed KL(q || p): KL is not symmetric; p is the first Gaussian (mean_p, std_p)"
        ): divergences.kl_gaussians(mean_q, std_q, mean_p, std_p),
        _(
            "the constant: the closed form ends in - 1/2 (the KL of a Gaussian with itself is 0)"
        ): kl(log_ratio, std_p**2, std_q**2, half=0.0),
        _("the sign of the log term: it is log(std_q / std_p), not log(std_p / std_q)"): kl(
            -log_ratio, std_p**2, std_q**2
        ),
        _("square std_p in the numerator: (std_p^2 + (mean_p - mean_q)^2) / (2 std_q^2)"): kl(
            log_ratio, std_p, std_q**2
        ),
        _("the factor 2: the fraction is (std_p^2 + (mean_p - mean_q)^2) / (2 std_q^2)"): kl(
            log_ratio, std_p**2, std_q**2, two=1.0
        ),
    }


def kl_gaussians(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(mean_p, std_p, mean_q, std_q)``: the closed-form KL of 1-D Gaussians.

    Edge cases: a Gaussian against itself, equal variances. Drawn: shapes of 0 to 2 dimensions,
    scales 0.1 to 5, float32 and float64; values and gradients.
    """
    generator = torch.Generator().manual_seed(3)
    mean_p, mean_q = torch.randn(5, generator=generator), torch.randn(5, generator=generator)
    std_p = torch.rand(5, generator=generator) + 0.5
    std_q = torch.rand(5, generator=generator) + 0.5
    one, zero, two = torch.tensor(1.0), torch.tensor(0.0), torch.tensor(2.0)
    cases = [
        Case(
            _("N(0, 1) against itself (answer: 0)"),
            (zero, one, zero, one),
            torch.tensor(0.0),
            mistakes=_kl_gaussians_mistakes(zero, one, zero, one),
        ),
        Case(
            _("N(1, 1) || N(0, 1) (answer: 1/2)"),
            (one, one, zero, one),
            torch.tensor(0.5),
            hint=_("with equal variances the KL is (mean_p - mean_q)^2 / (2 std^2)"),
            mistakes=_kl_gaussians_mistakes(one, one, zero, one),
        ),
        Case(
            _("N(0, 1) || N(0, 2^2)"),
            (zero, one, zero, two),
            divergences.kl_gaussians(zero, one, zero, two),
            hint=_(
                "the formula uses standard deviations: log(std_q / std_p) + "
                "(std_p^2 + (mean_p - mean_q)^2) / (2 std_q^2) - 1/2"
            ),
            mistakes=_kl_gaussians_mistakes(zero, one, zero, two),
        ),
        Case(
            _("5 random pairs"),
            (mean_p, std_p, mean_q, std_q),
            divergences.kl_gaussians(mean_p, std_p, mean_q, std_q),
            mistakes=_kl_gaussians_mistakes(mean_p, std_p, mean_q, std_q),
        ),
    ]
    # a formula, the same in every language: not translated
    hint = "log(std_q / std_p) + (std_p^2 + (mean_p - mean_q)^2) / (2 std_q^2) - 1/2"
    return run_check("kl_gaussians", function, cases, hint, strict, KL_GAUSSIANS)


def monte_carlo_kl(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(samples, log_p, log_q)``: the Monte Carlo estimate of KL(p || q).

    Edge cases: p = q (exactly 0). Drawn: 1 to 300 samples, several means and standard
    deviations, float32 and float64; values and gradients.
    """
    generator = torch.Generator().manual_seed(4)
    samples = torch.randn(1000, generator=generator)

    def log_p(x: torch.Tensor) -> torch.Tensor:
        return divergences.normal_log_prob(x, torch.tensor(0.0), torch.tensor(1.0))

    def log_q(x: torch.Tensor) -> torch.Tensor:
        return divergences.normal_log_prob(x, torch.tensor(1.0), torch.tensor(2.0))

    log_ratio = log_p(samples) - log_q(samples)
    mistakes = {
        _(
            "the order: KL(p || q) averages log p(x) - log q(x) (you returned log q - log p, "
            "minus the KL)"
        ): (-log_ratio).mean(),
        _(
            "average over the samples (.mean()), not the sum: the estimate must not grow with the "
            "number of samples"
        ): log_ratio.sum(),
        _(
            "return one number, the average over the samples (a 0-dim tensor), not one value per "
            "sample"
        ): log_ratio,
        _(
            "do not weight by p(x): the samples already come from p, so the plain average of "
            "log p(x) - log q(x) estimates the expectation"
        ): (log_p(samples).exp() * log_ratio).mean(),
    }
    cases = [
        Case(
            _("1000 samples of N(0, 1) against N(1, 2^2)"),
            (samples, log_p, log_q),
            log_ratio.mean(),
            hint=_(
                "the estimate is the average of log p(x) - log q(x) over the samples; return a "
                "0-dim tensor (use .mean())"
            ),
            mistakes=mistakes,
        ),
        Case(
            _("the same samples, p = q (answer: exactly 0)"),
            (samples, log_p, log_p),
            torch.tensor(0.0),
        ),
    ]
    hint = _("average log_p(samples) - log_q(samples): the samples come from p")
    return run_check("monte_carlo_kl", function, cases, hint, strict, MONTE_CARLO_KL)


# --- inputs drawn per call: any number of dimensions, sizes, parameters, float32 and float64 ------


def _draw_distribution(generator: torch.Generator, shape: tuple[int, ...], dtype) -> torch.Tensor:
    """Strictly positive distributions along the last axis (zeros are fixed edge cases: the
    gradient of p log p is infinite there)."""
    return torch.softmax(2 * randn(generator, *shape, dtype=dtype), dim=-1)


def _draw_p(generator: torch.Generator) -> tuple[str, tuple, dict]:
    dtype, shape = draw_dtype(generator), draw_shape(generator, 1, 3)
    description = _("p of shape {shape}, {dtype}").format(shape=shape, dtype=dtype)
    return description, (_draw_distribution(generator, shape, dtype),), {}


def _draw_p_q(generator: torch.Generator) -> tuple[str, tuple, dict]:
    dtype, shape = draw_dtype(generator), draw_shape(generator, 1, 3)
    p, q = (_draw_distribution(generator, shape, dtype) for _index in range(2))
    return _("p and q of shape {shape}, {dtype}").format(shape=shape, dtype=dtype), (p, q), {}


def _draw_gaussians(generator: torch.Generator) -> tuple[str, tuple, dict]:
    dtype, shape = draw_dtype(generator), draw_shape(generator, 0, 2)
    scale = draw_choice(generator, (0.1, 1.0, 5.0))
    means = [scale * randn(generator, *shape, dtype=dtype) for _index in range(2)]
    stds = [scale * (0.2 + randn(generator, *shape, dtype=dtype).abs()) for _index in range(2)]
    return (
        _("Gaussians of shape {shape} at scale {scale}, {dtype}").format(
            shape=shape, scale=f"{scale:g}", dtype=dtype
        ),
        (means[0], stds[0], means[1], stds[1]),
        {},
    )


def _draw_monte_carlo(generator: torch.Generator) -> tuple[str, tuple, dict]:
    dtype, n = draw_dtype(generator), draw_int(generator, 1, 300)
    mean_p, mean_q = (draw_choice(generator, (-1.0, 0.0, 2.0)) for _index in range(2))
    std_p, std_q = (draw_choice(generator, (0.5, 1.0, 3.0)) for _index in range(2))
    samples = mean_p + std_p * randn(generator, n, dtype=dtype)

    def log_p(x: torch.Tensor) -> torch.Tensor:
        return divergences.normal_log_prob(
            x, torch.tensor(mean_p, dtype=dtype), torch.tensor(std_p, dtype=dtype)
        )

    def log_q(x: torch.Tensor) -> torch.Tensor:
        return divergences.normal_log_prob(
            x, torch.tensor(mean_q, dtype=dtype), torch.tensor(std_q, dtype=dtype)
        )

    return (
        _(
            "{count} samples of N({mean_p}, {std_p}^2) against N({mean_q}, {std_q}^2), {dtype}"
        ).format(
            count=n,
            mean_p=f"{mean_p:g}",
            std_p=f"{std_p:g}",
            mean_q=f"{mean_q:g}",
            std_q=f"{std_q:g}",
            dtype=dtype,
        ),
        (samples, log_p, log_q),
        {},
    )


def _monte_carlo_reference(samples: torch.Tensor, log_p, log_q) -> torch.Tensor:
    return (log_p(samples) - log_q(samples)).mean()


ENTROPY = Draws(_draw_p, divergences.entropy, gradients="simplex", mistakes=_entropy_mistakes)
KL_CATEGORICAL = Draws(
    _draw_p_q, divergences.kl_categorical, gradients="simplex", mistakes=_kl_categorical_mistakes
)
KL_GAUSSIANS = Draws(
    _draw_gaussians, divergences.kl_gaussians, gradients=True, mistakes=_kl_gaussians_mistakes
)
MONTE_CARLO_KL = Draws(_draw_monte_carlo, _monte_carlo_reference, gradients=True)
entropy.draws = ENTROPY
kl_categorical.draws = KL_CATEGORICAL
kl_gaussians.draws = KL_GAUSSIANS
monte_carlo_kl.draws = MONTE_CARLO_KL
