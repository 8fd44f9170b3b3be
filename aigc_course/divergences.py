"""Entropy, cross-entropy and the KL divergence: categorical, Gaussian (closed form), Monte Carlo.

Everything is in **nats** (natural logarithms); divide by ``math.log(2)`` for bits.

    entropy             H(p)        = -sum_x p(x) log p(x)
    cross-entropy       H(p, q)     = -sum_x p(x) log q(x)
    KL divergence       KL(p || q)  =  sum_x p(x) log(p(x) / q(x))  =  H(p, q) - H(p)  >= 0

KL is not a distance: it is not symmetric, KL(p || q) != KL(q || p) in general, and it breaks the
triangle inequality. Lesson 01 shows both numerically. For one-dimensional Gaussians,

    KL(N(m1, s1^2) || N(m2, s2^2)) = log(s2 / s1) + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2,

and against the standard normal, with log-variance ``logvar = log s^2`` (the VAE's form),

    KL(N(mu, s^2) || N(0, 1)) = -1/2 * (1 + log s^2 - mu^2 - s^2)     (note the minus sign).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from aigc_course.i18n import _

LOG_2PI = math.log(2 * math.pi)


# --------------------------------------------------------------------------------------------
# Categorical distributions
# --------------------------------------------------------------------------------------------


def check_distribution(p: torch.Tensor, name: str = "p", dim: int = -1, atol: float = 1e-4) -> None:
    """Raise ``ValueError`` unless ``p`` is non-negative and sums to one along ``dim``."""
    if not torch.is_floating_point(p):
        raise ValueError(
            _("{name} must be a float tensor of probabilities, got {dtype}").format(
                name=name, dtype=p.dtype
            )
        )
    if (p < 0).any():
        raise ValueError(_("{name} has negative entries: probabilities are >= 0").format(name=name))
    totals = p.sum(dim=dim)
    if not torch.allclose(totals, torch.ones_like(totals), atol=atol):
        raise ValueError(
            _(
                "{name} must sum to 1 along dim {dim}; sums are {sums}... "
                "(normalise with p / p.sum(dim, keepdim=True), or use softmax on logits)"
            ).format(name=name, dim=dim, sums=totals.flatten()[:4].tolist())
        )


def entropy(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """H(p) = -sum p log p along ``dim``, with 0 log 0 = 0. ``(..., K) -> (...)``."""
    check_distribution(p, "p", dim)
    return 0.0 - torch.xlogy(p, p).sum(dim)  # 0.0 - x, not -x: no "-0.0" for a certain outcome


def cross_entropy(p: torch.Tensor, q: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """H(p, q) = -sum p log q along ``dim``; infinite where q = 0 < p. ``(..., K) -> (...)``."""
    check_distribution(p, "p", dim)
    check_distribution(q, "q", dim)
    return -torch.xlogy(p, q).sum(dim)


def kl_categorical(p: torch.Tensor, q: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """KL(p || q) = sum p (log p - log q) along ``dim``. ``(..., K) -> (...)``.

    Terms with p = 0 contribute 0 (whatever q is); a term with p > 0 and q = 0 makes it infinite:
    q must put mass wherever p does.
    """
    check_distribution(p, "p", dim)
    check_distribution(q, "q", dim)
    return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(dim)


# --------------------------------------------------------------------------------------------
# Gaussians
# --------------------------------------------------------------------------------------------


def _as_float(value: torch.Tensor | float) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value if value.is_floating_point() else value.float()
    return torch.tensor(float(value), dtype=torch.float64)  # 0-dim: defers to tensor dtypes


def normal_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, std^2) = -1/2 log(2 pi) - log std - (x - mean)^2 / (2 std^2), elementwise."""
    std = torch.as_tensor(std, dtype=x.dtype)
    return -0.5 * LOG_2PI - std.log() - (x - mean) ** 2 / (2 * std**2)


def kl_gaussians(
    mean_p: torch.Tensor, std_p: torch.Tensor, mean_q: torch.Tensor, std_q: torch.Tensor
) -> torch.Tensor:
    """KL(N(mean_p, std_p^2) || N(mean_q, std_q^2)) for 1-D Gaussians, elementwise (broadcasts)."""
    mean_p, std_p, mean_q, std_q = (_as_float(v) for v in (mean_p, std_p, mean_q, std_q))
    if (std_p <= 0).any() or (std_q <= 0).any():
        raise ValueError(_("standard deviations must be positive"))
    return torch.log(std_q / std_p) + (std_p**2 + (mean_p - mean_q) ** 2) / (2 * std_q**2) - 0.5


