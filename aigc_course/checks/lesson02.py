"""Checks for lesson 02: the Gaussian MLE, bigram counts, smoothed probabilities, average NLL."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from aigc_course.checks._core import (
    Case,
    Draws,
    compare_tensor,
    draw_choice,
    draw_dtype,
    draw_int,
    number_verdict,
    randn,
    run_check,
)
from aigc_course.i18n import _
from aigc_course.models import bigram


def gaussian_mle(function: Callable[..., tuple], *, strict: bool | None = None) -> bool:
    """Check ``function(x) -> (mean, std)``: the maximum-likelihood Gaussian for samples ``x``.

    Edge cases: four hand-made samples. Drawn: 1 to 80 samples, several means and spreads,
    float32 and float64; values and gradients.
    """
    generator = torch.Generator().manual_seed(0)
    x = 3.0 + 2.0 * torch.randn(50, generator=generator)
    small = torch.tensor([1.0, 2.0, 3.0, 6.0])

    def expect(samples: torch.Tensor):
        mean = samples.mean()
        std = ((samples - mean) ** 2).mean().sqrt()

        def verdict(got) -> str | None:
            if not isinstance(got, tuple) or len(got) != 2:
                return _("expected a tuple (mean, std), got {type}").format(type=type(got).__name__)
            problem = compare_tensor(got[0], mean)
            if problem:
                return _("the mean: {problem}").format(problem=problem)
            problem = compare_tensor(got[1], std)
            return _("the std: {problem}").format(problem=problem) if problem else None

        return verdict

    def mistakes(samples: torch.Tensor) -> dict[str, tuple]:
        mean = samples.mean()
        variance = ((samples - mean) ** 2).mean()
        return {
            _(
                "the std divides by n - 1 (torch.std's default, the unbiased estimate): the MLE "
                "divides by n, x.std(unbiased=False)"
            ): (mean, samples.std(unbiased=True)),
            _("you returned the variance: the std is its square root"): (mean, variance),
            _(
                "subtract the mean before squaring: std = sqrt(mean of (x - mean)^2), not "
                "sqrt(mean of x^2)"
            ): (mean, (samples**2).mean().sqrt()),
            _("the order: return (mean, std), the mean first"): (variance.sqrt(), mean),
        }

    cases = [
        Case(
            _("x = [1, 2, 3, 6] (answer: mean 3, std sqrt(3.5))"),
            (small,),
            expect(small),
            mistakes=mistakes(small),
        ),
        Case(_("50 samples"), (x,), expect(x), mistakes=mistakes(x)),
    ]
    hint = _("mean = x.mean(); std = sqrt(mean of (x - mean)^2), i.e. x.std(unbiased=False)")
    return run_check("gaussian_mle", function, cases, hint, strict, GAUSSIAN_MLE)


def bigram_counts(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(ids, vocab_size)``: C[a, b] = how often b follows a.

    Edge cases: a repeated pair, a last pair seen once. Drawn: 1 to 6 tokens, 1 to 40 ids (one
    id: no pair).
    """
    short = torch.tensor([0, 1, 0, 1, 2, 0])  # (0, 1) twice, and a last pair seen once
    generator = torch.Generator().manual_seed(1)
    longer = torch.randint(0, 7, (500,), generator=generator)

    def mistakes(ids: torch.Tensor, vocab_size: int) -> dict[str, torch.Tensor]:
        counts = bigram.pair_counts(ids, vocab_size)
        return {
            _(
                "rows and columns are swapped: C[a, b] counts b *following* a, so the row is the "
                "current token ids[t] and the column the next one ids[t+1]"
            ): counts.T,
            _(
                "one pair too many: the last token has no successor (torch.roll wraps around to "
                "the first); the pairs are (ids[t], ids[t+1]) for t = 0 .. N-2"
            ): counts + bigram.pair_counts(torch.stack([ids[-1], ids[0]]), vocab_size),
            _(
                "the last pair is missing: the pairs are (ids[t], ids[t+1]) for t = 0 .. N-2, "
                "i.e. range(len(ids) - 1)"
            ): bigram.pair_counts(ids[:-1], vocab_size),
            _("return the counts, not probabilities: normalising is the next exercise"): counts
            / counts.sum(dim=1, keepdim=True).clamp_min(1),
            _(
                "a pair that occurs more than once is counted once: `C[a, b] += 1` with index "
                "tensors writes each cell once; accumulate with torch.bincount, index_put_(..., "
                "accumulate=True) or a loop over the pairs"
            ): (counts > 0).to(counts.dtype),
        }

    cases = [
        Case(
            _("ids [0, 1, 0, 1, 2, 0] with 3 tokens"),
            (short, 3),
            bigram.pair_counts(short, 3).float(),
            hint=_(
                "the pairs are (ids[t], ids[t+1]) for t = 0 .. N-2: "
                "(0,1), (1,0), (0,1), (1,2), (2,0)"
            ),
            mistakes=mistakes(short, 3),
        ),
        Case(
            _("500 random ids with 7 tokens"),
            (longer, 7),
            bigram.pair_counts(longer, 7).float(),
            mistakes=mistakes(longer, 7),
        ),
    ]
    hint = _("rows are the current token, columns the next one; a (V, V) float tensor")
    return run_check("bigram_counts", function, cases, hint, strict, BIGRAM_COUNTS)


