"""Checks for lesson 11: precision and recall from k-NN radii, bits per dimension and perplexity from
nats, and the longest piece of a text found verbatim in a corpus."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from aigc_course import metrics
from aigc_course.checks._core import (
    Case,
    Draws,
    draw_choice,
    draw_dtype,
    draw_int,
    number_verdict,
    pair_verdict,
    randn,
    run_check,
)
from aigc_course.i18n import _

# --------------------------------------------------------------------------------------------
# precision_recall(real, fake, k)
# --------------------------------------------------------------------------------------------


def _share_inside(
    points: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, squared: bool = False
) -> float:
    distances = metrics.pairwise_distances(points, support)
    if squared:
        distances = distances**2
    return (distances <= radii[None, :]).any(dim=1).double().mean().item()


def _precision_recall_mistakes(real: torch.Tensor, fake: torch.Tensor, k: int) -> dict:
    right = metrics.precision_recall(real, fake, k)
    real_radii, fake_radii = metrics.knn_radii(real, k), metrics.knn_radii(fake, k)

    def kth_with_self(features: torch.Tensor) -> torch.Tensor:
        distances = metrics.pairwise_distances(features, features)
        return distances.kthvalue(k, dim=1).values

    def balls_hit(points: torch.Tensor, support: torch.Tensor, radii: torch.Tensor) -> float:
        inside = metrics.pairwise_distances(points, support) <= radii[None, :]
        return inside.any(dim=0).double().mean().item()

    def pairs_inside(points: torch.Tensor, support: torch.Tensor, radii: torch.Tensor) -> float:
        inside = metrics.pairwise_distances(points, support) <= radii[None, :]
        return inside.double().mean().item()

    def own_radius(points: torch.Tensor, support: torch.Tensor, radii: torch.Tensor) -> float:
        inside = metrics.pairwise_distances(points, support) <= radii[:, None]
        return inside.any(dim=1).double().mean().item()

    def kth_across(support: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return metrics.pairwise_distances(support, other).kthvalue(k, dim=1).values

    return {
        _(
            "precision and recall are swapped: precision is the share of *generated* samples "
            "inside the real manifold (fidelity), recall the share of *real* samples inside the "
            "generated one (coverage)"
        ): (right.recall, right.precision),
        _(
            "each point is its own nearest neighbour at distance 0: the k-th nearest *other* "
            "point is the (k + 1)-th smallest distance in its row (kthvalue(k + 1))"
        ): (
            _share_inside(fake, real, kth_with_self(real)),
            _share_inside(real, fake, kth_with_self(fake)),
        ),
        _(
            "the radii belong to the support set: the real manifold is the balls around real "
            "points with the real points' k-NN radii (and likewise for the generated manifold), "
            "not balls around the points being tested"
        ): (
            own_radius(fake, real, fake_radii),
            own_radius(real, fake, real_radii),
        ),
        _("compare distances with radii, not squared distances with radii"): (
            _share_inside(fake, real, real_radii, squared=True),
            _share_inside(real, fake, fake_radii, squared=True),
        ),
        _(
            "count the *samples* that fall inside some ball (any over the support, dim=1), not "
            "the balls that hold some sample"
        ): (
            balls_hit(fake, real, real_radii),
            balls_hit(real, fake, fake_radii),
        ),
        _(
            "a sample is inside the manifold when it is inside *any* ball: take any() over the "
            "support, not the mean over all (sample, ball) pairs"
        ): (
            pairs_inside(fake, real, real_radii),
            pairs_inside(real, fake, fake_radii),
        ),
        _(
            "a point's k-NN radius is the distance to the k-th nearest point of its *own* set, "
            "not of the other set"
        ): (
            _share_inside(fake, real, kth_across(real, fake)),
            _share_inside(real, fake, kth_across(fake, real)),
        ),
    }


def _clusters(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real points spread widely; generated points fewer and bunched off-centre (more faithful
    than covering), with some outliers: precision and recall differ clearly."""
    generator = torch.Generator().manual_seed(seed)
    real = torch.randn(40, 2, generator=generator, dtype=torch.float64)
    fake = torch.cat(
        [
            0.4 * torch.randn(26, 2, generator=generator, dtype=torch.float64)
            + torch.tensor([0.7, 0.0], dtype=torch.float64),
            torch.randn(4, 2, generator=generator, dtype=torch.float64) * 0.3
            + torch.tensor([3.5, 3.5], dtype=torch.float64),
        ]
    )
    return real, fake


