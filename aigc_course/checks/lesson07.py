"""Checks for lesson 07: one DCGAN training step, and the Fréchet distance.

(The discriminator and generator losses are lesson 03's: ``check.discriminator_loss`` and
``check.generator_loss_non_saturating``.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from aigc_course import gan_theory, metrics
from aigc_course.checks._core import (
    Case,
    Draws,
    as_number,
    draw_dtype,
    draw_int,
    number_verdict,
    randn,
    run_check,
)
from aigc_course.i18n import _
from aigc_course.models.dcgan import Discriminator, GANConfig, Generator

_CONFIG = GANConfig(latent_dim=8, channels=8)


def _fresh(seed: int = 0):
    torch.manual_seed(seed)
    generator, discriminator = Generator(_CONFIG), Discriminator(_CONFIG)
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=2e-3, betas=(0.5, 0.999))
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=2e-3, betas=(0.5, 0.999))
    return generator, discriminator, optimizer_g, optimizer_d


Snapshot = dict[str, list[tuple[str, torch.Tensor]]]


def _snapshot(generator: torch.nn.Module, discriminator: torch.nn.Module) -> Snapshot:
    return {
        name: [(n, p.detach().clone()) for n, p in network.named_parameters()]
        for name, network in (("generator", generator), ("discriminator", discriminator))
    }


def _two_steps(step: Callable[..., Any], batch: int = 4) -> tuple[list, list[Snapshot]]:
    """Run ``step`` on fresh networks, once per batch: its results, and the parameters before
    the first step and after each step."""
    with torch.random.fork_rng(devices=[]):  # the same networks every time, RNG untouched
        networks = _fresh()
    snapshots = [_snapshot(*networks[:2])]
    results = []
    for real, z in _batches(batch):
        results.append(step(*networks, real.clone(), z.clone()))
        snapshots.append(_snapshot(*networks[:2]))
    return results, snapshots


@functools.cache
def _batches(batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    data = torch.Generator().manual_seed(1)
    return [
        (
            torch.rand(batch, 1, 28, 28, generator=data) * 2 - 1,
            torch.randn(batch, 8, generator=data),
        )
        for _index in range(2)
    ]


@functools.cache
def _reference(batch: int) -> tuple[list, list[Snapshot]]:
    """Two correct steps (computed once per batch size: they are the same for every learner)."""

    def step(*arguments) -> tuple[float, float]:
        result = gan_theory.gan_step(*arguments)
        return result.loss_d.item(), result.loss_g.item()

    return _two_steps(step, batch)


def _differs(got: Snapshot, want: Snapshot, network: str) -> str | None:
    """The name of the first parameter of ``network`` that differs, or None."""
    for (name, a), (_other_name, b) in zip(got[network], want[network], strict=True):
        if not torch.allclose(a, b, atol=1e-5):
            return name
    return None


def _advice(network: str) -> str:
    """How a correct step updates ``network`` (in the current language)."""
    if network == "discriminator":
        return _(
            "D's step is loss_d on D(real) and D(fake.detach()), then "
            "optimizer_d.zero_grad(), loss_d.backward(), optimizer_d.step(); G's step must not "
            "step D"
        )
    return _(
        "G's gradients must come from loss_g alone: use fake.detach() in D's loss (so "
        "that loss_d does not reach G), call optimizer_g.zero_grad() right before "
        "loss_g.backward(), and step G with optimizer_g"
    )


def _loss_formula(network: str) -> str:
    """How ``network``'s loss is computed (in the current language)."""
    if network == "discriminator":
        return _(
            "-(mean log D(x) + mean log(1 - D(G(z)))), real samples with label 1 and "
            "fakes with label 0"
        )
    return _(
        "compute it with the *updated* D, on the same fakes, with the non-saturating "
        "loss -mean log D(G(z))"
    )


def _the_network(network: str) -> str:
    """The network's name as a subject, in the current language: the discriminator, the generator."""
    return _("the discriminator") if network == "discriminator" else _("the generator")


def _the_parameter(network: str, name: str) -> str:
    """The parameter ``name`` of ``network`` as a subject, in the current language."""
    if network == "discriminator":
        return _("the discriminator's {name}").format(name=name)
    return _("the generator's {name}").format(name=name)


