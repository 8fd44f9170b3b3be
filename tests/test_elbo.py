"""aigc_course.elbo: the ELBO identity on an exact model, and the two gradient estimators."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from aigc_course import divergences
from aigc_course import elbo as E


@pytest.fixture
def model_and_x():
    model = E.LinearGaussianModel.random(data_dim=5, latent_dim=2, noise_std=0.5, seed=0)
    x, _ = model.sample(1, torch.Generator().manual_seed(1))
    return model, x[0]


def test_log_marginal_matches_monte_carlo_over_the_prior(model_and_x):
    model, x = model_and_x
    n = 400_000
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    log_weights = model.log_likelihood(x, z)  # p(x) = E_{z ~ p(z)}[p(x | z)]
    estimate = torch.logsumexp(log_weights, 0) - math.log(n)
    # Standard error of the log of a mean (delta method): std(w) / (mean(w) sqrt(n)), about 0.006.
    weights = (log_weights - log_weights.max()).exp()
    standard_error = (weights.std() / weights.mean() / math.sqrt(n)).item()
    assert abs(estimate.item() - model.log_marginal(x).item()) < 5 * standard_error


def test_posterior_is_bayes_rule(model_and_x):
    model, x = model_and_x
    mean, cov = model.posterior(x)
    z = torch.randn(5, 2, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    log_posterior = E.gaussian_log_density(z, mean, cov)
    bayes = model.log_likelihood(x, z) + model.log_prior(z) - model.log_marginal(x)
    torch.testing.assert_close(log_posterior, bayes)


def test_elbo_is_a_bound_tight_at_the_posterior_and_the_gap_is_the_kl(model_and_x):
    model, x = model_and_x
    log_px = model.log_marginal(x)
    mean, cov = model.posterior(x)
    torch.testing.assert_close(model.elbo(x, mean, cov), log_px)
    generator = torch.Generator().manual_seed(3)
    for _ in range(20):
        q_mean = mean + torch.randn(2, generator=generator, dtype=torch.float64)
        root = torch.randn(2, 2, generator=generator, dtype=torch.float64)
        q_cov = root @ root.T + 0.1 * torch.eye(2, dtype=torch.float64)
        bound = model.elbo(x, q_mean, q_cov)
        assert bound < log_px
        torch.testing.assert_close(log_px - bound, E.kl_full_gaussians(q_mean, q_cov, mean, cov))


def test_monte_carlo_elbo_agrees_with_closed_form(model_and_x):
    """The sampling estimate against the closed form, for a q with strongly correlated
    coordinates (correlation 0.6), so that a wrong square root of the covariance shows: z = m +
    eps L instead of m + eps L^T is 0.2 nats off, a diagonal-only covariance 0.6 nats. The
    tolerance is 5 standard errors measured from 16 independent runs (about 5 x 0.0045)."""
    model, x = model_and_x
    mean, _ = model.posterior(x)
    q_mean = mean + torch.tensor([0.2, -0.1], dtype=torch.float64)
    q_cov = torch.tensor([[0.05, 0.04], [0.04, 0.09]], dtype=torch.float64)
    runs = torch.stack(
        [
            model.elbo_monte_carlo(x, q_mean, q_cov, 12_500, torch.Generator().manual_seed(seed))
            for seed in range(16)
        ]
    )
    standard_error = runs.std() / math.sqrt(len(runs))
    assert abs(runs.mean() - model.elbo(x, q_mean, q_cov)) < 5 * standard_error


def test_kl_full_gaussians_matches_diagonal_formula():
    mean_q, mean_p = (
        torch.tensor([0.3, -1.0], dtype=torch.float64),
        torch.tensor([1.0, 0.5], dtype=torch.float64),
    )
    var_q, var_p = (
        torch.tensor([0.5, 2.0], dtype=torch.float64),
        torch.tensor([1.5, 0.7], dtype=torch.float64),
    )
    full = E.kl_full_gaussians(mean_q, torch.diag(var_q), mean_p, torch.diag(var_p))
    diagonal = divergences.kl_diagonal_gaussians(mean_q, var_q.log(), mean_p, var_p.log())
    torch.testing.assert_close(full, diagonal)


def test_kl_full_gaussians_matches_torch_with_correlations():
    generator = torch.Generator().manual_seed(9)
    for _ in range(5):
        mean_q, mean_p = torch.randn(2, 3, generator=generator, dtype=torch.float64)
        root_q, root_p = torch.randn(2, 3, 3, generator=generator, dtype=torch.float64)
        cov_q = root_q @ root_q.T + 0.1 * torch.eye(3, dtype=torch.float64)
        cov_p = root_p @ root_p.T + 0.1 * torch.eye(3, dtype=torch.float64)
        expected = kl_divergence(
            MultivariateNormal(mean_q, cov_q), MultivariateNormal(mean_p, cov_p)
        )
        torch.testing.assert_close(E.kl_full_gaussians(mean_q, cov_q, mean_p, cov_p), expected)


def test_reparameterised_sample_has_the_right_moments():
    eps = torch.randn(200_000, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    z = E.reparameterised_sample(
        torch.tensor(2.0), torch.tensor(1.0).log() + torch.tensor(4.0).log(), eps
    )
    assert z.mean().item() == pytest.approx(2.0, abs=0.02)
    assert z.std().item() == pytest.approx(2.0, abs=0.02), "logvar = log 4 means sigma = 2"


def test_both_estimators_are_unbiased_and_reparameterisation_has_lower_variance():
    f = lambda z: (z - 3.0) ** 2  # noqa: E731  E f = (mean - 3)^2 + std^2, d/d mean = 2 (mean - 3)
    n = 200_000
    reparam = E.reparameterisation_gradients(f, 1.0, 1.0, n, torch.Generator().manual_seed(6))
    score = E.score_function_gradients(f, 1.0, 1.0, n, torch.Generator().manual_seed(7))
    for estimates in (reparam, score):
        standard_error = estimates.std().item() / n**0.5
        assert abs(estimates.mean().item() - (-4.0)) < 5 * standard_error
    assert score.var() > 5 * reparam.var()
    with_baseline = E.score_function_gradients(
        f, 1.0, 1.0, n, torch.Generator().manual_seed(7), baseline=5.0
    )
    assert with_baseline.var() < score.var(), "a baseline (here E f = 5) reduces the variance"