def precision_recall(function: Callable, *, strict: bool | None = None) -> bool:
    """Check ``function(real, fake, k)`` -> ``(precision, recall)``: the k-NN manifold estimate of
    Kynkäänniemi et al. on features ``(N, D)`` and ``(M, D)``.

    Edge cases: a sample exactly on a k-NN radius (inside). Drawn: 2 to 30 points of 1 to 4
    dimensions per set, k 1 to 3, float32 and float64; any number types.
    """

    grid = torch.cartesian_prod(*[torch.arange(3.0, dtype=torch.float64)] * 2)
    on_boundary = torch.tensor([[-1.0, 0.0], [3.0, 1.0], [1.0, -1.0], [9.0, 9.0]]).double()

    def case(description: str, seed: int, k: int) -> Case:
        real, fake = _clusters(seed)
        right = metrics.precision_recall(real, fake, k)
        mistakes = _precision_recall_mistakes(real, fake, k)

        verdict = pair_verdict((right.precision, right.recall), mistakes)
        return Case(description, (real, fake, k), verdict)

    cases = [
        case(_("40 spread real points, 30 bunched generated points, k = 3"), 1, 3),
        case(_("the same kind of sets, k = 1"), 2, 1),
        case(_("the same kind of sets, k = 5"), 3, 5),
        Case(
            _(
                "points on a grid, each generated point exactly one k-NN radius from a real one "
                "(edge case: a sample *on* a ball's boundary is inside, distance <= radius)"
            ),
            (grid, on_boundary, 1),
            pair_verdict(
                _precision_recall_reference(grid, on_boundary, 1),
                _precision_recall_mistakes(grid, on_boundary, 1),
            ),
        ),
    ]
    hint = _(
        "radius of each point = distance to its k-th nearest *other* point of its own set "
        "(cdist(x, x).kthvalue(k + 1, dim=1)); precision = share of fake points within the "
        "radius of some real point; recall = the same with the roles swapped"
    )
    return run_check("precision_recall", function, cases, hint, strict, PRECISION_RECALL)


# --------------------------------------------------------------------------------------------
# bits_per_dim(nll_nats, dims) and perplexity(token_nll_nats)
# --------------------------------------------------------------------------------------------


def bits_per_dim(function: Callable, *, strict: bool | None = None) -> bool:
    """Check ``function(nll_nats, dims)``: negative log-likelihoods ``(B,)`` in nats per image of
    ``dims`` values -> the mean bits per dimension, mean(nll) / (dims ln 2).

    Drawn: 1 to 6 images of 1 to 3072 values, float32 and float64; any number type is accepted.
    """

    def case(description: str, nll: torch.Tensor, dims: int) -> Case:
        mean = nll.double().mean().item()
        expected = mean / (dims * math.log(2))
        mistakes = {
            _(
                "convert nats to bits by dividing by ln 2 (log2 x = ln x / ln 2); without it the "
                "figure is nats per dimension"
            ): mean / dims,
            _(
                "divide by ln 2, not multiply: one bit is ln 2 = 0.693 nats, so a figure in bits "
                "is *larger* than in nats"
            ): mean * math.log(2) / dims,
            _("bits use log base 2, not base 10 (divide by ln 2, not ln 10)"): mean
            / (dims * math.log(10)),
            _(
                "divide by the number of dimensions (pixels): bits per *dimension*, not per image"
            ): mean / math.log(2),
            _("take the mean over the images, not the sum"): nll.double().sum().item()
            / (dims * math.log(2)),
            _(
                "the input is already a negative log-likelihood (positive): do not negate it"
            ): -expected,
            _("use the dims argument: the images here are not 28 x 28"): mean / (784 * math.log(2)),
        }
        return Case(description, (nll, dims), number_verdict(expected, mistakes, _("bits/dim")))

    cases = [
        case(
            _("three Fashion-MNIST images (784 pixels)"),
            torch.tensor([1500.0, 2100.0, 1800.0]),
            784,
        ),
        case(_("two colour 32 x 32 images (3072 values)"), torch.tensor([7000.0, 9100.0]), 3072),
    ]
    hint = _("return nll_nats.mean() / (dims * math.log(2))")
    return run_check("bits_per_dim", function, cases, hint, strict, BITS_PER_DIM)