def _step_problem(
    step: int, losses: Any, snapshots: list[Snapshot], batch: int
) -> tuple[str, str] | None:
    """After the learner's step number ``step`` (0 or 1): what differs from a correct step and
    the message that explains it, or None."""
    expected_losses, expected = _reference(batch)
    if not isinstance(losses, tuple) or len(losses) != 2:
        return _("the result"), _("return the two losses as a tuple (loss_d, loss_g)")
    values = [as_number(v) for v in losses]
    # D's loss and update come first; G's loss is computed with the updated D.
    for index, network in enumerate(("discriminator", "generator")):
        value, want = values[index], expected_losses[step][index]
        if value is None or abs(value - want) > 1e-4:
            name = ("loss_d", "loss_g")[index]
            return name, _("{name} is {value}, expected {want}: {formula}").format(
                name=name, value=repr(value), want=f"{want:.5f}", formula=_loss_formula(network)
            )
        name = _differs(snapshots[step + 1], expected[step + 1], network)
        if name is None:
            continue
        if _differs(snapshots[step + 1], snapshots[step], network) is None:
            optimizer = {"generator": "optimizer_g", "discriminator": "optimizer_d"}[network]
            subject = _the_network(network)
            return subject, _(
                "{network} did not change: call {optimizer}.step() after its loss's "
                "backward() (and zero its gradients before the backward, not between backward "
                "and step)"
            ).format(network=subject, optimizer=optimizer)
        subject = _the_parameter(network, name)
        return subject, _("after one step {subject} differs from a correct step: {advice}").format(
            subject=subject, advice=_advice(network)
        )
    return None


def gan_training_step(function: Callable[..., tuple], *, strict: bool | None = None) -> bool:
    """Check ``function(generator, discriminator, optimizer_g, optimizer_d, real, z)``: one D step
    on real and detached fakes, then one G step with the non-saturating loss; returns (loss_d, loss_g).

    The check runs *two* steps on the same networks: in real training G's backward fills D's
    gradients too, so a step that forgets ``zero_grad()`` goes wrong from the second step on."""

    def run(batch: int):
        return _two_steps(function, batch)

    def verdict_for(batch: int) -> Callable[[Any], str | None]:
        def verdict(result) -> str | None:
            all_losses, snapshots = result
            problem = _step_problem(0, all_losses[0], snapshots, batch)
            if problem is not None:
                return problem[1]
            problem = _step_problem(1, all_losses[1], snapshots, batch)
            if problem is not None:
                return (
                    _(
                        "the first step is right, but the second is not: gradients left over from "
                        "the previous step were added in (backward *adds* to .grad). Call "
                        "optimizer_d.zero_grad() before loss_d.backward() and "
                        "optimizer_g.zero_grad() before loss_g.backward(): G's backward also fills "
                        "D's gradients"
                    )
                    + "\n   "
                    + _("after the second step, {subject} differs").format(subject=problem[0])
                )
            return None

        return verdict

    cases = [
        Case(
            _("two steps on a small DCGAN (batch {batch})").format(batch=batch),
            (batch,),
            verdict_for(batch),
        )
        for batch in (4, 3)
    ]
    hint = _(
        "fake = G(z); loss_d on D(real) and D(fake.detach()); zero D's grads, backward, step D; "
        "then, with the updated D, loss_g on D(fake); zero G's grads, backward, step G"
    )
    return run_check(
        "gan_training_step", run if callable(function) else function, cases, hint, strict
    )


