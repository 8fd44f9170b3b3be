"""Plain functions behind the lessons' interactive widgets, so they can be tested without a browser.

(Lesson 01's forward/reverse KL sliders use :func:`aigc_course.divergences.forward_reverse_fits`.)
"""

from __future__ import annotations

import torch

from aigc_course.nn.attention import attention, sinusoidal_positions


def sentence_attention(
    sentence: str,
    *,
    causal: bool = False,
    scaled: bool = True,
    position_strength: float = 0.0,
    dim: int = 32,
    seed: int = 0,
) -> tuple[list[str], torch.Tensor]:
    """Self-attention weights ``(T, T)`` over the words of ``sentence``, for lesson 04's explorer.

    Each distinct word gets a fixed random embedding with unit-variance entries (so identical
    words match strongly), plus ``position_strength`` times the sinusoidal position encoding.
    Queries and keys are the embeddings themselves (no learned projections), which makes the map
    readable: a word attends to its repeats, positions add locality, the causal mask hides the
    future, and without the 1/sqrt(d) scaling the softmax saturates to one-hot rows.
    """
    words = sentence.split()
    if not words:
        raise ValueError("the sentence has no words")
    generator = torch.Generator().manual_seed(seed)
    vocabulary = sorted(set(words))
    table = torch.randn(len(vocabulary), dim, generator=generator)
    x = table[torch.tensor([vocabulary.index(word) for word in words])]
    x = x + position_strength * sinusoidal_positions(len(words), dim) * dim**0.5 / 2
    scale = None if scaled else 1.0
    _, weights = attention(x[None], x[None], x[None], is_causal=causal, scale=scale)
    return words, weights[0]
