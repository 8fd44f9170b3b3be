"""Checks for lesson 11: precision and recall from k-NN radii, bits per dimension and perplexity from
nats, and the longest piece of a text found verbatim in a corpus."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from aigc_course import metrics
from aigc_course.checks._core import Case, number_verdict, pair_verdict, run_check

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
        "precision and recall are swapped: precision is the share of *generated* samples inside "
        "the real manifold (fidelity), recall the share of *real* samples inside the generated "
        "one (coverage)": (right.recall, right.precision),
        "each point is its own nearest neighbour at distance 0: the k-th nearest *other* point is "
        "the (k + 1)-th smallest distance in its row (kthvalue(k + 1))": (
            _share_inside(fake, real, kth_with_self(real)),
            _share_inside(real, fake, kth_with_self(fake)),
        ),
        "the radii belong to the support set: the real manifold is the balls around real points "
        "with the real points' k-NN radii (and likewise for the generated manifold), not balls "
        "around the points being tested": (
            own_radius(fake, real, fake_radii),
            own_radius(real, fake, real_radii),
        ),
        "compare distances with radii, not squared distances with radii": (
            _share_inside(fake, real, real_radii, squared=True),
            _share_inside(real, fake, fake_radii, squared=True),
        ),
        "count the *samples* that fall inside some ball (any over the support, dim=1), not the "
        "balls that hold some sample": (
            balls_hit(fake, real, real_radii),
            balls_hit(real, fake, fake_radii),
        ),
        "a sample is inside the manifold when it is inside *any* ball: take any() over the "
        "support, not the mean over all (sample, ball) pairs": (
            pairs_inside(fake, real, real_radii),
            pairs_inside(real, fake, fake_radii),
        ),
        "a point's k-NN radius is the distance to the k-th nearest point of its *own* set, not "
        "of the other set": (
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
    Kynkäänniemi et al. on features ``(N, D)`` and ``(M, D)``."""

    def case(description: str, seed: int, k: int) -> Case:
        real, fake = _clusters(seed)
        right = metrics.precision_recall(real, fake, k)
        mistakes = _precision_recall_mistakes(real, fake, k)

        verdict = pair_verdict((right.precision, right.recall), mistakes)
        return Case(description, (real, fake, k), verdict)

    cases = [
        case("40 spread real points, 30 bunched generated points, k = 3", 1, 3),
        case("the same kind of sets, k = 1", 2, 1),
        case("the same kind of sets, k = 5", 3, 5),
    ]
    hint = (
        "radius of each point = distance to its k-th nearest *other* point of its own set "
        "(cdist(x, x).kthvalue(k + 1, dim=1)); precision = share of fake points within the "
        "radius of some real point; recall = the same with the roles swapped"
    )
    return run_check("precision_recall", function, cases, hint, strict)


# --------------------------------------------------------------------------------------------
# bits_per_dim(nll_nats, dims) and perplexity(token_nll_nats)
# --------------------------------------------------------------------------------------------


def bits_per_dim(function: Callable, *, strict: bool | None = None) -> bool:
    """Check ``function(nll_nats, dims)``: negative log-likelihoods ``(B,)`` in nats per image of
    ``dims`` values -> the mean bits per dimension, mean(nll) / (dims ln 2)."""

    def case(description: str, nll: torch.Tensor, dims: int) -> Case:
        mean = nll.double().mean().item()
        expected = mean / (dims * math.log(2))
        mistakes = {
            "convert nats to bits by dividing by ln 2 (log2 x = ln x / ln 2); without it the "
            "figure is nats per dimension": mean / dims,
            "divide by ln 2, not multiply: one bit is ln 2 = 0.693 nats, so a figure in bits is "
            "*larger* than in nats": mean * math.log(2) / dims,
            "bits use log base 2, not base 10 (divide by ln 2, not ln 10)": mean
            / (dims * math.log(10)),
            "divide by the number of dimensions (pixels): bits per *dimension*, not per image": (
                mean / math.log(2)
            ),
            "take the mean over the images, not the sum": nll.double().sum().item()
            / (dims * math.log(2)),
            "the input is already a negative log-likelihood (positive): do not negate it": -expected,
            "use the dims argument: the images here are not 28 x 28": mean / (784 * math.log(2)),
        }
        return Case(description, (nll, dims), number_verdict(expected, mistakes, "bits/dim"))

    cases = [
        case(
            "three Fashion-MNIST images (784 pixels)", torch.tensor([1500.0, 2100.0, 1800.0]), 784
        ),
        case("two colour 32 x 32 images (3072 values)", torch.tensor([7000.0, 9100.0]), 3072),
    ]
    hint = "return nll_nats.mean() / (dims * math.log(2))"
    return run_check("bits_per_dim", function, cases, hint, strict)