def _sqrtm(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def _frechet_mistakes(mean_1, cov_1, mean_2, cov_2) -> dict[str, float]:
    squared = (mean_1 - mean_2).pow(2).sum().item()
    traces = (torch.trace(cov_1) + torch.trace(cov_2)).item()
    root_1 = _sqrtm(cov_1)
    middle = root_1 @ cov_2 @ root_1
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum().item()
    product = cov_1 @ cov_2
    return {
        _(
            "the square root is the *matrix* square root (cov_1 cov_2)^1/2, not the square root "
            "of each entry"
        ): squared + traces - 2 * torch.sqrt(product).trace().item(),
        _(
            "(cov_1 cov_2)^1/2 is not cov_1^1/2 cov_2^1/2 (the two are equal only when the "
            "covariances commute): take the eigenvalues of cov_1^1/2 cov_2 cov_1^1/2"
        ): squared + traces - 2 * torch.trace(_sqrtm(cov_1) @ _sqrtm(cov_2)).item(),
        _("the factor 2: ... + tr(cov_1) + tr(cov_2) - 2 tr((cov_1 cov_2)^1/2)"): squared
        + traces
        - trace_sqrt,
        _("the sign of the last term: - 2 tr((cov_1 cov_2)^1/2)"): squared
        + traces
        + 2 * trace_sqrt,
        _("square the distance between the means: |mean_1 - mean_2|^2, not |mean_1 - mean_2|"): (
            squared**0.5 + traces - 2 * trace_sqrt
        ),
        _("return the *squared* Fréchet distance (FID), without a square root"): max(
            squared + traces - 2 * trace_sqrt, 0.0
        )
        ** 0.5,
    }


def frechet_distance(function: Callable[..., float], *, strict: bool | None = None) -> bool:
    """Check ``function(mean_1, cov_1, mean_2, cov_2)``: the squared Fréchet distance of two Gaussians.

    Edge cases: identical Gaussians (0), diagonal covariances. Drawn: 1 to 6 dimensions, singular
    (low-rank) and full covariances, float32 and float64; a float32 answer gets float32's
    tolerance."""
    generator = torch.Generator().manual_seed(2)
    mean_1, mean_2 = (
        torch.randn(5, generator=generator, dtype=torch.float64),
        torch.randn(5, generator=generator, dtype=torch.float64),
    )
    roots = [torch.randn(5, 5, generator=generator, dtype=torch.float64) for _index in range(2)]
    cov_1, cov_2 = (r @ r.T + 0.1 * torch.eye(5, dtype=torch.float64) for r in roots)

    def expect(arguments: tuple) -> Callable[[Any], str | None]:
        scale = float(sum(torch.trace(c) for c in arguments[1::2]))
        value = metrics.frechet_distance(*arguments)
        return number_verdict(value, _frechet_mistakes(*arguments), _("the distance"), scale=scale)

    identical = (mean_1, cov_1, mean_1, cov_1)
    diagonal = (
        mean_1,
        torch.diag(torch.diagonal(cov_1)),
        mean_2,
        torch.diag(torch.diagonal(cov_2)),
    )
    full = (mean_1, cov_1, mean_2, cov_2)
    cases = [
        Case(
            _("identical Gaussians (answer: 0)"),
            identical,
            expect(identical),
        ),
        Case(
            _("diagonal covariances"),
            diagonal,
            expect(diagonal),
            hint=_("for diagonal covariances the trace term is sum (sqrt(var_1) - sqrt(var_2))^2"),
        ),
        Case(
            _("full covariances"),
            full,
            expect(full),
            hint=_(
                "tr((S1 S2)^1/2) = sum of the square roots of the eigenvalues of S1^1/2 S2 "
                "S1^1/2 (a symmetric matrix: use torch.linalg.eigh / eigvalsh)"
            ),
        ),
    ]
    hint = _("|mean_1 - mean_2|^2 + tr(cov_1) + tr(cov_2) - 2 tr((cov_1 cov_2)^1/2)")
    return run_check("frechet_distance", function, cases, hint, strict, FRECHET)


def _draw_gaussian_pair(generator: torch.Generator) -> tuple[str, tuple, dict]:
    dtype, dims = draw_dtype(generator), draw_int(generator, 1, 6)
    ranks = [draw_int(generator, 1, dims + 2) for _index in range(2)]
    roots = [randn(generator, dims, rank, dtype=dtype) for rank in ranks]
    covariances = [r @ r.T for r in roots]
    means = [randn(generator, dims, dtype=dtype) for _index in range(2)]
    description = _("{dims} dimensions, covariances of rank <= {ranks}, {dtype}").format(
        dims=dims, ranks=ranks, dtype=dtype
    )
    return description, (means[0], covariances[0], means[1], covariances[1]), {}


FRECHET = Draws(_draw_gaussian_pair, metrics.frechet_distance)
frechet_distance.draws = FRECHET
