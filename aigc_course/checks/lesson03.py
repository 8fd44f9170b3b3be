"""Checks for lesson 03: the GAN losses, the optimal discriminator, the Jensen-Shannon divergence."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from aigc_course import gan_theory
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

_REAL = torch.tensor([2.0, -1.0, 0.5, 4.0])
_FAKE = torch.tensor([-3.0, 0.0, 1.0])


def _discriminator_mistakes(real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
    loss = F.softplus(-real).mean() + F.softplus(fake).mean()
    return {
        _(
            "the labels are swapped: real samples have label 1 (the term log D(x)), fakes label 0 "
            "(the term log(1 - D(G(z))))"
        ): F.softplus(real).mean() + F.softplus(-fake).mean(),
        _(
            "the sign: D maximises V, so its loss is -V = -(mean log D(x) + "
            "mean log(1 - D(G(z)))), which is >= 0"
        ): -loss,
        _("take the mean over each batch, not the sum"): F.softplus(-real).sum()
        + F.softplus(fake).sum(),
        _(
            "average the real term and the fake term separately, then add them (one mean over "
            "both batches weights them by their sizes)"
        ): torch.cat([F.softplus(-real), F.softplus(fake)]).mean(),
        _(
            "the fake term is missing: add mean log(1 - D(G(z))) = -F.softplus(fake_logits).mean()"
        ): F.softplus(-real).mean(),
        _(
            "log(sigmoid(a)) underflows to log 0 = -inf for large |a|: compute log D = "
            "-F.softplus(-a) and log(1 - D) = -F.softplus(a) from the logits"
        ): -(torch.sigmoid(real).log().mean() + (1 - torch.sigmoid(fake)).log().mean()),
        _("the arguments are logits (any real number), not probabilities: D = sigmoid(logit)"): -(
            real.log().mean() + (1 - fake).log().mean()
        ),
    }


def discriminator_loss(
    function: Callable[..., torch.Tensor], *, strict: bool | None = None
) -> bool:
    """Check ``function(real_logits, fake_logits)``: -(mean log D(x) + mean log(1 - D(G(z)))).

    Edge cases: extreme logits (underflow of log sigmoid), swapped batches. Drawn: batch sizes 1
    to 9 (real and fake differ), logit scales up to 60, float32 and float64; values and
    gradients.
    """
    extreme_real, extreme_fake = torch.tensor([-200.0]), torch.tensor([200.0])
    cases = [
        Case(
            _("hand-made logits (4 real, 3 fake)"),
            (_REAL, _FAKE),
            gan_theory.discriminator_loss(_REAL, _FAKE),
            mistakes=_discriminator_mistakes(_REAL, _FAKE),
        ),
        Case(
            _("a completely fooled discriminator (real logit -200, fake logit 200; answer: 400)"),
            (extreme_real, extreme_fake),
            gan_theory.discriminator_loss(extreme_real, extreme_fake),
            hint=_(
                "log(sigmoid(a)) underflows for large |a|: use -F.softplus(-a) for log D and "
                "-F.softplus(a) for log(1 - D), or F.binary_cross_entropy_with_logits"
            ),
            mistakes=_discriminator_mistakes(extreme_real, extreme_fake),
        ),
        Case(
            _("swapped arguments must give a different value"),
            (_FAKE, _REAL),
            gan_theory.discriminator_loss(_FAKE, _REAL),
            hint=_("real samples have label 1 (log D), fakes label 0 (log(1 - D))"),
            mistakes=_discriminator_mistakes(_FAKE, _REAL),
        ),
    ]
    hint = _("the loss is -V: F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()")
    return run_check("discriminator_loss", function, cases, hint, strict, DISCRIMINATOR_LOSS)


def _generator_mistakes(fake: torch.Tensor) -> dict[str, torch.Tensor]:
    loss = F.softplus(-fake).mean()
    return {
        _(
            "that is the saturating loss mean log(1 - D(G(z))) (the minimax form, whose gradient "
            "vanishes when D rejects the fakes): use -mean log D(G(z)) = F.softplus(-a).mean()"
        ): -F.softplus(fake).mean(),
        _(
            "that is -mean log(1 - D(G(z))), the discriminator's loss on fakes (label 0): G wants "
            "D to say *real*, so its loss is -mean log D(G(z))"
        ): F.softplus(fake).mean(),
        _("the sign: the loss is -mean log D(G(z)), which is >= 0 (G minimises it)"): -loss,
        _("take the mean over the batch, not the sum"): F.softplus(-fake).sum(),
        _(
            "log(sigmoid(a)) underflows to log 0 = -inf for very negative logits: -log D(G(z)) = "
            "F.softplus(-a)"
        ): -torch.sigmoid(fake).log().mean(),
    }


def generator_loss_non_saturating(
    function: Callable[..., torch.Tensor], *, strict: bool | None = None
) -> bool:
    """Check ``function(fake_logits)``: -mean log D(G(z)).

    Edge cases: confident and certain discriminators. Drawn: batch sizes 1 to 9, logit scales up
    to 60, float32 and float64; values and gradients.
    """
    confident = torch.tensor([-8.0, -6.0])
    certain = torch.tensor([-200.0])
    cases = [
        Case(
            _("hand-made logits"),
            (_FAKE,),
            gan_theory.generator_loss_non_saturating(_FAKE),
            hint=_("non-saturating means -log D(G(z)), not log(1 - D(G(z)))"),
            mistakes=_generator_mistakes(_FAKE),
        ),
        Case(
            _("a confident discriminator (D(G(z)) near 0: a large loss)"),
            (confident,),
            gan_theory.generator_loss_non_saturating(confident),
            mistakes=_generator_mistakes(confident),
        ),
        Case(
            _("a discriminator certain the fake is fake (logit -200; answer: 200)"),
            (certain,),
            gan_theory.generator_loss_non_saturating(certain),
            hint=_("sigmoid(-200) is 0 in float32 and log 0 = -inf: use F.softplus(-a)"),
            mistakes=_generator_mistakes(certain),
        ),
    ]
    hint = _("-log(sigmoid(a)) = F.softplus(-a); take the mean over the batch")
    return run_check("generator_loss_non_saturating", function, cases, hint, strict, GENERATOR_LOSS)


def optimal_discriminator(
    function: Callable[..., torch.Tensor], *, strict: bool | None = None
) -> bool:
    """Check ``function(p_data, p_model)``: D*(x) = p_data / (p_data + p_model) elementwise.

    Edge cases: p_model = p_data (1/2). Drawn: 1 to 3 dimensions, float32 and float64; values
    and gradients.
    """
    p_data = torch.tensor([0.4, 0.1, 0.3, 0.2])
    p_model = torch.tensor([0.1, 0.4, 0.3, 0.2])
    mistakes = {
        _("swapped: D* is the probability that x is *real*, p_data / (p_data + p_model)"): p_model
        / (p_data + p_model),
        _(
            "D* = p_data / (p_data + p_model), not the density ratio p_data / p_model (a "
            "probability is at most 1)"
        ): p_data / p_model,
        _(
            "D* is 1/2 only where p_model = p_data: elsewhere it is p_data / (p_data + p_model)"
        ): torch.full((4,), 0.5),
        _("elementwise: divide by p_data + p_model at each x, not by a sum over all points"): p_data
        / (p_data + p_model).sum(),
    }
    cases = [
        Case(
            _("two distributions on 4 points"),
            (p_data, p_model),
            gan_theory.optimal_discriminator(p_data, p_model),
            mistakes=mistakes,
        ),
        Case(
            _("p_model = p_data (answer: 1/2 everywhere)"),
            (p_data, p_data.clone()),
            torch.full((4,), 0.5),
            hint=_("when the generator matches the data, D* cannot do better than a coin flip"),
        ),
    ]
    hint = _("maximise p_data log D + p_model log(1 - D) for each x: set the derivative to zero")
    return run_check("optimal_discriminator", function, cases, hint, strict, OPTIMAL_DISCRIMINATOR)


def _kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum()


def _jensen_shannon_mistakes(p: torch.Tensor, q: torch.Tensor) -> dict[str, Any]:
    m = (p + q) / 2
    jsd = 0.5 * _kl(p, m) + 0.5 * _kl(q, m)
    return {
        _(
            "0 * log 0 gave nan: terms with p = 0 contribute 0; use torch.xlogy(p, p) - "
            "torch.xlogy(p, m)"
        ): 0.5 * (p * (p / m).log()).sum() + 0.5 * (q * (q / m).log()).sum(),
        _(
            "the JSD compares p and q with their mixture m = (p + q) / 2, not with each other: "
            "1/2 KL(p || m) + 1/2 KL(q || m) (KL(p || q) is infinite where q = 0 < p)"
        ): [
            _kl(p, q),
            0.5 * _kl(p, q) + 0.5 * _kl(q, p),
        ],
        _("the factor 1/2: JSD = 1/2 KL(p || m) + 1/2 KL(q || m), at most log 2"): 2 * jsd,
        _("the mixture is m = (p + q) / 2, a distribution (you used p + q)"): 0.5 * _kl(p, p + q)
        + 0.5 * _kl(q, p + q),
        _("both halves: JSD = 1/2 KL(p || m) + 1/2 KL(q || m)"): 0.5 * _kl(p, m),
        _("the units: use the natural log (nats; the maximum is log 2), not bits"): jsd
        / math.log(2),
    }


def jensen_shannon(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(p, q)``: 1/2 KL(p || m) + 1/2 KL(q || m) with m = (p + q) / 2.

    Edge cases: disjoint supports (log 2), p = q (0). Drawn: 1 to 8 outcomes, float32 and
    float64; values, and gradients along the simplex.
    """
    p, q = torch.tensor([0.5, 0.5, 0.0, 0.0]), torch.tensor([0.0, 0.0, 0.5, 0.5])
    r = torch.tensor([0.1, 0.2, 0.3, 0.4])
    cases = [
        Case(
            _("disjoint supports (answer: log 2)"),
            (p, q),
            torch.log(torch.tensor(2.0)),
            hint=_("terms with p = 0 contribute 0: torch.xlogy avoids 0 * log 0 = nan"),
            mistakes=_jensen_shannon_mistakes(p, q),
        ),
        Case(_("p = q (answer: 0)"), (r, r.clone()), torch.tensor(0.0)),
        Case(
            _("overlapping distributions"),
            (p, r),
            gan_theory.jensen_shannon(p, r),
            mistakes=_jensen_shannon_mistakes(p, r),
        ),
    ]
    # a formula, the same in every language: not translated
    hint = "m = (p + q) / 2; JSD = 0.5 * KL(p || m) + 0.5 * KL(q || m)"
    return run_check("jensen_shannon", function, cases, hint, strict, JENSEN_SHANNON)


