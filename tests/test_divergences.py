"""aigc_course.divergences: each function against an independent numerical identity."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from aigc_course import divergences as d


def random_distributions(shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(3 * torch.randn(*shape, generator=generator, dtype=torch.float64), dim=-1)


def test_entropy_extremes_and_torch_agreement():
    assert d.entropy(torch.full((8,), 1 / 8)).item() == pytest.approx(math.log(8))
    assert d.entropy(torch.tensor([0.0, 1.0, 0.0])).item() == 0.0  # 0 log 0 = 0, no NaN
    p = random_distributions((5, 7))
    torch.testing.assert_close(d.entropy(p), Categorical(probs=p).entropy())


def test_kl_categorical_identities():
    p, q = random_distributions((100, 6), seed=1), random_distributions((100, 6), seed=2)
    kl = d.kl_categorical(p, q)
    assert (kl >= 0).all()
    torch.testing.assert_close(kl, d.cross_entropy(p, q) - d.entropy(p))
    torch.testing.assert_close(kl, kl_divergence(Categorical(probs=p), Categorical(probs=q)))
    torch.testing.assert_close(d.kl_categorical(p, p), torch.zeros(100, dtype=torch.float64))
    assert not torch.allclose(kl, d.kl_categorical(q, p)), "KL is not symmetric"
    zero_in_p = torch.tensor([0.5, 0.5, 0.0])
    assert torch.isfinite(d.kl_categorical(zero_in_p, torch.tensor([0.2, 0.3, 0.5])))
    assert d.kl_categorical(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0])) == math.inf


def test_probability_inputs_are_validated():
    with pytest.raises(ValueError, match="must sum to 1"):
        d.entropy(torch.tensor([0.5, 0.6]))
    with pytest.raises(ValueError, match="negative"):
        d.kl_categorical(torch.tensor([1.5, -0.5]), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="float tensor"):
        d.entropy(torch.tensor([0, 1]))


def test_kl_gaussians_closed_form_against_torch_and_monte_carlo():
    generator = torch.Generator().manual_seed(0)
    mean_p, mean_q = torch.randn(50, generator=generator), torch.randn(50, generator=generator)
    std_p, std_q = (
        torch.rand(50, generator=generator) + 0.3,
        torch.rand(50, generator=generator) + 0.3,
    )
    expected = kl_divergence(Normal(mean_p, std_p), Normal(mean_q, std_q))
    torch.testing.assert_close(d.kl_gaussians(mean_p, std_p, mean_q, std_q), expected)
    # Monte Carlo, with a tolerance set from the estimator's own standard error (5 sigma).
    n = 200_000
    samples = 0.5 + 1.3 * torch.randn(n, generator=generator, dtype=torch.float64)
    estimate, stderr = d.monte_carlo_kl(
        samples, lambda x: d.normal_log_prob(x, 0.5, 1.3), lambda x: d.normal_log_prob(x, -0.2, 0.8)
    )
    exact = d.kl_gaussians(0.5, 1.3, -0.2, 0.8).item()
    assert abs(estimate.item() - exact) < 5 * stderr.item()
    with pytest.raises(ValueError, match="positive"):
        d.kl_gaussians(0.0, -1.0, 0.0, 1.0)


def test_monte_carlo_error_shrinks_as_one_over_sqrt_n():
    """The estimator's *actual* error, over 2000 seeded repetitions, against the exact KL.

    KL(N(0, 1) || N(1, 2^2)) from torch.distributions (not from the package). At n and 16 n
    samples the root-mean-square error must fall by sqrt(16) = 4, the mean error must be ~0
    (unbiased), and the standard error the package reports must match the measured spread.
    Tolerances: with R = 2000 repetitions an RMS error is known to about 1 / sqrt(2R) = 1.6 %
    (the errors are close to Gaussian), a ratio of two to about 2.3 %; the windows below are at
    least 5 such standard errors wide, while the classic slips miss them by far: std / n instead
    of std / sqrt(n) reports errors 4x and 16x too small, a forgotten sqrt(n) 4x and 16x too
    large, an estimator that stops improving with n gives a ratio near 1, not 4, and dividing
    the sum by n - 1 biases the mean error by KL / 15 = 9 of its standard errors at n = 16.
    """
    p = Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    q = Normal(torch.tensor(1.0, dtype=torch.float64), torch.tensor(2.0, dtype=torch.float64))
    exact = kl_divergence(p, q).item()  # log 2 + 2/8 - 1/2 = 0.443
    generator = torch.Generator().manual_seed(1)
    repetitions = 2000

    def errors_and_reported(n):
        samples = torch.randn(repetitions, n, generator=generator, dtype=torch.float64)
        runs = [d.monte_carlo_kl(run, p.log_prob, q.log_prob) for run in samples]
        errors = torch.stack([estimate for estimate, _ in runs]) - exact
        reported = torch.stack([stderr for _, stderr in runs])
        return errors, reported

    rms = {}
    for n in (16, 256):
        errors, reported = errors_and_reported(n)
        rms[n] = errors.pow(2).mean().sqrt().item()
        assert abs(errors.mean().item()) < 5 * rms[n] / math.sqrt(repetitions), "unbiased"
        # E[stderr^2] = Var(log p - log q) / n = E[error^2]: compare root-mean-squares.
        reported_rms = reported.pow(2).mean().sqrt().item()
        assert reported_rms == pytest.approx(rms[n], rel=0.1), (n, reported_rms, rms[n])
    assert 3.5 < rms[16] / rms[256] < 4.5, rms  # sqrt(256 / 16) = 4


def test_diagonal_and_standard_normal_forms():
    generator = torch.Generator().manual_seed(2)
    mean_p, mean_q = torch.randn(4, 3, generator=generator), torch.randn(4, 3, generator=generator)
    logvar_p, logvar_q = (
        torch.randn(4, 3, generator=generator),
        torch.randn(4, 3, generator=generator),
    )
    per_dim = d.kl_gaussians(mean_p, (0.5 * logvar_p).exp(), mean_q, (0.5 * logvar_q).exp())
    torch.testing.assert_close(
        d.kl_diagonal_gaussians(mean_p, logvar_p, mean_q, logvar_q), per_dim.sum(-1)
    )
    zeros = torch.zeros(4, 3)
    torch.testing.assert_close(
        d.kl_standard_normal(mean_p, logvar_p),
        d.kl_diagonal_gaussians(mean_p, logvar_p, zeros, zeros),
    )
    assert (d.kl_standard_normal(mean_p, logvar_p) >= 0).all()
    by_torch = kl_divergence(Normal(mean_p, (0.5 * logvar_p).exp()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(d.kl_standard_normal(mean_p, logvar_p), by_torch)
    assert d.kl_standard_normal(torch.zeros(5), torch.zeros(5)).item() == 0.0


def test_mixture_density_sampling_and_moments():
    mixture = d.GaussianMixture1D((0.3, 0.7), (-2.0, 1.0), (0.5, 1.5))
    grid = torch.linspace(-15, 15, 30_001, dtype=torch.float64)
    density = mixture.log_prob(grid).exp()
    step = (grid[1] - grid[0]).item()
    assert (density.sum() * step).item() == pytest.approx(1.0, abs=1e-6)
    assert (grid * density).sum().item() * step == pytest.approx(mixture.mean(), abs=1e-6)
    samples = mixture.sample(200_000, generator=torch.Generator().manual_seed(3))
    assert samples.mean().item() == pytest.approx(mixture.mean(), abs=0.02)
    assert samples.var().item() == pytest.approx(mixture.variance(), rel=0.02)
    with pytest.raises(ValueError, match="sum to 1"):
        d.GaussianMixture1D((0.3, 0.3), (0.0, 1.0), (1.0, 1.0))


def test_quadrature_matches_closed_form_kl():
    single = d.GaussianMixture1D((1.0,), (0.3,), (1.2,))
    mean, std = torch.tensor(-0.4, dtype=torch.float64), torch.tensor(0.9, dtype=torch.float64)
    assert d.forward_kl(single, mean, std).item() == pytest.approx(
        d.kl_gaussians(0.3, 1.2, -0.4, 0.9).item(), abs=1e-10
    )
    assert d.reverse_kl(single, mean, std).item() == pytest.approx(
        d.kl_gaussians(-0.4, 0.9, 0.3, 1.2).item(), abs=1e-10
    )


def test_forward_kl_fit_is_moment_matching_and_a_minimum():
    mixture = d.GaussianMixture1D((0.6, 0.4), (-2.0, 2.0), (0.7, 0.7))
    mean, std = d.fit_forward_kl(mixture)
    # By hand: mean 0.6 (-2) + 0.4 (2) = -0.4; variance 0.7^2 + E[mu^2] - mean^2 = 0.49 + 4 - 0.16.
    assert mean == pytest.approx(-0.4)
    assert std == pytest.approx(math.sqrt(4.33))
    best = d.kl_both_ways(mixture, (mean, std))[0]
    for dm, ds in [(0.1, 0), (-0.1, 0), (0, 0.1), (0, -0.1)]:
        assert d.kl_both_ways(mixture, (mean + dm, std + ds))[0] > best


def test_forward_covers_modes_reverse_seeks_one():
    fits = d.forward_reverse_fits(separation=4.0, weight=0.6, std=0.7)
    forward_mean, forward_std = fits.forward
    reverse_mean, reverse_std = fits.reverse
    assert forward_std > 2.0, "mode covering: wide enough to cover both modes"
    assert reverse_mean == pytest.approx(-2.0, abs=0.1), "mode seeking: sits on the heavier mode"
    assert reverse_std == pytest.approx(0.7, abs=0.1)
    assert fits.kls(fits.forward)[0] < fits.kls(fits.reverse)[0]
    assert fits.kls(fits.reverse)[1] < fits.kls(fits.forward)[1]
    assert {round(m) for m, _ in fits.reverse_local} == {-2, 2}, "one local optimum per mode"
    merged = d.forward_reverse_fits(separation=0.5, weight=0.5, std=0.7)
    assert merged.reverse[0] == pytest.approx(0.0, abs=1e-3), (
        "one bump: the two fits agree on the mean"
    )