def perplexity(function: Callable, *, strict: bool | None = None) -> bool:
    """Check ``function(token_nll_nats)``: per-token negative log-likelihoods ``(N,)`` in nats ->
    the text's perplexity, exp(mean nll).

    Edge cases: a uniform guess. Drawn: 1 to 40 tokens, float32 and float64; any number type is
    accepted.
    """

    def case(description: str, nll: torch.Tensor) -> Case:
        mean = nll.double().mean().item()
        expected = math.exp(mean)
        mistakes = {
            _(
                "perplexity is e to the mean nll in *nats* (or 2 to the mean in bits): 2 ** nats "
                "mixes the units"
            ): 2**mean,
            _("perplexity is e to the mean nll in nats, not 10 to it"): 10**mean,
            _(
                "average the losses first, then exponentiate: the mean of the per-token exp(nll) "
                "is larger (Jensen's inequality) and not the perplexity"
            ): nll.double().exp().mean().item(),
            _("exponentiate the *mean* loss per token, not the total"): math.exp(
                nll.double().sum().item()
            ),
            _(
                "perplexity is exp(mean nll), not the mean nll itself (that is the cross-entropy)"
            ): mean,
            _("the inputs are negative log-likelihoods: exp(mean), not exp(-mean)"): math.exp(
                -mean
            ),
        }
        return Case(description, (nll,), number_verdict(expected, mistakes, _("the perplexity")))

    cases = [
        case(
            _("eight characters of varied difficulty"),
            torch.tensor([0.1, 2.5, 1.2, 0.05, 3.3, 1.7, 0.6, 2.0]),
        ),
        case(_("a uniform guess over 65 characters"), torch.full((5,), math.log(65))),
    ]
    hint = _("return math.exp(token_nll_nats.mean().item())")
    return run_check("perplexity", function, cases, hint, strict, PERPLEXITY)


# --------------------------------------------------------------------------------------------
# longest_verbatim_substring(text, corpus)
# --------------------------------------------------------------------------------------------

_CORPUS = (
    "ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet is "
    "the sun.\n\nJULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\n"
)


def _longest_prefix(text: str, corpus: str) -> str:
    end = 0
    while end < len(text) and text[: end + 1] in corpus:
        end += 1
    return text[:end]


def _jumping(text: str, corpus: str) -> str:
    """Restarts after the end of each match, skipping the starts inside it."""
    best, start = "", 0
    while start < len(text):
        end = start
        while end < len(text) and text[start : end + 1] in corpus:
            end += 1
        best = max(best, text[start:end], key=len)
        start = max(end, start + 1)
    return best


def _whole_words(text: str, corpus: str) -> str:
    words, best = text.split(" "), ""
    for i in range(len(words)):
        for j in range(i + 1, len(words) + 1):
            piece = " ".join(words[i:j])
            if piece in corpus and len(piece) > len(best):
                best = piece
    return best


def _verbatim_verdict(text: str, corpus: str) -> Callable[[Any], str | None]:
    """The verdict on a returned piece: any piece of the longest length is right."""
    length = len(metrics.longest_verbatim_substring(text, corpus))
    mistakes = {
        _("look for matches that start anywhere in the text, not only at its beginning"): (
            _longest_prefix(text, corpus)
        ),
        _(
            "after a match, try the next start (start + 1), not the end of the match: a longer "
            "match can begin inside a shorter one"
        ): _jumping(text, corpus),
        _(
            "a verbatim piece can start and end inside words: compare characters, not whole words"
        ): _whole_words(text, corpus),
    }

    def verdict(got) -> str | None:
        if isinstance(got, int) and not isinstance(got, bool):
            return _("return the piece itself (a str), not its length")
        if not isinstance(got, str):
            return _("return the piece as a str, got {type}").format(type=type(got).__name__)
        if got not in text and got not in corpus:
            return _(
                "{piece} is neither a piece of the text nor found verbatim in the corpus: a "
                "verbatim piece is contiguous in both (a common *subsequence*, with gaps, is "
                "not copying)"
            ).format(piece=repr(got))
        if got not in text:
            return _(
                "{piece} is not a piece of the text: take contiguous characters of the text "
                "(text[start:end])"
            ).format(piece=repr(got))
        if got not in corpus:
            if got.lower() in corpus.lower():
                return _(
                    "{piece} is in the corpus only if case is ignored: verbatim means exactly "
                    "the same characters"
                ).format(piece=repr(got))
            return _(
                "{piece} is not found verbatim in the corpus: a verbatim piece is contiguous "
                "there too (a common *subsequence*, with gaps, is not copying)"
            ).format(piece=repr(got))
        if len(got) == length:
            return None
        for mistake, result in mistakes.items():
            if got == result:
                return _(
                    "{mistake}\n   expected a piece of {length} characters, got {piece}"
                ).format(mistake=mistake, length=length, piece=repr(got))
        if len(got) == length - 1:
            return _(
                "one character short (expected {expected}, got {got}): check the end of "
                "your slices (text[start:end] stops before end)"
            ).format(expected=length, got=len(got))
        return _("wrong piece: the longest is {expected} characters, got {got}: {piece}").format(
            expected=length, got=len(got), piece=repr(got)
        )

    return verdict


