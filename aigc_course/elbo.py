"""The evidence lower bound (ELBO), checked on a model whose likelihood is exact, and gradients of
expectations: reparameterisation vs the score function.

A latent-variable model p(x, z) = p(x | z) p(z) has the evidence log p(x) = log of an integral over z,
usually intractable. For any distribution q(z) (in a VAE: q(z | x) from an encoder),

    log p(x) = ELBO(q) + KL(q(z) || p(z | x)),   ELBO(q) = E_q[log p(x, z) - log q(z)]
                                                        = E_q[log p(x | z)] - KL(q(z) || p(z)),

and since KL >= 0 the ELBO is a lower bound, tight exactly when q is the true posterior.

:class:`LinearGaussianModel` (z ~ N(0, I_k), x | z ~ N(W z + b, s^2 I_d): probabilistic PCA) has
an exact log p(x) and an exact Gaussian posterior, so every part of that identity can be computed
in closed form and checked.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

LOG_2PI = math.log(2 * math.pi)


def gaussian_log_density(
    x: torch.Tensor, mean: torch.Tensor, covariance: torch.Tensor
) -> torch.Tensor:
    """log N(x; mean, covariance) for a full covariance ``(d, d)``; x ``(..., d)`` -> ``(...)``."""
    return torch.distributions.MultivariateNormal(mean, covariance_matrix=covariance).log_prob(x)


def kl_full_gaussians(
    mean_q: torch.Tensor, cov_q: torch.Tensor, mean_p: torch.Tensor, cov_p: torch.Tensor
) -> torch.Tensor:
    """KL(N(mean_q, cov_q) || N(mean_p, cov_p)) for full covariances ``(k, k)``.

    = 1/2 (tr(P^-1 Q) + (m_p - m_q)^T P^-1 (m_p - m_q) - k + log det P - log det Q).
    """
    k = mean_q.shape[-1]
    cov_p_inverse = torch.linalg.inv(cov_p)
    difference = mean_p - mean_q
    return 0.5 * (
        torch.trace(cov_p_inverse @ cov_q)
        + difference @ cov_p_inverse @ difference
        - k
        + torch.logdet(cov_p)
        - torch.logdet(cov_q)
    )


@dataclass
class LinearGaussianModel:
    """z ~ N(0, I_k), x | z ~ N(W z + b, noise_std^2 I_d). W is ``(d, k)``, b ``(d,)``."""

    weight: torch.Tensor
    bias: torch.Tensor
    noise_std: float

    @classmethod
    def random(
        cls, data_dim: int = 5, latent_dim: int = 2, noise_std: float = 0.5, seed: int = 0
    ) -> LinearGaussianModel:
        generator = torch.Generator().manual_seed(seed)
        weight = torch.randn(data_dim, latent_dim, generator=generator, dtype=torch.float64)
        bias = torch.randn(data_dim, generator=generator, dtype=torch.float64)
        return cls(weight, bias, noise_std)

    @property
    def latent_dim(self) -> int:
        return self.weight.shape[1]

    def sample(
        self, n: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` pairs (x ``(n, d)``, z ``(n, k)``) from the model."""
        z = torch.randn(n, self.latent_dim, generator=generator, dtype=self.weight.dtype)
        noise = torch.randn(n, self.weight.shape[0], generator=generator, dtype=self.weight.dtype)
        return z @ self.weight.T + self.bias + self.noise_std * noise, z

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """The exact evidence: x ~ N(b, W W^T + s^2 I). ``(..., d) -> (...)``."""
        covariance = self.weight @ self.weight.T + self.noise_std**2 * torch.eye(
            self.weight.shape[0], dtype=self.weight.dtype
        )
        return gaussian_log_density(x, self.bias, covariance)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The exact posterior p(z | x) = N(mean, cov) for one x ``(d,)``.

        cov = (I + W^T W / s^2)^-1, mean = cov W^T (x - b) / s^2.
        """
        precision = (
            torch.eye(self.latent_dim, dtype=self.weight.dtype)
            + self.weight.T @ self.weight / self.noise_std**2
        )
        covariance = torch.linalg.inv(precision)
        mean = covariance @ self.weight.T @ (x - self.bias) / self.noise_std**2
        return mean, covariance

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) for x ``(d,)`` and z ``(..., k)``: a diagonal Gaussian around W z + b."""
        residual = x - (z @ self.weight.T + self.bias)
        d = self.weight.shape[0]
        return -0.5 * d * (LOG_2PI + 2 * math.log(self.noise_std)) - (residual**2).sum(-1) / (
            2 * self.noise_std**2
        )

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; 0, I). ``(..., k) -> (...)``."""
        return -0.5 * (self.latent_dim * LOG_2PI + (z**2).sum(-1))

    def elbo(self, x: torch.Tensor, q_mean: torch.Tensor, q_cov: torch.Tensor) -> torch.Tensor:
        """The ELBO of q = N(q_mean, q_cov) at one x, in closed form.

        E_q[log p(x | z)] = -d/2 log(2 pi s^2) - (|x - W m - b|^2 + tr(W S W^T)) / (2 s^2), and
        KL(q || N(0, I)) = 1/2 (tr S + m^T m - k - log det S).
        """
        d = self.weight.shape[0]
        residual = x - self.weight @ q_mean - self.bias
        expected_log_likelihood = -0.5 * d * (LOG_2PI + 2 * math.log(self.noise_std)) - (
            residual @ residual + torch.trace(self.weight @ q_cov @ self.weight.T)
        ) / (2 * self.noise_std**2)
        zeros = torch.zeros_like(q_mean)
        identity = torch.eye(self.latent_dim, dtype=q_cov.dtype)
        return expected_log_likelihood - kl_full_gaussians(q_mean, q_cov, zeros, identity)

    def elbo_monte_carlo(
        self,
        x: torch.Tensor,
        q_mean: torch.Tensor,
        q_cov: torch.Tensor,
        n: int,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The ELBO estimated from ``n`` reparameterised samples z = m + L eps (L L^T = S)."""
        cholesky = torch.linalg.cholesky(q_cov)
        eps = torch.randn(n, self.latent_dim, generator=generator, dtype=q_mean.dtype)
        z = q_mean + eps @ cholesky.T
        log_q = gaussian_log_density(z, q_mean, q_cov)
        return (self.log_likelihood(x, z) + self.log_prior(z) - log_q).mean()


