"""Measuring generated images with the course's own Fashion-MNIST classifier.

FID (Heusel et al., 2017) compares two sets of images through the features a classifier computes
for them: fit a Gaussian to each set's features and take the Fréchet distance between the two,

    d^2 = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1^1/2 S_2 S_1^1/2)^1/2).

Papers use Inception-v3 features of ImageNet; this course uses the 128 penultimate features of a
small classifier trained on Fashion-MNIST (:mod:`aigc_course.models.classifier`, trained by
:mod:`aigc_course.trainers.classifier`; its weights ship with the package, no download). The
numbers are therefore *not* comparable with published FIDs, but they measure the same thing for
this data: whether generated images have the statistics of real ones, in a space where garments
that look alike are close. The class histogram of the classifier's predictions on generated images
adds a direct view of mode coverage (its entropy is log 10 = 2.303 nats when all classes appear
equally often).

Beyond FID (lesson 11): :func:`precision_recall` separates fidelity from coverage with k-NN
estimates of each set's manifold in a feature space (Kynkäänniemi et al., 2019);
:func:`nearest_neighbours` and :func:`longest_verbatim_substring` look for memorisation (a sample
at distance 0 from a training image, a generated text that copies the training text); and
:func:`roc_auc` scores a detector or a judge.

FID from a few hundred samples is biased upwards, and by different amounts for different models
(Bińkowski et al., 2018; Chong & Forsyth, 2020): a ranking drawn from it needs thousands of samples,
or the real-versus-real FID at the same count beside it. :func:`kid` is unbiased and comes with
its standard error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from aigc_course.i18n import _
from aigc_course.models.classifier import FashionClassifier
from aigc_course.models.gpt import GPT


@torch.no_grad()
def batched(function, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """``function`` over ``images`` in batches, on the model's device; the result on the CPU."""
    return torch.cat(
        [function(images[i : i + batch_size]).cpu() for i in range(0, len(images), batch_size)]
    )


