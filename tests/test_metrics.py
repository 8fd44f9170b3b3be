"""aigc_course.metrics beyond FID: the ROC AUC, precision and recall of generative models, and the
memorisation measures (nearest training neighbours, the longest verbatim substring)."""

from __future__ import annotations

import random

import pytest
import torch

from aigc_course import metrics


def _pairwise_auc(positives, negatives):
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def test_roc_auc_is_the_probability_a_positive_outscores_a_negative():
    assert metrics.roc_auc([2.0, 3.0], [0.0, 1.0]) == 1.0
    assert metrics.roc_auc([0.0, 1.0], [2.0, 3.0]) == 0.0
    assert metrics.roc_auc([1.0, 1.0], [1.0]) == 0.5  # ties count half
    rng = random.Random(0)
    for _ in range(20):  # with ties (rounded scores), against counting every pair
        positives = [round(rng.gauss(0.5, 1), 1) for _ in range(rng.randint(1, 30))]
        negatives = [round(rng.gauss(0.0, 1), 1) for _ in range(rng.randint(1, 30))]
        assert metrics.roc_auc(positives, negatives) == pytest.approx(
            _pairwise_auc(positives, negatives), abs=1e-12
        )


def test_roc_auc_needs_both_classes():
    with pytest.raises(ValueError, match="at least one positive and one negative"):
        metrics.roc_auc([], [1.0])


def test_identical_sets_have_precision_and_recall_one():
    features = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    figures = metrics.precision_recall(features, features.clone(), k=3)
    assert figures.precision == 1.0 and figures.recall == 1.0


def test_disjoint_clusters_have_precision_and_recall_zero():
    generator = torch.Generator().manual_seed(1)
    real = torch.randn(150, 4, generator=generator)
    fake = torch.randn(150, 4, generator=generator) + 50.0
    figures = metrics.precision_recall(real, fake, k=3)
    assert figures.precision == 0.0 and figures.recall == 0.0


def test_a_collapsed_generator_has_precision_but_no_recall():
    generator = torch.Generator().manual_seed(2)
    real = torch.randn(300, 2, generator=generator)
    fake = real[real[:, 0] > 1.0][:40]  # only one corner of the data: faithful, not covering
    figures = metrics.precision_recall(real, fake, k=3)
    assert figures.precision == 1.0 and figures.recall < 0.3


def test_knn_radii_exclude_the_point_itself_and_check_k():
    points = torch.tensor([[0.0], [1.0], [3.0]])
    assert metrics.knn_radii(points, k=1).tolist() == [1.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="k must be 1 to 2"):
        metrics.knn_radii(points, k=3)


def test_a_copied_sample_is_found_at_distance_zero():
    generator = torch.Generator().manual_seed(3)
    training = torch.rand(500, 1, 28, 28, generator=generator)
    samples = torch.rand(4, 1, 28, 28, generator=generator)
    samples[2] = training[123]
    distances, indices = metrics.nearest_neighbours(samples, training)
    assert distances[2].item() == 0.0 and indices[2].item() == 123
    assert (distances[[0, 1, 3]] > 1.0).all()


def test_the_longest_verbatim_substring_is_found():
    corpus = "ROMEO:\nBut soft, what light through yonder window breaks?\n"
    assert (
        metrics.longest_verbatim_substring("xx what light through zz", corpus)
        == " what light through "
    )
    assert metrics.longest_verbatim_substring("qqq", corpus) == ""
    assert metrics.longest_verbatim_substring("", corpus) == ""


def test_nearest_neighbours_agree_with_an_exhaustive_search():
    generator = torch.Generator().manual_seed(3)
    references = torch.rand(500, 1, 6, 6, generator=generator)
    queries = torch.rand(70, 1, 6, 6, generator=generator)
    distances, indices = metrics.nearest_neighbours(queries, references, batch_size=32)
    exhaustive = metrics.pairwise_distances(queries.flatten(1), references.flatten(1))
    torch.testing.assert_close(distances, exhaustive.min(dim=1).values)
    assert torch.equal(indices, exhaustive.argmin(dim=1))


def test_the_longest_verbatim_substring_agrees_with_trying_every_piece():
    generator = random.Random(5)
    for _ in range(200):  # small alphabets make many partial matches, the hard case
        corpus = "".join(generator.choice("abc") for _ in range(generator.randint(0, 30)))
        text = "".join(generator.choice("abcd") for _ in range(generator.randint(0, 15)))
        pieces = [text[i:j] for i in range(len(text)) for j in range(i + 1, len(text) + 1)]
        longest = max((len(p) for p in pieces if p in corpus), default=0)
        found = metrics.longest_verbatim_substring(text, corpus)
        assert len(found) == longest and found in corpus and found in text