def kl_diagonal_gaussians(
    mean_p: torch.Tensor,
    logvar_p: torch.Tensor,
    mean_q: torch.Tensor,
    logvar_q: torch.Tensor,
    dim: int = -1,
) -> torch.Tensor:
    """KL between Gaussians with diagonal covariances, summed over ``dim``. ``(..., D) -> (...)``.

    With independent coordinates the KL is the sum of the 1-D KLs; in log-variance form,
    1/2 * sum(logvar_q - logvar_p + (exp(logvar_p) + (mean_p - mean_q)^2) / exp(logvar_q) - 1).
    """
    per_dimension = 0.5 * (
        logvar_q - logvar_p + (logvar_p.exp() + (mean_p - mean_q) ** 2) / logvar_q.exp() - 1.0
    )
    return per_dimension.sum(dim)


def kl_standard_normal(mean: torch.Tensor, logvar: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """KL(N(mean, diag(exp(logvar))) || N(0, I)) = -1/2 sum(1 + logvar - mean^2 - exp(logvar)).

    The KL term of the VAE's loss. ``(..., D) -> (...)``. Each term 1 + log s^2 - s^2 is <= 0
    (equality at s = 1), so with the leading minus sign the result is >= 0, as a KL must be.
    """
    return -0.5 * (1.0 + logvar - mean**2 - logvar.exp()).sum(dim)


# --------------------------------------------------------------------------------------------
# Monte Carlo
# --------------------------------------------------------------------------------------------


def monte_carlo_kl(
    samples: torch.Tensor,
    log_p: Callable[[torch.Tensor], torch.Tensor],
    log_q: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Estimate KL(p || q) = E_p[log p(x) - log q(x)] from ``samples`` drawn from p.

    Returns the estimate and its standard error std / sqrt(n): the error shrinks as 1 / sqrt(n).
    Needs only the two log-densities (up to the *same* constant), not a closed form.
    """
    log_ratio = log_p(samples) - log_q(samples)
    n = log_ratio.numel()
    return log_ratio.mean(), log_ratio.std(unbiased=True) / math.sqrt(n)


# --------------------------------------------------------------------------------------------
# Forward vs reverse KL: fitting one Gaussian to a mixture
# --------------------------------------------------------------------------------------------


def gauss_hermite_expectation(
    function: Callable[[torch.Tensor], torch.Tensor],
    mean: torch.Tensor,
    std: torch.Tensor,
    points: int = 80,
) -> torch.Tensor:
    """E_{x ~ N(mean, std^2)}[function(x)] by Gauss-Hermite quadrature (deterministic, differentiable).

    E[f(x)] = 1/sqrt(pi) * sum_i w_i f(mean + sqrt(2) std t_i), exact for polynomials of degree < 2n.
    """
    nodes, weights = np.polynomial.hermite.hermgauss(points)
    nodes_t = torch.as_tensor(nodes, dtype=torch.float64)
    weights_t = torch.as_tensor(weights, dtype=torch.float64) / math.sqrt(math.pi)
    x = mean + math.sqrt(2.0) * std * nodes_t
    return (weights_t * function(x)).sum()


@dataclass(frozen=True)
class GaussianMixture1D:
    """p(x) = sum_k w_k N(x; mean_k, std_k^2), a 1-D mixture of Gaussians."""

    weights: tuple[float, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]

    def __post_init__(self) -> None:
        if not len(self.weights) == len(self.means) == len(self.stds) > 0:
            raise ValueError(_("weights, means and stds need the same, non-zero length"))
        if any(w < 0 for w in self.weights) or abs(sum(self.weights) - 1) > 1e-6:
            raise ValueError(
                _("weights must be >= 0 and sum to 1, got {weights}").format(weights=self.weights)
            )
        if any(s <= 0 for s in self.stds):
            raise ValueError(_("stds must be positive, got {stds}").format(stds=self.stds))

    def _tensors(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return tuple(torch.tensor(v, dtype=dtype) for v in (self.weights, self.means, self.stds))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x), elementwise: logsumexp_k (log w_k + log N(x; mean_k, std_k^2))."""
        weights, means, stds = self._tensors(x.dtype)
        per_component = weights.log() + normal_log_prob(x.unsqueeze(-1), means, stds)
        return torch.logsumexp(per_component, dim=-1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples: pick a component by its weight, then sample that Gaussian."""
        weights, means, stds = self._tensors(torch.float64)
        component = torch.multinomial(weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, dtype=torch.float64, generator=generator)
        return means[component] + stds[component] * noise

    def mean(self) -> float:
        return float(sum(w * m for w, m in zip(self.weights, self.means, strict=True)))

    def variance(self) -> float:
        """Law of total variance: E[Var] + Var[E] over the components."""
        mean = self.mean()
        return float(
            sum(
                w * (s**2 + (m - mean) ** 2)
                for w, m, s in zip(self.weights, self.means, self.stds, strict=True)
            )
        )

    def expectation(self, function: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """E_p[function(x)] by quadrature, one Gauss-Hermite rule per component."""
        return sum(
            w * gauss_hermite_expectation(function, torch.tensor(m, dtype=torch.float64), s)
            for w, m, s in zip(self.weights, self.means, self.stds, strict=True)
        )


def forward_kl(mixture: GaussianMixture1D, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL(p || q) for p the mixture and q = N(mean, std^2), by quadrature."""
    return mixture.expectation(lambda x: mixture.log_prob(x) - normal_log_prob(x, mean, std))


def reverse_kl(mixture: GaussianMixture1D, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL(q || p) for q = N(mean, std^2) and p the mixture, by quadrature under q."""
    return gauss_hermite_expectation(
        lambda x: normal_log_prob(x, mean, std) - mixture.log_prob(x), mean, std
    )


def fit_forward_kl(mixture: GaussianMixture1D) -> tuple[float, float]:
    """The Gaussian q minimising KL(p || q): moment matching, q has p's mean and variance.

    (KL(p || q) = -H(p) - E_p[log q]; for Gaussian q the last term depends on p only through its
    mean and variance, and is maximised by q's mean and variance equal to p's.)
    """
    return mixture.mean(), math.sqrt(mixture.variance())


def fit_reverse_kl(
    mixture: GaussianMixture1D, init_mean: float, init_std: float = 1.0, max_iter: int = 200
) -> tuple[float, float]:
    """A Gaussian q locally minimising KL(q || p), by L-BFGS from ``(init_mean, init_std)``.

    Reverse KL punishes q for putting mass where p has little, so q *seeks a mode*: which one
    depends on where it starts. Deterministic (quadrature, no sampling).
    """
    mean = torch.tensor(float(init_mean), dtype=torch.float64, requires_grad=True)
    log_std = torch.tensor(math.log(init_std), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [mean, log_std],
        max_iter=max_iter,
        line_search_fn="strong_wolfe",
        tolerance_grad=1e-10,
        tolerance_change=1e-12,
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = reverse_kl(mixture, mean, log_std.exp())
        loss.backward()
        return loss

    optimizer.step(closure)
    return mean.item(), log_std.exp().item()


@dataclass
class ForwardReverseFits:
    """The forward and reverse KL fits of one Gaussian to a two-mode mixture."""

    mixture: GaussianMixture1D
    forward: tuple[float, float]
    reverse: tuple[float, float]
    reverse_local: list[tuple[float, float]]

    def kls(self, fit: tuple[float, float]) -> tuple[float, float]:
        """(KL(p || q), KL(q || p)) for the Gaussian ``fit``."""
        return kl_both_ways(self.mixture, fit)


def kl_both_ways(mixture: GaussianMixture1D, fit: tuple[float, float]) -> tuple[float, float]:
    """(KL(p || q), KL(q || p)) for p the mixture and q = N(fit[0], fit[1]^2)."""
    mean, std = (torch.tensor(v, dtype=torch.float64) for v in fit)
    return forward_kl(mixture, mean, std).item(), reverse_kl(mixture, mean, std).item()


def forward_reverse_fits(
    separation: float = 4.0, weight: float = 0.6, std: float = 0.7
) -> ForwardReverseFits:
    """Fit N(m, s^2) to w N(-d/2, std^2) + (1 - w) N(d/2, std^2) both ways (lesson 01's sliders).

    The reverse fit starts from each mode and keeps the better local optimum; every local optimum
    is returned too, to show that reverse KL has several.
    """
    mixture = GaussianMixture1D((weight, 1 - weight), (-separation / 2, separation / 2), (std, std))
    local = [fit_reverse_kl(mixture, m, init_std=std) for m in mixture.means]
    best = min(local, key=lambda fit: kl_both_ways(mixture, fit)[1])
    return ForwardReverseFits(mixture, fit_forward_kl(mixture), best, local)
