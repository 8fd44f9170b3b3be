"""Scores that are not about images: the ROC AUC of aigc_course.metrics."""

from __future__ import annotations

import random

import pytest

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
