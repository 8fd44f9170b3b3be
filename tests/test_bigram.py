"""The bigram model and baseline (lesson 02), and the text split it shares with lesson 08."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from aigc_course import data
from aigc_course.data.text import train_val_ids
from aigc_course.models import bigram
from aigc_course.trainers.gpt import bigram_baseline
from tests.helpers import require


def test_pair_counts_by_hand():
    counts = bigram.pair_counts(torch.tensor([0, 1, 1, 2, 0, 1]), vocab_size=3)
    expected = torch.zeros(3, 3, dtype=torch.float64)
    for a, b in [(0, 1), (1, 1), (1, 2), (2, 0), (0, 1)]:
        expected[a, b] += 1
    torch.testing.assert_close(counts, expected)


def test_probabilities_and_nll():
    counts = torch.tensor([[3.0, 1.0], [0.0, 2.0]], dtype=torch.float64)
    probabilities = bigram.probabilities_from_counts(counts, alpha=1.0)
    torch.testing.assert_close(
        probabilities, torch.tensor([[4 / 6, 2 / 6], [1 / 4, 3 / 4]], dtype=torch.float64)
    )
    ids = torch.tensor([0, 0, 1, 1])
    manual = -(math.log(4 / 6) + math.log(2 / 6) + math.log(3 / 4)) / 3
    assert bigram.average_nll(probabilities, ids) == pytest.approx(manual)
    unsmoothed = bigram.probabilities_from_counts(counts, alpha=0.0)
    assert bigram.average_nll(unsmoothed, torch.tensor([1, 0])) == math.inf, (
        "unseen pair: infinite NLL"
    )
    with pytest.raises(ValueError, match="0/0"):
        bigram.probabilities_from_counts(torch.zeros(2, 2), alpha=0.0)
    with pytest.raises(ValueError, match="alpha"):
        bigram.probabilities_from_counts(counts, alpha=-1)


def test_gradient_descent_finds_the_counting_solution():
    generator = torch.Generator().manual_seed(0)
    ids = torch.multinomial(
        torch.tensor([0.5, 0.2, 0.2, 0.1]), 2000, replacement=True, generator=generator
    )
    counts = bigram.pair_counts(ids, 4)
    by_counting = bigram.probabilities_from_counts(counts, alpha=0.5)
    by_descent, history = bigram.fit_by_gradient_descent(counts, alpha=0.5, steps=1000)
    torch.testing.assert_close(by_descent, by_counting, atol=1e-5, rtol=0)
    assert history[-1] < history[0]


def test_sampling_follows_the_table():
    cycle = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    assert bigram.sample(cycle, start=1, length=7) == [1, 2, 0, 1, 2, 0, 1]


def test_train_val_ids_is_a_contiguous_split():
    tokenizer = data.CharTokenizer.from_text("abcdefghij")
    train, val = train_val_ids("abcdefghij", tokenizer, train_fraction=0.9)
    assert tokenizer.decode(train) == "abcdefghi" and tokenizer.decode(val) == "j"
    with pytest.raises(ValueError, match="between 0 and 1"):
        train_val_ids("abc", tokenizer, train_fraction=1.0)


def test_baseline_on_tiny_shakespeare():
    require(
        all(s.ready for s in data.dataset_status(["tinyshakespeare"])),
        "Tiny Shakespeare is missing",
    )
    result = bigram_baseline()
    assert (result.train_characters, result.val_characters, result.vocab_size) == (
        1_003_854,
        111_540,
        65,
    )
    assert 2.45 < result.val_nll < 2.52, (
        "bigram validation NLL on Tiny Shakespeare is about 2.48 nats"
    )
    assert result.val_nll < math.log(65), "must beat the uniform model"
    # Recomputed independently, with plain Python counting on the raw text: add-one smoothing,
    # P(b | a) = (count(a b) + 1) / (count(a .) + V), over the first 90% / last 10% split,
    # and the bits directly with log2 (not as nats / ln 2).
    text = data.load_tiny_shakespeare()
    cut = int(0.9 * len(text))
    train, val = text[:cut], text[cut:]
    pairs = Counter(zip(train, train[1:], strict=False))
    firsts = Counter(train[:-1])  # count(a .): the pairs that start with a
    vocab_size = len(set(text))

    def probability(a, b):
        return (pairs[a, b] + 1) / (firsts[a] + vocab_size)

    val_pairs = list(zip(val, val[1:], strict=False))
    nats = -sum(math.log(probability(a, b)) for a, b in val_pairs) / len(val_pairs)
    bits = -sum(math.log2(probability(a, b)) for a, b in val_pairs) / len(val_pairs)
    assert result.alpha == 1.0
    assert result.val_nll == pytest.approx(nats, rel=1e-9)
    assert result.val_bits_per_character == pytest.approx(bits, rel=1e-9)
    assert f"{bits:.4f} bits per character" in str(result)