# --- inputs drawn per call: batch sizes (real and fake differ), logit scales up to 60 ---------------


def _draw_logits(generator: torch.Generator, count: int) -> tuple[str, tuple, dict]:
    dtype, scale = draw_dtype(generator), draw_choice(generator, (0.5, 3.0, 60.0))
    sizes = [draw_int(generator, 1, 9) for _index in range(count)]
    logits = tuple(scale * randn(generator, size, dtype=dtype) for size in sizes)
    description = _("logits of batch sizes {sizes} at scale {scale}, {dtype}").format(
        sizes=sizes, scale=f"{scale:g}", dtype=dtype
    )
    return description, logits, {}


def _draw_densities(generator: torch.Generator, vector: bool) -> tuple[str, tuple, dict]:
    dtype = draw_dtype(generator)
    shape = (draw_int(generator, 1, 8),) if vector else draw_shape(generator, 1, 3)
    p, q = (torch.softmax(2 * randn(generator, *shape, dtype=dtype), -1) for _index in range(2))
    return _("distributions of shape {shape}, {dtype}").format(shape=shape, dtype=dtype), (p, q), {}


DISCRIMINATOR_LOSS = Draws(
    lambda g: _draw_logits(g, 2),
    gan_theory.discriminator_loss,
    gradients=True,
    mistakes=_discriminator_mistakes,
)
GENERATOR_LOSS = Draws(
    lambda g: _draw_logits(g, 1),
    gan_theory.generator_loss_non_saturating,
    gradients=True,
    mistakes=_generator_mistakes,
)
OPTIMAL_DISCRIMINATOR = Draws(
    lambda g: _draw_densities(g, vector=False), gan_theory.optimal_discriminator, gradients=True
)
JENSEN_SHANNON = Draws(
    lambda g: _draw_densities(g, vector=True),
    gan_theory.jensen_shannon,
    gradients="simplex",
    mistakes=_jensen_shannon_mistakes,
)
discriminator_loss.draws = DISCRIMINATOR_LOSS
generator_loss_non_saturating.draws = GENERATOR_LOSS
optimal_discriminator.draws = OPTIMAL_DISCRIMINATOR
jensen_shannon.draws = JENSEN_SHANNON
