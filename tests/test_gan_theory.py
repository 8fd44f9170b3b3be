"""aigc_course.gan_theory: the value function, the optimal discriminator, JSD, a 1-D GAN."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from aigc_course import divergences
from aigc_course import gan_theory as g

LOGITS_REAL = torch.tensor([2.0, -1.0, 0.5, 4.0])
LOGITS_FAKE = torch.tensor([-3.0, 0.0, 1.0])


def test_value_function_terms_from_hand_made_logits():
    d_real, d_fake = torch.sigmoid(LOGITS_REAL), torch.sigmoid(LOGITS_FAKE)
    expected = d_real.log().mean() + (1 - d_fake).log().mean()
    torch.testing.assert_close(g.value_function(LOGITS_REAL, LOGITS_FAKE), expected)
    torch.testing.assert_close(g.discriminator_loss(LOGITS_REAL, LOGITS_FAKE), -expected)
    bce = F.binary_cross_entropy_with_logits(
        LOGITS_REAL, torch.ones(4)
    ) + F.binary_cross_entropy_with_logits(LOGITS_FAKE, torch.zeros(3))
    torch.testing.assert_close(g.discriminator_loss(LOGITS_REAL, LOGITS_FAKE), bce)
    torch.testing.assert_close(g.generator_loss_saturating(LOGITS_FAKE), (1 - d_fake).log().mean())
    torch.testing.assert_close(g.generator_loss_non_saturating(LOGITS_FAKE), -d_fake.log().mean())


def test_losses_are_stable_at_extreme_logits():
    extreme = torch.tensor([-200.0, 200.0])
    for value in (g.discriminator_loss(extreme, extreme), g.generator_loss_non_saturating(extreme)):
        assert torch.isfinite(value)


def test_generator_gradients_closed_form():
    d_fake = torch.tensor([0.001, 0.1, 0.5, 0.9, 0.999], dtype=torch.float64)
    saturating, non_saturating = g.generator_gradients(d_fake)
    torch.testing.assert_close(saturating, -d_fake)
    torch.testing.assert_close(non_saturating, -(1 - d_fake))
    assert saturating.abs()[0] < 0.01 < non_saturating.abs()[0], (
        "saturating vanishes when D rejects"
    )


def test_optimal_discriminator_equals_brute_force_maximiser():
    generator = torch.Generator().manual_seed(0)
    a, b = (
        torch.rand(20, generator=generator, dtype=torch.float64),
        torch.rand(20, generator=generator, dtype=torch.float64),
    )
    candidates = torch.linspace(1e-4, 1 - 1e-4, 100_001, dtype=torch.float64)
    objective = a[:, None] * candidates.log() + b[:, None] * (1 - candidates).log()
    brute_force = candidates[objective.argmax(dim=1)]
    torch.testing.assert_close(g.optimal_discriminator(a, b), brute_force, atol=2e-5, rtol=0)
    assert g.optimal_discriminator(torch.tensor(0.0), torch.tensor(0.0)).item() == 0.5


def test_value_at_optimum_is_minus_log4_plus_twice_jsd():
    x = torch.linspace(-8, 8, 4001, dtype=torch.float64)
    for mean, std in [(0.0, 1.0), (1.5, 0.7), (5.0, 0.5)]:
        p_data = g.grid_masses(divergences.normal_log_prob(x, 0.0, 1.0).exp())
        p_model = g.grid_masses(divergences.normal_log_prob(x, mean, std).exp())
        value = g.value_at_optimum(p_data, p_model)
        torch.testing.assert_close(value, -g.LOG_4 + 2 * g.jensen_shannon(p_data, p_model))
        for other in (torch.full_like(x, 0.5), torch.sigmoid(x)):
            assert value >= g.value_on_grid(other, p_data, p_model), "D* maximises V"


def test_jensen_shannon_properties():
    p, q = torch.tensor([0.5, 0.5, 0.0, 0.0]), torch.tensor([0.0, 0.0, 0.5, 0.5])
    assert g.jensen_shannon(p, q).item() == pytest.approx(math.log(2)), "disjoint: log 2"
    assert g.jensen_shannon(p, p).item() == pytest.approx(0.0)
    r = torch.tensor([0.1, 0.2, 0.3, 0.4])
    assert g.jensen_shannon(p, r).item() == pytest.approx(g.jensen_shannon(r, p).item())


def test_trained_discriminator_approaches_the_optimal_one():
    data = divergences.GaussianMixture1D((1.0,), (0.0,), (1.0,))
    model = divergences.GaussianMixture1D((1.0,), (1.5,), (0.7,))
    sampler = torch.Generator().manual_seed(0)
    discriminator = g.train_discriminator(
        lambda n: data.sample(n, sampler), lambda n: model.sample(n, sampler), steps=1500
    )
    x = torch.linspace(-2.0, 3.0, 51)
    with torch.no_grad():
        learned = torch.sigmoid(discriminator(x.unsqueeze(1))).squeeze(1)
    optimal = g.optimal_discriminator(data.log_prob(x).exp(), model.log_prob(x).exp()).float()
    assert (learned - optimal).abs().max() < 0.06


def test_gan_1d_learns_a_gaussian_and_records_its_run():
    target = divergences.GaussianMixture1D((1.0,), (3.0,), (0.5,))
    config = g.GAN1DConfig(steps=1500, snapshot_every=500, snapshot_samples=2000)
    run = g.train_gan_1d(target, config, seed=0)
    assert [step for step, _ in run.snapshots] == [0, 500, 1000, 1500]
    assert abs(run.snapshots[0][1].mean().item() - 3.0) > 1.5, "starts far from the data"
    assert abs(run.final_samples.mean().item() - 3.0) < 0.3
    assert abs(run.final_samples.std().item() - 0.5) < 0.25
    assert len(run.discriminator_losses) == len(run.d_fake) == 1500


def test_mode_coverage():
    target = divergences.GaussianMixture1D((0.5, 0.5), (-2.0, 2.0), (0.3, 0.3))
    both = torch.cat([torch.full((50,), -2.0), torch.full((50,), 2.0)])
    assert g.mode_coverage(both, target) == [0.5, 0.5]
    assert g.mode_coverage(torch.full((10,), 2.1), target) == [0.0, 1.0]