def perplexity(function: Callable, *, strict: bool | None = None) -> bool:
    """Check ``function(token_nll_nats)``: per-token negative log-likelihoods ``(N,)`` in nats ->
    the text's perplexity, exp(mean nll)."""

    def case(description: str, nll: torch.Tensor) -> Case:
        mean = nll.double().mean().item()
        expected = math.exp(mean)
        mistakes = {
            "perplexity is e to the mean nll in *nats* (or 2 to the mean in bits): 2 ** nats "
            "mixes the units": 2**mean,
            "perplexity is e to the mean nll in nats, not 10 to it": 10**mean,
            "average the losses first, then exponentiate: the mean of the per-token exp(nll) is "
            "larger (Jensen's inequality) and not the perplexity": nll.double().exp().mean().item(),
            "exponentiate the *mean* loss per token, not the total": math.exp(
                nll.double().sum().item()
            ),
            "perplexity is exp(mean nll), not the mean nll itself (that is the cross-entropy)": mean,
            "the inputs are negative log-likelihoods: exp(mean), not exp(-mean)": math.exp(-mean),
        }
        return Case(description, (nll,), number_verdict(expected, mistakes, "the perplexity"))

    cases = [
        case(
            "eight characters of varied difficulty",
            torch.tensor([0.1, 2.5, 1.2, 0.05, 3.3, 1.7, 0.6, 2.0]),
        ),
        case("a uniform guess over 65 characters", torch.full((5,), math.log(65))),
    ]
    hint = "return math.exp(token_nll_nats.mean().item())"
    return run_check("perplexity", function, cases, hint, strict)


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


def longest_verbatim_substring(function: Callable, *, strict: bool | None = None) -> bool:
    """Check ``function(text, corpus)`` -> the longest piece of ``text`` (a ``str``) found verbatim
    in ``corpus``; any piece of that length is right."""

    def case(description: str, text: str, corpus: str) -> Case:
        length = len(metrics.longest_verbatim_substring(text, corpus))
        mistakes = {
            "look for matches that start anywhere in the text, not only at its beginning": (
                _longest_prefix(text, corpus)
            ),
            "after a match, try the next start (start + 1), not the end of the match: a longer "
            "match can begin inside a shorter one": _jumping(text, corpus),
            "a verbatim piece can start and end inside words: compare characters, not whole "
            "words": _whole_words(text, corpus),
        }

        def verdict(got) -> str | None:
            if isinstance(got, int) and not isinstance(got, bool):
                return "return the piece itself (a str), not its length"
            if not isinstance(got, str):
                return f"return the piece as a str, got {type(got).__name__}"
            if got not in text and got not in corpus:
                return (
                    f"{got!r} is neither a piece of the text nor found verbatim in the corpus: a "
                    "verbatim piece is contiguous in both (a common *subsequence*, with gaps, is "
                    "not copying)"
                )
            if got not in text:
                return (
                    f"{got!r} is not a piece of the text: take contiguous characters of the text "
                    "(text[start:end])"
                )
            if got not in corpus:
                if got.lower() in corpus.lower():
                    return (
                        f"{got!r} is in the corpus only if case is ignored: verbatim means exactly "
                        "the same characters"
                    )
                return (
                    f"{got!r} is not found verbatim in the corpus: a verbatim piece is contiguous "
                    "there too (a common *subsequence*, with gaps, is not copying)"
                )
            if len(got) == length:
                return None
            for mistake, result in mistakes.items():
                if got == result:
                    return f"{mistake}\n   expected a piece of {length} characters, got {got!r}"
            if len(got) == length - 1:
                return (
                    f"one character short (expected {length}, got {len(got)}): check the end of "
                    "your slices (text[start:end] stops before end)"
                )
            return f"wrong piece: the longest is {length} characters, got {len(got)}: {got!r}"

        return Case(description, (text, corpus), verdict)

    cases = [
        case(
            "a line that quotes the corpus mid-sentence",
            "And I said: what light through yonder door? It is the east.",
            _CORPUS,
        ),
        case(
            "a long match that begins inside a shorter one",
            "xabcdefgh",
            "zz abcd zz bcdefgh zz",
        ),
        case("Juliet misquoted in capitals", "O ROMEO, Romeo! wherefore art thou", _CORPUS),
        case("nothing in common", "qqq", _CORPUS),
    ]
    hint = (
        "for each start, extend the end while text[start:end + 1] in corpus; keep the longest; a "
        "piece that occurs has every shorter piece occurring, so the end never needs to go back"
    )
    return run_check("longest_verbatim_substring", function, cases, hint, strict)
