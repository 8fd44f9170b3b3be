"""Checks for lesson 07: one DCGAN training step, and the Fréchet distance.

(The discriminator and generator losses are lesson 03's: ``check.discriminator_loss`` and
``check.generator_loss_non_saturating``.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from aigc_course import gan_theory, metrics
from aigc_course.checks._core import Case, run_check
from aigc_course.models.dcgan import Discriminator, GANConfig, Generator

_CONFIG = GANConfig(latent_dim=8, channels=8)


def _fresh(seed: int = 0):
    torch.manual_seed(seed)
    generator, discriminator = Generator(_CONFIG), Discriminator(_CONFIG)
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=2e-3, betas=(0.5, 0.999))
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=2e-3, betas=(0.5, 0.999))
    return generator, discriminator, optimizer_g, optimizer_d


def gan_training_step(function: Callable[..., tuple], *, strict: bool | None = None) -> bool:
    """Check ``function(generator, discriminator, optimizer_g, optimizer_d, real, z)``: one D step
    on real and detached fakes, then one G step with the non-saturating loss; returns (loss_d, loss_g)."""
    generator_data = torch.Generator().manual_seed(1)
    real = torch.rand(8, 1, 28, 28, generator=generator_data) * 2 - 1
    z = torch.randn(8, 8, generator=generator_data)
    reference = _fresh()
    expected = gan_theory.gan_step(*reference, real, z)
    expected_d, expected_g = expected.loss_d, expected.loss_g

    def run(_):
        networks = _fresh()
        return networks, function(*networks, real, z)

    def verdict(result) -> str | None:
        (generator, discriminator, _, _), losses = result
        if not isinstance(losses, tuple) or len(losses) != 2:
            return "return the two losses as a tuple (loss_d, loss_g)"
        values = [v.item() if isinstance(v, torch.Tensor) else v for v in losses]
        if abs(values[0] - expected_d.item()) > 1e-4:
            return f"loss_d is {values[0]!r}, expected {expected_d.item():.5f}: -(mean log D(x) + mean log(1 - D(G(z))))"
        if abs(values[1] - expected_g.item()) > 1e-4:
            return (
                f"loss_g is {values[1]!r}, expected {expected_g.item():.5f}: compute it with the *updated* D, "
                "on the same fakes, with the non-saturating loss -mean log D(G(z))"
            )
        for name, (got, want) in (
            ("discriminator", (discriminator, reference[1])),
            ("generator", (generator, reference[0])),
        ):
            for (parameter_name, a), b in zip(
                got.named_parameters(), want.parameters(), strict=True
            ):
                if not torch.allclose(a, b, atol=1e-5):
                    return (
                        f"after the step the {name}'s {parameter_name} differs from a correct step: D's loss "
                        "must use fake.detach() and only D's optimiser steps after it; G's loss steps only G"
                    )
        return None

    cases = [Case("one step on a small DCGAN (batch 8)", (None,), verdict)]
    hint = (
        "fake = G(z); loss_d on D(real) and D(fake.detach()); zero D's grads, backward, step D; "
        "then loss_g on D(fake); zero G's grads, backward, step G"
    )
    return run_check("gan_training_step", run, cases, hint, strict)


def frechet_distance(function: Callable[..., float], *, strict: bool | None = None) -> bool:
    """Check ``function(mean_1, cov_1, mean_2, cov_2)``: the squared Fréchet distance of two Gaussians."""
    generator = torch.Generator().manual_seed(2)
    mean_1, mean_2 = (
        torch.randn(5, generator=generator, dtype=torch.float64),
        torch.randn(5, generator=generator, dtype=torch.float64),
    )
    roots = [torch.randn(5, 5, generator=generator, dtype=torch.float64) for _ in range(2)]
    cov_1, cov_2 = (r @ r.T + 0.1 * torch.eye(5, dtype=torch.float64) for r in roots)

    def expect(value: float):
        def verdict(got) -> str | None:
            got = got.item() if isinstance(got, torch.Tensor) and got.numel() == 1 else got
            if not isinstance(got, float):
                return f"return a number, got {type(got).__name__}"
            return (
                None
                if abs(got - value) <= 1e-6 * max(1.0, abs(value))
                else f"expected {value:.6f}, got {got:.6f}"
            )

        return verdict

    cases = [
        Case("identical Gaussians (answer: 0)", (mean_1, cov_1, mean_1, cov_1), expect(0.0)),
        Case(
            "diagonal covariances",
            (mean_1, torch.diag(torch.diagonal(cov_1)), mean_2, torch.diag(torch.diagonal(cov_2))),
            expect(
                metrics.frechet_distance(
                    mean_1,
                    torch.diag(torch.diagonal(cov_1)),
                    mean_2,
                    torch.diag(torch.diagonal(cov_2)),
                )
            ),
            hint="for diagonal covariances the trace term is sum (sqrt(var_1) - sqrt(var_2))^2",
        ),
        Case(
            "full covariances",
            (mean_1, cov_1, mean_2, cov_2),
            expect(metrics.frechet_distance(mean_1, cov_1, mean_2, cov_2)),
            hint="tr((S1 S2)^1/2) = sum of the square roots of the eigenvalues of S1^1/2 S2 S1^1/2 "
            "(a symmetric matrix: use torch.linalg.eigh / eigvalsh)",
        ),
    ]
    hint = "|mean_1 - mean_2|^2 + tr(cov_1) + tr(cov_2) - 2 tr((cov_1 cov_2)^1/2)"
    return run_check("frechet_distance", function, cases, hint, strict)
