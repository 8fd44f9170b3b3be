"""The plain functions behind the lessons' widgets."""

import pytest
import torch

from aigc_course import explore

SENTENCE = "the cat sat on the mat because the cat was tired"


def test_sentence_attention_rows_are_distributions_and_repeats_attend_to_each_other():
    words, weights = explore.sentence_attention(SENTENCE)
    assert words == SENTENCE.split() and weights.shape == (11, 11)
    torch.testing.assert_close(weights.sum(-1), torch.ones(11))
    first_the = weights[0]
    assert set(first_the.topk(3).indices.tolist()) == {0, 4, 7}, "'the' attends to every 'the'"


def test_sentence_attention_controls():
    _, causal = explore.sentence_attention(SENTENCE, causal=True)
    assert (causal.triu(1) == 0).all()
    _, scaled = explore.sentence_attention(SENTENCE)
    _, raw = explore.sentence_attention(SENTENCE, scaled=False)
    entropy = lambda w: -(w * w.clamp_min(1e-30).log()).sum(-1).mean()  # noqa: E731
    assert entropy(raw) < entropy(scaled), "without 1/sqrt(d) the softmax is sharper"
    _, with_positions = explore.sentence_attention(SENTENCE, position_strength=2.0)
    assert not torch.allclose(with_positions, scaled)
    with pytest.raises(ValueError, match="no words"):
        explore.sentence_attention("   ")


def test_forward_reverse_fits_is_the_lesson_01_slider_function():
    from aigc_course import divergences

    fits = divergences.forward_reverse_fits(separation=5.0, weight=0.3)
    assert fits.reverse[0] > 0, "the heavier mode (weight 0.7) is on the right"
    assert fits.forward[1] > fits.reverse[1]
