"""Checks for lesson 03: the GAN losses, the optimal discriminator, the Jensen-Shannon divergence."""

from __future__ import annotations

from collections.abc import Callable

import torch

from aigc_course import gan_theory
from aigc_course.checks._core import Case, run_check

_REAL = torch.tensor([2.0, -1.0, 0.5, 4.0])
_FAKE = torch.tensor([-3.0, 0.0, 1.0])


def discriminator_loss(
    function: Callable[..., torch.Tensor], *, strict: bool | None = None
) -> bool:
    """Check ``function(real_logits, fake_logits)``: -(mean log D(x) + mean log(1 - D(G(z))))."""
    extreme_real, extreme_fake = torch.tensor([-200.0]), torch.tensor([200.0])
    cases = [
        Case("hand-made logits", (_REAL, _FAKE), gan_theory.discriminator_loss(_REAL, _FAKE)),
        Case(
            "a completely fooled discriminator (real logit -200, fake logit 200; answer: 400)",
            (extreme_real, extreme_fake),
            gan_theory.discriminator_loss(extreme_real, extreme_fake),
            hint="log(sigmoid(a)) underflows for large |a|: use -F.softplus(-a) for log D and "
            "-F.softplus(a) for log(1 - D), or F.binary_cross_entropy_with_logits",
        ),
        Case(
            "swapped arguments must give a different value",
            (_FAKE, _REAL),
            gan_theory.discriminator_loss(_FAKE, _REAL),
            hint="real samples have label 1 (log D), fakes label 0 (log(1 - D))",
        ),
    ]
    hint = "the loss is -V: F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()"
    return run_check("discriminator_loss", function, cases, hint, strict)


def generator_loss_non_saturating(
    function: Callable[..., torch.Tensor], *, strict: bool | None = None
) -> bool:
    """Check ``function(fake_logits)``: -mean log D(G(z))."""
    confident = torch.tensor([-8.0, -6.0])
    cases = [
        Case(
            "hand-made logits",
            (_FAKE,),
            gan_theory.generator_loss_non_saturating(_FAKE),
            hint="non-saturating means -log D(G(z)), not log(1 - D(G(z)))",
        ),
        Case(
            "a confident discriminator (D(G(z)) near 0: a large loss)",
            (confident,),
            gan_theory.generator_loss_non_saturating(confident),
        ),
    ]
    hint = "-log(sigmoid(a)) = F.softplus(-a); take the mean over the batch"
    return run_check("generator_loss_non_saturating", function, cases, hint, strict)


def optimal_discriminator(
    function: Callable[..., torch.Tensor], *, strict: bool | None = None
) -> bool:
    """Check ``function(p_data, p_model)``: D*(x) = p_data / (p_data + p_model) elementwise."""
    p_data = torch.tensor([0.4, 0.1, 0.3, 0.2])
    p_model = torch.tensor([0.1, 0.4, 0.3, 0.2])
    cases = [
        Case(
            "two distributions on 4 points",
            (p_data, p_model),
            gan_theory.optimal_discriminator(p_data, p_model),
        ),
        Case(
            "p_model = p_data (answer: 1/2 everywhere)",
            (p_data, p_data.clone()),
            torch.full((4,), 0.5),
            hint="when the generator matches the data, D* cannot do better than a coin flip",
        ),
    ]
    hint = "maximise p_data log D + p_model log(1 - D) for each x: set the derivative to zero"
    return run_check("optimal_discriminator", function, cases, hint, strict)


def jensen_shannon(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(p, q)``: 1/2 KL(p || m) + 1/2 KL(q || m) with m = (p + q) / 2."""
    p, q = torch.tensor([0.5, 0.5, 0.0, 0.0]), torch.tensor([0.0, 0.0, 0.5, 0.5])
    r = torch.tensor([0.1, 0.2, 0.3, 0.4])
    cases = [
        Case(
            "disjoint supports (answer: log 2)",
            (p, q),
            torch.log(torch.tensor(2.0)),
            hint="terms with p = 0 contribute 0: torch.xlogy avoids 0 * log 0 = nan",
        ),
        Case("p = q (answer: 0)", (r, r.clone()), torch.tensor(0.0)),
        Case("overlapping distributions", (p, r), gan_theory.jensen_shannon(p, r)),
    ]
    hint = "m = (p + q) / 2; JSD = 0.5 * KL(p || m) + 0.5 * KL(q || m)"
    return run_check("jensen_shannon", function, cases, hint, strict)