def longest_verbatim_substring(function: Callable, *, strict: bool | None = None) -> bool:
    """Check ``function(text, corpus)`` -> the longest piece of ``text`` (a ``str``) found verbatim
    in ``corpus``; any piece of that length is right.

    Edge cases: matches at the first and last index of text and corpus, a match past the 60th
    character, an empty text, nothing in common. Drawn: strings over small alphabets; any
    longest piece is right.
    """

    def case(description: str, text: str, corpus: str) -> Case:
        return Case(description, (text, corpus), _verbatim_verdict(text, corpus))

    cases = [
        case(
            _("a line that quotes the corpus mid-sentence"),
            "And I said: what light through yonder door? It is the east.",
            _CORPUS,
        ),
        case(
            _("a long match that begins inside a shorter one"),
            "xabcdefgh",
            "zz abcd zz bcdefgh zz",
        ),
        case(_("Juliet misquoted in capitals"), "O ROMEO, Romeo! wherefore art thou", _CORPUS),
        case(_("nothing in common"), "qqq", _CORPUS),
        case(
            _("the match at the very start of the text and of the corpus"), "ROMEO:\nBut", _CORPUS
        ),
        case(_("the match at the very end of the text and of the corpus"), "is Romeo?\n", _CORPUS),
        case(_("the whole text occurs"), "soft", _CORPUS),
        case(
            _("a long text whose match comes after its 60th character"),
            "Nothing of the play is quoted here until the final few words: O Romeo, Romeo!",
            _CORPUS,
        ),
        case(_("an empty text (answer: the empty string)"), "", _CORPUS),
    ]
    hint = _(
        "for each start, extend the end while text[start:end + 1] in corpus; keep the longest; a "
        "piece that occurs has every shorter piece occurring, so the end never needs to go back"
    )
    return run_check("longest_verbatim_substring", function, cases, hint, strict, VERBATIM)


# --- inputs drawn per call ------------------------------------------------------------------------


def _draw_feature_sets(generator: torch.Generator) -> tuple[str, tuple, dict]:
    dtype, dims, k = draw_dtype(generator), draw_int(generator, 1, 4), draw_int(generator, 1, 3)
    n_real, n_fake = draw_int(generator, k + 1, 30), draw_int(generator, k + 1, 30)
    real = randn(generator, n_real, dims, dtype=dtype)
    shift, spread = draw_choice(generator, (0.0, 1.0)), draw_choice(generator, (0.3, 1.0, 2.0))
    fake = shift + spread * randn(generator, n_fake, dims, dtype=dtype)
    description = _("{real} real and {fake} generated points in {dims}-D, k = {k}, {dtype}").format(
        real=n_real, fake=n_fake, dims=dims, k=k, dtype=dtype
    )
    return description, (real, fake, k), {}


def _precision_recall_reference(real, fake, k) -> tuple[float, float]:
    scores = metrics.precision_recall(real, fake, k)
    return scores.precision, scores.recall


def _draw_nlls(generator: torch.Generator) -> tuple[str, tuple, dict]:
    dtype, batch = draw_dtype(generator), draw_int(generator, 1, 6)
    dims = draw_choice(generator, (1, 64, 784, 3072))
    nll = dims * (0.5 + 3 * torch.rand(batch, generator=generator, dtype=torch.float64)).to(dtype)
    description = _("{count} images of {dims} values, {dtype}").format(
        count=batch, dims=dims, dtype=dtype
    )
    return description, (nll, dims), {}


def _bits_per_dim_reference(nll: torch.Tensor, dims: int) -> float:
    return nll.double().mean().item() / (dims * math.log(2))


def _draw_token_nlls(generator: torch.Generator) -> tuple[str, tuple, dict]:
    dtype, count = draw_dtype(generator), draw_int(generator, 1, 40)
    nll = (4 * torch.rand(count, generator=generator, dtype=torch.float64)).to(dtype)
    return _("{count} tokens, {dtype}").format(count=count, dtype=dtype), (nll,), {}


def _perplexity_reference(nll: torch.Tensor) -> float:
    return math.exp(nll.double().mean().item())


def _draw_strings(generator: torch.Generator) -> tuple[str, tuple, dict]:
    alphabet = draw_choice(generator, ("ab", "abc ", "abcdefgh"))

    def word(low: int, high: int) -> str:
        return "".join(
            draw_choice(generator, alphabet) for _letter in range(draw_int(generator, low, high))
        )

    text, corpus = word(0, 12), word(1, 30)
    description = _("text {text} in corpus {corpus}").format(text=repr(text), corpus=repr(corpus))
    return description, (text, corpus), {}


BITS_PER_DIM = Draws(_draw_nlls, _bits_per_dim_reference)
PERPLEXITY = Draws(_draw_token_nlls, _perplexity_reference)
PRECISION_RECALL = Draws(
    _draw_feature_sets,
    _precision_recall_reference,
    mistakes=_precision_recall_mistakes,
)
VERBATIM = Draws(_draw_strings, _verbatim_verdict, count=10)
precision_recall.draws = PRECISION_RECALL
bits_per_dim.draws = BITS_PER_DIM
perplexity.draws = PERPLEXITY
longest_verbatim_substring.draws = VERBATIM
