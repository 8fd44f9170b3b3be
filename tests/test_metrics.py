"""aigc_course.metrics beyond FID: the ROC AUC, precision and recall of generative models, and the
memorisation measures (nearest training neighbours, the longest verbatim substring)."""

from __future__ import annotations

import math
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


# --- lesson 12: a planted secret's exposure, and a filter's precision and recall ---------------

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _text_with_canary(canary: str, repetitions: int) -> str:
    generator = random.Random(0)
    words = [
        "the",
        "king",
        "is",
        "dead",
        "long",
        "live",
        "my",
        "lord",
        "good",
        "night",
        "sweet",
        "prince",
    ]
    lines = [" ".join(generator.choice(words) for _ in range(6)) for _ in range(400)]
    for _ in range(repetitions):
        lines.insert(generator.randrange(len(lines)), canary)
    return "\n".join(lines) + "\n"


def _train_tiny_gpt(text: str, steps: int = 250):
    from aigc_course.data import CharTokenizer
    from aigc_course.models.gpt import GPT, GPTConfig

    tokenizer = CharTokenizer.from_text(LETTERS + " \n:" + text)
    ids = torch.tensor(tokenizer.encode(text))
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(tokenizer.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - 33, (32,), generator=generator)
        blocks = ids[starts[:, None] + torch.arange(33)]
        _, loss = model(blocks[:, :-1], blocks[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), tokenizer


def test_a_canary_seen_100_times_is_more_exposed_than_one_seen_once_and_is_extracted():
    prefix_text, secret = "secret: ", "qzkxwvb"
    generator = random.Random(1)
    candidates_text = [
        "".join(generator.choice(LETTERS) for _ in range(len(secret))) for _ in range(300)
    ]
    exposures, extracted = {}, {}
    for repetitions in (1, 100):
        model, tokenizer = _train_tiny_gpt(_text_with_canary(prefix_text + secret, repetitions))
        prefix = torch.tensor(tokenizer.encode(prefix_text))
        secret_ids = torch.tensor([tokenizer.encode(secret)])
        candidates = torch.tensor([tokenizer.encode(c) for c in candidates_text])
        secret_nll = metrics.continuation_nlls(model, prefix, secret_ids)[0].item()
        # the batched form equals the model's own one-at-a-time measure
        assert abs(secret_nll - len(secret) * model.continuation_nll(prefix, secret_ids[0])) < 1e-3
        exposures[repetitions] = metrics.exposure(
            secret_nll, metrics.continuation_nlls(model, prefix, candidates)
        )
        greedy = model.generate(prefix[None], len(secret), temperature=0)[0, len(prefix) :]
        extracted[repetitions] = tokenizer.decode(greedy.tolist()) == secret
    assert exposures[100] > exposures[1] + 3
    assert exposures[100] == pytest.approx(math.log2(301)), "seen 100 times: ranked first"
    assert extracted[100] and not extracted[1]


def test_exposure_is_log_candidates_minus_log_rank():
    nlls = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])  # seven candidates
    assert metrics.exposure(0.5, nlls) == pytest.approx(3.0)  # rank 1 of 8
    assert metrics.exposure(4.5, nlls) == pytest.approx(3.0 - math.log2(5))  # rank 5
    assert metrics.exposure(9.0, nlls) == pytest.approx(0.0)  # last


def test_filter_scores_count_hits_false_alarms_and_misses():
    scores = metrics.filter_scores(
        [True, True, False, False, True], [True, False, True, False, True]
    )
    assert (scores.precision, scores.recall, scores.flagged, scores.positives) == (
        2 / 3,
        2 / 3,
        3,
        3,
    )
    assert metrics.filter_scores([False, False], [True, False]).precision == 1.0
    with pytest.raises(ValueError, match="one flag per item"):
        metrics.filter_scores([True], [True, False])


def test_kid_is_unbiased_where_fid_is_not():
    """Two samples of one distribution: FID grows as the samples shrink, KID stays near 0 (within
    its standard error) at every size; two different distributions give a KID well above 0."""
    generator = torch.Generator().manual_seed(0)

    def draw(n: int, shift: float = 0.0) -> torch.Tensor:
        return torch.randn(n, 16, generator=generator, dtype=torch.float64) + shift

    def fid(a: torch.Tensor, b: torch.Tensor) -> float:
        return metrics.frechet_distance(
            *metrics.feature_statistics(a), *metrics.feature_statistics(b)
        )

    fids = {n: fid(draw(n), draw(n)) for n in (50, 2000)}
    assert fids[50] > 10 * fids[2000], fids  # the same distribution, a large FID at n = 50
    for n in (50, 400, 2000):
        same = metrics.kernel_inception_distance(draw(n), draw(n))
        assert abs(same.value) < 3 * same.standard_error, (n, same)
    different = metrics.kernel_inception_distance(draw(400), draw(400, shift=0.5))
    assert different.value > 5 * different.standard_error > 0
    with pytest.raises(ValueError, match="at least 2 samples"):
        metrics.kernel_inception_distance(draw(1), draw(5))


def test_binomial_interval_is_exact():
    low, high = metrics.binomial_interval(0, 500)
    assert low == 0 and high == pytest.approx(1 - 0.025 ** (1 / 500), rel=1e-6)  # about 3.7 / n
    low, high = metrics.binomial_interval(1, 5000)
    assert low == pytest.approx(1 - 0.975 ** (1 / 5000), rel=1e-6)
    assert 1.0e-3 < high < 1.2e-3
    low, high = metrics.binomial_interval(50, 100)  # symmetric around one half
    assert low == pytest.approx(1 - high, abs=1e-9) and 0.39 < low < 0.41
    with pytest.raises(ValueError, match="successes <= trials"):
        metrics.binomial_interval(3, 2)