# --------------------------------------------------------------------------------------------
# Gradients of expectations
# --------------------------------------------------------------------------------------------


def reparameterised_sample(
    mean: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor
) -> torch.Tensor:
    """z = mean + sigma * eps with sigma = exp(logvar / 2) and eps ~ N(0, I): a sample of
    N(mean, sigma^2) that is a differentiable function of (mean, logvar)."""
    return mean + torch.exp(0.5 * logvar) * eps


def reparameterisation_gradients(
    function: Callable[[torch.Tensor], torch.Tensor],
    mean: float,
    std: float,
    n: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``n`` one-sample estimates of d/d mean E_{z ~ N(mean, std^2)}[f(z)]: f'(mean + std eps)."""
    eps = torch.randn(n, generator=generator, dtype=torch.float64)
    mean_t = torch.tensor(mean, dtype=torch.float64, requires_grad=True)
    z = mean_t + std * eps
    (per_sample,) = torch.autograd.grad(
        function(z).sum(), z
    )  # d f(z_i) / d z_i = d f(z_i) / d mean
    return per_sample


def score_function_gradients(
    function: Callable[[torch.Tensor], torch.Tensor],
    mean: float,
    std: float,
    n: int,
    generator: torch.Generator | None = None,
    baseline: float = 0.0,
) -> torch.Tensor:
    """``n`` one-sample REINFORCE estimates: (f(z) - baseline) * d/d mean log q(z) = (f(z) - b)(z - mean) / std^2.

    Needs only values of f, not its derivative (so it works for discrete or black-box f), and
    is unbiased for any constant baseline, because E_q[d log q / d mean] = 0.
    """
    z = mean + std * torch.randn(n, generator=generator, dtype=torch.float64)
    return (function(z) - baseline) * (z - mean) / std**2
