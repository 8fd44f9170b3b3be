"""Checks for lesson 12: the watermark's z-score, the exposure of a planted secret, and a filter's
precision and recall."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from aigc_course import metrics, watermark
from aigc_course.checks._core import (
    Case,
    Draws,
    draw_choice,
    draw_int,
    number_verdict,
    pair_verdict,
    run_check,
)
from aigc_course.i18n import _

# --------------------------------------------------------------------------------------------
# watermark_z(ids, green, gamma)
# --------------------------------------------------------------------------------------------


def watermark_z(function: Callable, *, strict: bool | None = None) -> bool:
    """Check ``function(ids, green, gamma)``: token ids ``(T,)``, the green lists ``(V, V)`` (row p:
    the tokens green after p) and the green fraction -> the z-score of the green count.

    Drawn: 3 to 13 tokens, 2 to 60 ids (T = 2: one scored token), gamma 0.25 to 0.7; any number
    type is accepted.
    """

    def case(description: str, key: int, gamma: float, length: int, bias: float) -> Case:
        vocab = 11
        green = watermark.green_lists(key, vocab, gamma)
        fraction = green[0].sum().item() / vocab
        generator = torch.Generator().manual_seed(key)
        ids = [int(torch.randint(0, vocab, (1,), generator=generator))]
        for _token in range(length - 1):  # a sequence that prefers green tokens: z clearly above 0
            weights = 1 + bias * green[ids[-1]].float()
            ids.append(int(torch.multinomial(weights, 1, generator=generator)))
        ids = torch.tensor(ids)
        t = length - 1
        found = watermark.z_test(ids, green)
        g, expected = found.green, found.z
        own = green[ids[1:], ids[1:]].sum().item()
        mistakes = {
            _(
                "each token's green list is chosen by the token *before* it: "
                "green[ids[:-1], ids[1:]], not green[ids[1:], ids[1:]]"
            ): (own - fraction * t) / math.sqrt(t * fraction * (1 - fraction)),
            _("index the green lists as green[previous, token], not green[token, previous]"): (
                green[ids[1:], ids[:-1]].sum().item() - fraction * t
            )
            / math.sqrt(t * fraction * (1 - fraction)),
            _(
                "T ids give T - 1 scored tokens (the first has no previous token): use T - 1 in "
                "the mean and the variance"
            ): (g - fraction * length) / math.sqrt(length * fraction * (1 - fraction)),
            _("divide by the standard deviation sqrt(T gamma (1 - gamma)), not the variance"): (
                g - fraction * t
            )
            / (t * fraction * (1 - fraction)),
            _(
                "the standard deviation of the count grows with T: sqrt(T gamma (1 - gamma)), not "
                "sqrt(gamma (1 - gamma))"
            ): (g - fraction * t) / math.sqrt(fraction * (1 - fraction)),
            _("subtract the expected count gamma T before dividing"): g
            / math.sqrt(t * fraction * (1 - fraction)),
            _("use the gamma given: the green share here is not one half"): (g - 0.5 * t)
            / math.sqrt(t * 0.25),
        }
        return Case(description, (ids, green, fraction), number_verdict(expected, mistakes, _("z")))

    cases = [
        case(_("40 tokens, gamma = 0.27 (3 of 11 green), tilted towards green"), 3, 0.27, 40, 2.0),
        case(_("25 tokens, gamma = 0.64 (7 of 11 green), tilted towards green"), 8, 0.64, 25, 1.0),
    ]
    hint = _(
        "g = green[ids[:-1], ids[1:]].sum(); T = len(ids) - 1; "
        "z = (g - gamma * T) / sqrt(T * gamma * (1 - gamma))"
    )
    return run_check("watermark_z", function, cases, hint, strict, WATERMARK_Z)


# --------------------------------------------------------------------------------------------
# exposure(secret_nll, candidate_nlls)
# --------------------------------------------------------------------------------------------


def exposure(function: Callable, *, strict: bool | None = None) -> bool:
    """Check ``function(secret_nll, candidate_nlls)``: log2(C + 1) - log2(rank), the rank of the
    secret (1 = likeliest, the lowest negative log-likelihood) among itself and C candidates.

    Edge cases: ranked first and last, a tie with the secret (ties do not rank above it). Drawn:
    1 to 50 candidates with ties.
    """

    def case(description: str, secret_nll: float, candidate_nlls: torch.Tensor) -> Case:
        c = len(candidate_nlls)
        rank = 1 + int((candidate_nlls < secret_nll).sum())
        expected = metrics.exposure(secret_nll, candidate_nlls)
        worse = int((candidate_nlls > secret_nll).sum())
        mistakes = {
            _(
                "the rank starts at 1 (the secret first), so the best exposure is log2(C + 1), "
                "not count the better candidates alone"
            ): math.log2(c + 1) - math.log2(rank - 1) if rank > 1 else math.inf,
            _("the secret is one of the C + 1 strings ranked: log2(C + 1), not log2(C)"): (
                math.log2(c) - math.log2(rank)
            ),
            _("exposure is in bits: log base 2, not the natural log"): math.log(c + 1)
            - math.log(rank),
            _(
                "a lower negative log-likelihood is a *likelier* string: rank by the candidates "
                "below the secret's, not above"
            ): math.log2(c + 1) - math.log2(1 + worse),
            _("return the exposure, log2(C + 1) - log2(rank), not the rank"): float(rank),
            _("exposure is log2(C + 1) minus log2(rank), not their ratio"): math.log2(c + 1)
            / math.log2(rank)
            if rank > 1
            else math.inf,
        }
        return Case(
            description,
            (secret_nll, candidate_nlls),
            number_verdict(expected, mistakes, _("the exposure")),
        )

    generator = torch.Generator().manual_seed(0)
    many = torch.rand(999, generator=generator, dtype=torch.float64) * 10 + 20
    cases = [
        case(
            _("a secret ranked 5th among 999 candidates (4 are likelier)"),
            float(many.sort().values[3]) + 1e-9,
            many,
        ),
        case(
            _(
                "a secret tied with 2 candidates (edge case: ties do not rank above the secret, "
                "count only the candidates strictly likelier)"
            ),
            2.0,
            torch.tensor([1.0, 2.0, 2.0, 3.0, 4.0], dtype=torch.float64),
        ),
        case(_("a secret ranked last (exposure 0)"), 9.0, torch.tensor([1.0, 2.0, 3.0])),
        case(_("a secret ranked first among 999 candidates"), 5.0, many),
        case(
            _("a secret in the middle of 7 candidates"),
            3.5,
            torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]),
        ),
    ]
    hint = _(
        "rank = 1 + (candidate_nlls < secret_nll).sum(); "
        "return log2(len(candidate_nlls) + 1) - log2(rank)"
    )
    return run_check("exposure", function, cases, hint, strict, EXPOSURE)


# --------------------------------------------------------------------------------------------
# filter_precision_recall(flagged, truth)
# --------------------------------------------------------------------------------------------


def filter_precision_recall(function: Callable, *, strict: bool | None = None) -> bool:
    """Check ``function(flagged, truth)``: two lists of booleans -> (precision, recall), precision 1
    when nothing is flagged, recall 1 when nothing should be (no positives: nothing was missed).

    Edge cases: no flags, flags but no hits, no positives, everything flagged. Drawn: lists of 1
    to 12 items, of every mix."""

    def case(description: str, flagged: list[bool], truth: list[bool]) -> Case:
        right = metrics.filter_scores(flagged, truth)
        hits = sum(f and t for f, t in zip(flagged, truth, strict=True))
        accuracy = sum(f == t for f, t in zip(flagged, truth, strict=True)) / len(truth)
        n_flagged, positives = sum(flagged), sum(truth)
        mistakes = {
            _(
                "precision and recall are swapped: precision = hits / flagged, recall = hits / "
                "items that should be flagged"
            ): (right.recall, right.precision),
            _("precision divides the hits by the *flagged* items, not by all items"): (
                hits / len(truth),
                right.recall,
            ),
            _("recall divides the hits by the items that *should* be flagged, not by all items"): (
                right.precision,
                hits / len(truth),
            ),
            _(
                "precision and recall are not the accuracy (the share of items the filter got "
                "right)"
            ): (accuracy, accuracy),
            _("a hit is an item flagged *and* truly positive: do not count every flag as a hit"): (
                1.0,
                n_flagged / positives if positives else 1.0,
            ),
        }

        verdict = pair_verdict((right.precision, right.recall), mistakes)
        return Case(description, (flagged, truth), verdict)

    t, f = True, False
    cases = [
        case(
            _("10 items: 3 hits, 2 false alarms, 1 miss"),
            [t, t, t, f, t, t, f, f, f, f],
            [t, t, t, t, f, f, f, f, f, f],
        ),
        case(
            _("a filter that flags nothing (precision 1 by convention)"),
            [f, f, f, f],
            [t, f, t, f],
        ),
        case(_("flags but no hits (precision 0)"), [t, f, t, f], [f, t, f, t]),
        case(
            _("no true positives (recall 1 by convention: nothing was missed)"),
            [t, f, f],
            [f, f, f],
        ),
        case(_("every item flagged and positive"), [t, t], [t, t]),
    ]
    hint = _(
        "hits = sum(f and t); precision = hits / sum(flagged) (1.0 if nothing is flagged); "
        "recall = hits / sum(truth) (1.0 if nothing is positive)"
    )
    return run_check("filter_precision_recall", function, cases, hint, strict, FILTER)


# --- inputs drawn per call ------------------------------------------------------------------------


def _draw_marked_text(generator: torch.Generator) -> tuple[str, tuple, dict]:
    vocab, length = draw_int(generator, 3, 13), draw_int(generator, 2, 60)
    green = watermark.green_lists(
        draw_int(generator, 0, 10**6), vocab, draw_choice(generator, (0.25, 0.5, 0.7))
    )
    fraction = green[0].sum().item() / vocab
    ids = torch.randint(0, vocab, (length,), generator=generator)
    description = _("{length} ids of {vocab} tokens, gamma = {gamma}").format(
        length=length, vocab=vocab, gamma=f"{fraction:.4g}"
    )
    return description, (ids, green, fraction), {}


def _watermark_reference(ids, green, fraction) -> float:
    t = len(ids) - 1
    count = green[ids[:-1], ids[1:]].sum().item()
    return (count - fraction * t) / math.sqrt(t * fraction * (1 - fraction))


def _draw_candidates(generator: torch.Generator) -> tuple[str, tuple, dict]:
    count = draw_int(generator, 1, 50)
    candidates = torch.randint(0, 8, (count,), generator=generator).double()  # with ties
    secret = float(draw_int(generator, -1, 9))
    description = _("a secret NLL of {secret} among {count} candidates").format(
        secret=f"{secret:g}", count=count
    )
    return description, (secret, candidates), {}


def _draw_flags(generator: torch.Generator) -> tuple[str, tuple, dict]:
    count = draw_int(generator, 1, 12)
    rates = [draw_choice(generator, (0.0, 0.3, 0.7, 1.0)) for _set in range(2)]
    flagged, truth = (
        [bool(v) for v in (torch.rand(count, generator=generator) < rate).tolist()]
        for rate in rates
    )
    description = _("flags {flagged} against {truth}").format(flagged=flagged, truth=truth)
    return description, (flagged, truth), {}


def _filter_reference(flagged, truth) -> tuple[float, float]:
    scores = metrics.filter_scores(flagged, truth)
    return scores.precision, scores.recall


WATERMARK_Z = Draws(_draw_marked_text, _watermark_reference)
EXPOSURE = Draws(_draw_candidates, metrics.exposure)
FILTER = Draws(_draw_flags, _filter_reference, count=10)
watermark_z.draws = WATERMARK_Z
exposure.draws = EXPOSURE
filter_precision_recall.draws = FILTER