def bigram_probabilities(
    function: Callable[..., torch.Tensor], *, strict: bool | None = None
) -> bool:
    """Check ``function(counts, alpha)``: each row of counts + alpha, normalised to sum to one.

    Edge cases: alpha = 0, zero counts. Drawn: 1 to 6 tokens, several alphas, float32 and
    float64; values and gradients.
    """
    counts = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 2.0], [5.0, 5.0, 0.0]])

    def mistakes(alpha: float) -> dict[str, torch.Tensor]:
        smoothed = counts + alpha
        only_zeros = torch.where(counts == 0, alpha, counts)
        return {
            _(
                "each *row* must sum to 1 (the next token given the current one): divide by the "
                "row sums, sum(dim=1), not the column sums"
            ): smoothed / smoothed.sum(dim=0, keepdim=True),
            _(
                "divide each row by its own sum (dim=1, keepdim=True), not by the total of the "
                "whole table"
            ): smoothed / smoothed.sum(),
            _(
                "keepdim=True is missing: without it the row sums (V,) broadcast along the wrong "
                "axis and divide the columns"
            ): smoothed / smoothed.sum(dim=1),
            _(
                "add alpha to every cell *before* normalising (the result is a distribution per "
                "row)"
            ): counts / counts.sum(dim=1, keepdim=True) + alpha,
            _("add alpha to every cell, not only to the zero counts"): only_zeros
            / only_zeros.sum(dim=1, keepdim=True),
            _(
                "the denominator needs alpha once per cell (row sum + V * alpha): normalise "
                "counts + alpha by its own row sums"
            ): smoothed / (counts.sum(dim=1, keepdim=True) + alpha),
        }

    cases = [
        Case(
            _("alpha = 0 (plain maximum likelihood)"),
            (counts, 0.0),
            bigram.probabilities_from_counts(counts, 0.0).float(),
            mistakes=mistakes(0.0),
        ),
        Case(
            _("alpha = 1 (add-one smoothing)"),
            (counts, 1.0),
            bigram.probabilities_from_counts(counts, 1.0).float(),
            hint=_("add alpha to every cell first, then divide each row by its own sum"),
            mistakes=mistakes(1.0),
        ),
    ]
    # code, the same in every language: not translated
    hint = "(counts + alpha) / (counts + alpha).sum(dim=1, keepdim=True)"
    return run_check("bigram_probabilities", function, cases, hint, strict, BIGRAM_PROBABILITIES)