@torch.no_grad()
def accuracy(classifier: FashionClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    device = next(classifier.parameters()).device
    predictions = batched(lambda x: classifier(x.to(device)).argmax(1), images)
    return (predictions == labels).float().mean().item()


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(d,)`` and covariance ``(d, d)`` of features ``(N, d)``, in float64."""
    features = features.double()
    return features.mean(0), torch.cov(features.T)


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix (eigenvalues >= 0)."""
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(
    mean_1: torch.Tensor, cov_1: torch.Tensor, mean_2: torch.Tensor, cov_2: torch.Tensor
) -> float:
    """The squared Fréchet (2-Wasserstein) distance between N(mean_1, cov_1) and N(mean_2, cov_2).

    tr((S_1 S_2)^1/2) is computed as tr((S_1^1/2 S_2 S_1^1/2)^1/2): the inner matrix is symmetric
    PSD, so its square root comes from a symmetric eigendecomposition, without the complex
    round-off that a general matrix square root (scipy.linalg.sqrtm) can produce.
    """
    mean_1, cov_1, mean_2, cov_2 = (t.double() for t in (mean_1, cov_1, mean_2, cov_2))
    root_1 = _sqrt_psd(cov_1)
    middle = root_1 @ cov_2 @ root_1
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    distance = (
        (mean_1 - mean_2).pow(2).sum() + torch.trace(cov_1) + torch.trace(cov_2) - 2 * trace_sqrt
    )
    return max(distance.item(), 0.0)


def image_statistics(
    classifier: FashionClassifier, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian FID fits to an image set: the mean ``(d,)`` and covariance ``(d, d)`` of the
    classifier features of ``images``. A trainer that scores its samples against the same test
    images at every evaluation computes theirs once (:func:`sample_scores` takes them)."""
    return feature_statistics(classifier_features(classifier, images))


def fid(classifier: FashionClassifier, images_1: torch.Tensor, images_2: torch.Tensor) -> float:
    """FID between two image sets ``(N, 1, 28, 28)`` in [0, 1], with the course classifier's features."""
    return frechet_distance(
        *image_statistics(classifier, images_1), *image_statistics(classifier, images_2)
    )


def classifier_features(classifier: FashionClassifier, images: torch.Tensor) -> torch.Tensor:
    """The course classifier's 128 penultimate features of images ``(N, 1, 28, 28)``: ``(N, 128)``."""
    device = next(classifier.parameters()).device
    return batched(lambda x: classifier.features(x.to(device)), images)


@dataclass
class KID:
    """Kernel inception distance: an unbiased estimate of the squared MMD, with its standard error."""

    value: float
    standard_error: float
    blocks: int

    def __str__(self) -> str:
        return f"{self.value:.3g} ± {self.standard_error:.2g}"


def _unbiased_mmd2(x: torch.Tensor, y: torch.Tensor) -> float:
    """The unbiased squared MMD of ``x`` ``(m, d)`` and ``y`` ``(n, d)`` under the cubic polynomial
    kernel k(a, b) = (a . b / d + 1)^3 (Bińkowski et al., 2018): the within-set means leave out the
    diagonal, so its expectation is exactly 0 when the two sets come from one distribution."""
    d = x.shape[1]

    def kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a @ b.T / d + 1) ** 3

    m, n = len(x), len(y)
    k_xx, k_yy = kernel(x, x), kernel(y, y)
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return (within_x + within_y - 2 * kernel(x, y).mean()).item()


def kernel_inception_distance(
    features_1: torch.Tensor, features_2: torch.Tensor, blocks: int = 10
) -> KID:
    """KID between two feature sets ``(N, d)``: the unbiased squared MMD over all pairs, with its
    standard error by the delete-a-block jackknife (each set split into ``blocks`` blocks; the
    estimate is recomputed without block b of both sets, for each b).

    Unlike FID it is unbiased: its expected value does not depend on the number of samples, so
    models scored on a few hundred samples can be ranked, with the standard error saying whether a
    difference is larger than the noise. Needs at least 2 samples in each set (3 per block for the
    standard error)."""
    x, y = features_1.double(), features_2.double()
    if min(len(x), len(y)) < 2:
        raise ValueError(
            _("KID needs at least 2 samples in each set, got {first} and {second}").format(
                first=len(x), second=len(y)
            )
        )
    value = _unbiased_mmd2(x, y)
    blocks = min(blocks, len(x) // 3, len(y) // 3)
    if blocks < 2:
        return KID(value, float("nan"), blocks)
    x_blocks = torch.arange(len(x)).tensor_split(blocks)
    y_blocks = torch.arange(len(y)).tensor_split(blocks)
    left_out = torch.tensor(
        [
            _unbiased_mmd2(
                x[torch.cat([b for j, b in enumerate(x_blocks) if j != i])],
                y[torch.cat([b for j, b in enumerate(y_blocks) if j != i])],
            )
            for i in range(blocks)
        ]
    )
    variance = (blocks - 1) / blocks * ((left_out - left_out.mean()) ** 2).sum().item()
    return KID(value, math.sqrt(variance), blocks)


def kid(
    classifier: FashionClassifier, images_1: torch.Tensor, images_2: torch.Tensor, blocks: int = 10
) -> KID:
    """KID between two image sets in [0, 1], with the course classifier's features."""
    return kernel_inception_distance(
        classifier_features(classifier, images_1), classifier_features(classifier, images_2), blocks
    )


def _statistics_pair(value) -> tuple[torch.Tensor, torch.Tensor]:
    """``value`` as a (mean ``(d,)``, covariance ``(d, d)``) pair, or a TypeError that says what
    :func:`sample_scores` takes (an ``ImageDataset`` item, images and labels, is not one)."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(pair) == 2 and all(isinstance(t, torch.Tensor) for t in pair):
        mean, covariance = pair
        if mean.ndim == 1 and covariance.shape == (len(mean), len(mean)):
            return mean, covariance
    shapes = [tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in pair]
    raise TypeError(
        f"real must be images (N, 1, 28, 28) or their image_statistics, a mean (d,) and a "
        f"covariance (d, d); got {type(value).__name__} {shapes or ''}".rstrip()
    )


def sample_scores(
    classifier: FashionClassifier,
    fake: torch.Tensor,
    real: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
) -> dict[str, float]:
    """What the course reports of a set of generated images: their FID against ``real`` (images, or
    their :func:`image_statistics`) and the entropy of their class histogram
    (``{"fid": ..., "class_entropy": ...}``)."""
    if isinstance(real, torch.Tensor):
        real_statistics = image_statistics(classifier, real)
    else:
        real_statistics = _statistics_pair(real)
    fake_features = classifier_features(classifier, fake)  # once, for both scores
    fake_statistics = feature_statistics(fake_features)
    if real_statistics[0].shape != fake_statistics[0].shape:
        raise ValueError(
            f"the real statistics are of {len(real_statistics[0])} features, the classifier "
            f"gives {len(fake_statistics[0])}: compute them with image_statistics"
        )
    return {
        "fid": frechet_distance(*fake_statistics, *real_statistics),
        "class_entropy": class_histogram_of_features(classifier, fake_features).entropy,
    }


@dataclass
class ClassHistogram:
    """How the classifier labels a set of images: the coverage of the ten classes."""

    counts: torch.Tensor
    entropy: float  # nats; log 10 = 2.303 when uniform

    @property
    def fractions(self) -> torch.Tensor:
        return self.counts / self.counts.sum()


def class_histogram(classifier: FashionClassifier, images: torch.Tensor) -> ClassHistogram:
    """How the classifier labels images ``(N, 1, 28, 28)`` in [0, 1]."""
    return class_histogram_of_features(classifier, classifier_features(classifier, images))


@torch.no_grad()
def class_histogram_of_features(
    classifier: FashionClassifier, features: torch.Tensor
) -> ClassHistogram:
    """:func:`class_histogram` of images whose :func:`classifier_features` ``(N, 128)`` are
    already computed (for the FID, say): only the classifier's last layer runs again."""
    device = next(classifier.parameters()).device
    predictions = batched(lambda f: classifier.logits(f.to(device)).argmax(1), features)
    counts = torch.bincount(predictions, minlength=10).double()
    fractions = counts / counts.sum()
    return ClassHistogram(counts, float(0.0 - torch.xlogy(fractions, fractions).sum()))


def roc_auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """The area under the ROC curve of a score: the probability that a random positive scores
    above a random negative, ties counting half (0.5: the score separates nothing; 1: perfectly).
    Computed exactly from the ranks of all scores (the Mann-Whitney U statistic)."""
    if not positives or not negatives:
        raise ValueError(_("the AUC needs at least one positive and one negative score"))
    scores = torch.tensor([*positives, *negatives], dtype=torch.float64)
    order = scores.argsort()
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64)
    for value in scores.unique():  # tied scores share their mean rank
        tied = scores == value
        ranks[tied] = ranks[tied].mean()
    p, n = len(positives), len(negatives)
    return float((ranks[:p].sum() - p * (p + 1) / 2) / (p * n))


# --------------------------------------------------------------------------------------------
# Fidelity and coverage, and memorisation (lesson 11)
# --------------------------------------------------------------------------------------------


def pairwise_distances(a: torch.Tensor, b: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Euclidean distances between the rows of ``a`` ``(N, D)`` and ``b`` ``(M, D)``: ``(N, M)``,
    computed in float64 (so that an exact copy is at distance 0), ``batch_size`` rows at a time."""
    a, b = a.double(), b.double()
    return torch.cat(
        [
            torch.cdist(a[i : i + batch_size], b, compute_mode="donot_use_mm_for_euclid_dist")
            for i in range(0, len(a), batch_size)
        ]
    )


def knn_radii(features: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Each row's distance to its k-th nearest *other* row: ``(N,)``, the radius of its ball in
    the k-NN estimate of the set's manifold."""
    if not 1 <= k < len(features):
        raise ValueError(
            _("k must be 1 to {highest} (the set has {rows} rows), got {k}").format(
                highest=len(features) - 1, rows=len(features), k=k
            )
        )
    distances = pairwise_distances(features, features)
    return distances.kthvalue(k + 1, dim=1).values  # the 1st is the row itself, at 0


@dataclass(frozen=True)
class PrecisionRecall:
    """Kynkäänniemi et al. (2019): ``precision`` is the share of generated samples inside the real
    data's k-NN manifold (fidelity); ``recall`` the share of real samples inside the generated
    samples' manifold (coverage)."""

    precision: float
    recall: float


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> PrecisionRecall:
    """Precision and recall of generated ``fake`` features ``(M, D)`` against ``real`` ``(N, D)``:
    a sample is inside a set's manifold when it lies within some member's k-NN radius."""

    def inside(points: torch.Tensor, support: torch.Tensor) -> float:
        radii = knn_radii(support, k)
        distances = pairwise_distances(points, support)
        return (distances <= radii[None, :]).any(dim=1).double().mean().item()

    return PrecisionRecall(precision=inside(fake, real), recall=inside(real, fake))


def nearest_neighbours(
    queries: torch.Tensor, references: torch.Tensor, candidates: int = 8, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query row ``(N, ...)``, its nearest reference row ``(M, ...)`` (rows flattened):
    the distances ``(N,)`` and the indices ``(N,)``. A query copied from the references is at 0.

    Searching a whole training set exactly is slow, so the ``candidates`` nearest by the fast
    matrix-product form (|a|^2 + |b|^2 - 2 a.b, float32) are found first, and their distances then
    computed exactly in float64 (:func:`pairwise_distances`)."""
    queries, references = queries.flatten(1).float(), references.flatten(1).float()
    candidates = min(candidates, len(references))
    all_distances, all_indices = [], []
    for start in range(0, len(queries), batch_size):
        chunk = queries[start : start + batch_size]
        rough = torch.cdist(chunk, references, compute_mode="use_mm_for_euclid_dist")
        nearest = rough.topk(candidates, dim=1, largest=False).indices  # (n, candidates)
        exact = (chunk[:, None, :].double() - references[nearest].double()).norm(dim=2)
        values, best = exact.min(dim=1)
        all_distances.append(values)
        all_indices.append(nearest.gather(1, best[:, None])[:, 0])
    return torch.cat(all_distances), torch.cat(all_indices)


def longest_verbatim_substring(text: str, corpus: str) -> str:
    """The longest piece of ``text`` that occurs verbatim in ``corpus`` (the first of that length).

    One pass over ``text``: if ``text[start:end]`` occurs, so does every piece inside it, so after
    a match the next start keeps the same end and only ever extends it; each step moves ``start``
    or ``end`` forward, so at most 2 len(text) searches of the corpus are made."""
    best, start, end = "", 0, 0
    while start < len(text):
        end = max(end, start)
        while end < len(text) and text[start : end + 1] in corpus:
            end += 1
        if end - start > len(best):
            best = text[start:end]
        start += 1
    return best


# --------------------------------------------------------------------------------------------
# Memorisation of a planted secret, and a filter's precision and recall (lesson 12)
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def continuation_nlls(
    model: GPT, prefix: torch.Tensor, continuations: torch.Tensor, batch_size: int = 512
) -> torch.Tensor:
    """The negative log-likelihood, in nats summed over the tokens, of each continuation ``(C, L)``
    read after the same ``prefix`` ``(P,)``: ``(C,)``. The model is put in eval mode and restored."""
    device = next(model.parameters()).device
    length = continuations.shape[1]
    if prefix.numel() < 1 or prefix.numel() + length > model.config.block_size + 1:
        raise ValueError(
            _(
                "prefix and continuation must fit the context: 1 <= {prefix} and "
                "{prefix} + {length} <= {limit}"
            ).format(prefix=prefix.numel(), length=length, limit=model.config.block_size + 1)
        )
    was_training = model.training
    model.eval()
    try:
        results = []
        for start in range(0, len(continuations), batch_size):
            chunk = continuations[start : start + batch_size].to(device)
            ids = torch.cat([prefix.to(device).expand(len(chunk), -1), chunk], dim=1)
            logits, _unused = model(ids[:, :-1])
            log_probs = torch.log_softmax(logits[:, -length:].float(), dim=-1)
            picked = log_probs.gather(2, chunk[:, :, None])[:, :, 0]
            results.append(-picked.sum(dim=1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(results)


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (exact for large n)."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
        + i * math.log(p) + (n - i) * math.log1p(-p)
        for i in range(k + 1)
    ]  # fmt: skip
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def binomial_interval(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) confidence interval of a rate seen ``successes`` times in
    ``trials``: the rates under which what was seen is not in either tail of ``(1 - level) / 2``.

    None seen in n trials gives (0, about 3.7 / n) at 95%; one of 5,000 gives about (5e-6, 1.1e-3)."""
    if not 0 <= successes <= trials or trials < 1:
        raise ValueError(
            _("need 0 <= successes <= trials and trials >= 1, got {successes}, {trials}").format(
                successes=successes, trials=trials
            )
        )
    tail = (1 - level) / 2

    def solve(condition) -> float:  # the p in (0, 1) where condition turns from False to True
        low, high = 0.0, 1.0
        for _step in range(100):
            middle = (low + high) / 2
            low, high = (low, middle) if condition(middle) else (middle, high)
        return (low + high) / 2

    lower = (
        0.0
        if successes == 0
        else solve(lambda p: 1 - _binomial_cdf(successes - 1, trials, p) > tail)
    )
    upper = (
        1.0 if successes == trials else solve(lambda p: _binomial_cdf(successes, trials, p) < tail)
    )
    return lower, upper


def exposure(secret_nll: float, candidate_nlls: torch.Tensor) -> float:
    """Carlini et al.'s (2019) exposure of a planted secret, in bits: log2(C + 1) - log2(rank), where
    rank is the secret's place (1 = most likely) among itself and ``C`` random candidates of the
    same form, by negative log-likelihood. About 1 bit when the model knows nothing of the secret
    (a middle rank), log2(C + 1) when it ranks the secret first."""
    rank = 1 + int((candidate_nlls < secret_nll).sum())
    return math.log2(len(candidate_nlls) + 1) - math.log2(rank)


@dataclass(frozen=True)
class FilterScores:
    """How a filter's flags agree with the truth: ``precision`` = the share of flagged items that
    should be flagged, ``recall`` = the share of items that should be flagged that are."""

    precision: float
    recall: float
    flagged: int
    positives: int


def filter_scores(flagged: Sequence[bool], truth: Sequence[bool]) -> FilterScores:
    """Precision and recall of a filter's flags against the true labels (both as long as the items).
    A filter that flags nothing has precision 1 by convention (no false alarm)."""
    if len(flagged) != len(truth):
        raise ValueError(
            _("{flags} flags for {labels} labels: give one flag per item").format(
                flags=len(flagged), labels=len(truth)
            )
        )
    hits = sum(1 for f, t in zip(flagged, truth, strict=True) if f and t)
    n_flagged, positives = sum(map(bool, flagged)), sum(map(bool, truth))
    return FilterScores(
        precision=hits / n_flagged if n_flagged else 1.0,
        recall=hits / positives if positives else 1.0,
        flagged=n_flagged,
        positives=positives,
    )