def average_nll(function: Callable[..., float], *, strict: bool | None = None) -> bool:
    """Check ``function(probabilities, ids)``: mean of -log P[ids[t], ids[t+1]] in nats.

    Edge cases: an asymmetric table. Drawn: 1 to 6 tokens, 2 to 40 ids, float32 and float64; any
    number type is accepted.
    """
    probabilities = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    ids = torch.tensor([0, 1, 1, 0, 0])
    # An asymmetric table, so that P[next, current] differs from P[current, next].
    table = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
    sentence = torch.tensor([0, 1, 2, 2, 0, 0, 1])

    def mistakes(probabilities: torch.Tensor, ids: torch.Tensor) -> dict[str, float]:
        pairs = probabilities.double()[ids[:-1], ids[1:]]
        nll = -pairs.log().mean().item()
        return {
            _(
                "the index order: P[a, b] is the probability of b *after* a, so look up "
                "P[ids[:-1], ids[1:]] (current token first)"
            ): bigram.average_nll(probabilities.double().T, ids),
            _("average over the N - 1 pairs, not the N tokens"): -pairs.log().sum().item()
            / len(ids),
            _("the sign: a negative log-likelihood is -log P, which is >= 0"): -nll,
            _("the units: use the natural log (nats), not log base 2 (bits)"): nll / math.log(2),
            _(
                "average the log-probabilities, not the probabilities: -mean(log P), not "
                "-log(mean P)"
            ): -math.log(pairs.mean().item()),
        }

    cases = [
        Case(
            _("ids [0, 1, 1, 0, 0] (4 pairs)"),
            (probabilities, ids),
            number_verdict(
                bigram.average_nll(probabilities.double(), ids),
                mistakes(probabilities, ids),
                _("the average NLL"),
            ),
            hint=_("average over the 4 pairs (not the 5 tokens), and use the natural log"),
        ),
        Case(
            _("an asymmetric 3-token table, ids [0, 1, 2, 2, 0, 0, 1]"),
            (table, sentence),
            number_verdict(
                bigram.average_nll(table.double(), sentence),
                mistakes(table, sentence),
                _("the average NLL"),
            ),
            hint=_(
                "rows are the current token, columns the next: probabilities[ids[:-1], ids[1:]]"
            ),
        ),
    ]
    # code, the same in every language: not translated
    hint = "-probabilities[ids[:-1], ids[1:]].log().mean()"
    return run_check("average_nll", function, cases, hint, strict, AVERAGE_NLL)


# --- inputs drawn per call ------------------------------------------------------------------------


def _draw_samples(generator: torch.Generator) -> tuple[str, tuple, dict]:
    dtype, n = draw_dtype(generator), draw_int(generator, 1, 80)
    mean, std = draw_choice(generator, (-5.0, 0.0, 3.0)), draw_choice(generator, (0.1, 1.0, 7.0))
    x = mean + std * randn(generator, n, dtype=dtype)
    description = _("{count} samples of N({mean}, {std}^2), {dtype}").format(
        count=n, mean=f"{mean:g}", std=f"{std:g}", dtype=dtype
    )
    return description, (x,), {}


def _gaussian_mle_reference(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = x.mean()
    return mean, ((x - mean) ** 2).mean().sqrt()


def _draw_ids(generator: torch.Generator) -> tuple[str, tuple, dict]:
    vocab, n = draw_int(generator, 1, 6), draw_int(generator, 1, 40)
    ids = torch.randint(0, vocab, (n,), generator=generator)
    return _("{count} ids of {vocab} tokens").format(count=n, vocab=vocab), (ids, vocab), {}


def _counts_reference(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    return bigram.pair_counts(ids, vocab_size).float()


def _draw_counts(generator: torch.Generator) -> tuple[str, tuple, dict]:
    vocab, dtype = draw_int(generator, 1, 6), draw_dtype(generator)
    counts = torch.randint(0, 6, (vocab, vocab), generator=generator).to(dtype)
    alpha = draw_choice(generator, (0.01, 0.5, 1.0, 3.0))
    description = _("{vocab} x {vocab} counts, alpha = {alpha}, {dtype}").format(
        vocab=vocab, alpha=f"{alpha:g}", dtype=dtype
    )
    return description, (counts, alpha), {}


def _probabilities_reference(counts: torch.Tensor, alpha: float) -> torch.Tensor:
    smoothed = counts + alpha
    return smoothed / smoothed.sum(dim=1, keepdim=True)


def _draw_table_and_ids(generator: torch.Generator) -> tuple[str, tuple, dict]:
    vocab, n, dtype = draw_int(generator, 1, 6), draw_int(generator, 2, 40), draw_dtype(generator)
    table = torch.softmax(2 * randn(generator, vocab, vocab, dtype=dtype), dim=1)
    ids = torch.randint(0, vocab, (n,), generator=generator)
    description = _("a {vocab}-token table and {count} ids, {dtype}").format(
        vocab=vocab, count=n, dtype=dtype
    )
    return description, (table, ids), {}


GAUSSIAN_MLE = Draws(_draw_samples, _gaussian_mle_reference, gradients=True)
BIGRAM_COUNTS = Draws(_draw_ids, _counts_reference)
BIGRAM_PROBABILITIES = Draws(_draw_counts, _probabilities_reference, gradients=True)
AVERAGE_NLL = Draws(_draw_table_and_ids, bigram.average_nll)
gaussian_mle.draws = GAUSSIAN_MLE
bigram_counts.draws = BIGRAM_COUNTS
bigram_probabilities.draws = BIGRAM_PROBABILITIES
average_nll.draws = AVERAGE_NLL
