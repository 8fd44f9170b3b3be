"""The plain functions behind the lessons' widgets, each beside its subject in the package."""

import pytest
import torch

from aigc_course.attention import sentence_attention
from aigc_course.models import vae as vae_tools
from aigc_course.models.gpt import sample_text

SENTENCE = "the cat sat on the mat because the cat was tired"


def test_sentence_attention_rows_are_distributions_and_repeats_attend_to_each_other():
    words, weights = sentence_attention(SENTENCE)
    assert words == SENTENCE.split() and weights.shape == (11, 11)
    torch.testing.assert_close(weights.sum(-1), torch.ones(11))
    first_the = weights[0]
    assert set(first_the.topk(3).indices.tolist()) == {0, 4, 7}, "'the' attends to every 'the'"


def test_sentence_attention_controls():
    _, causal = sentence_attention(SENTENCE, causal=True)
    assert (causal.triu(1) == 0).all()
    _, scaled = sentence_attention(SENTENCE)
    _, raw = sentence_attention(SENTENCE, scaled=False)
    entropy = lambda w: -(w * w.clamp_min(1e-30).log()).sum(-1).mean()  # noqa: E731
    assert entropy(raw) < entropy(scaled), "without 1/sqrt(d) the softmax is sharper"
    _, with_positions = sentence_attention(SENTENCE, position_strength=2.0)
    assert not torch.allclose(with_positions, scaled)
    with pytest.raises(ValueError, match="no words"):
        sentence_attention("   ")


def test_forward_reverse_fits_is_the_lesson_01_slider_function():
    from aigc_course import divergences

    fits = divergences.forward_reverse_fits(separation=5.0, weight=0.3)
    assert fits.reverse[0] > 0, "the heavier mode (weight 0.7) is on the right"
    assert fits.forward[1] > fits.reverse[1]


def test_vae_latent_helpers():
    from aigc_course.models.vae import VAE, VAEConfig

    torch.manual_seed(0)
    model = VAE(VAEConfig(latent_dim=2, channels=(4, 8), hidden=16)).eval()
    image = vae_tools.decode_latent(model, [0.5, -1.0])
    assert image.shape == (28, 28) and 0 <= image.min() and image.max() <= 1
    with torch.no_grad():
        expected = torch.sigmoid(model.decode(torch.tensor([[0.5, -1.0]])))[0, 0]
    torch.testing.assert_close(image, expected)
    grid = vae_tools.latent_grid(model, n=3, span=1.0)
    assert grid.shape == (84, 84)
    torch.testing.assert_close(
        grid[56:, :28], vae_tools.decode_latent(model, [-1.0, -1.0])
    )  # bottom left
    x = torch.rand(2, 1, 28, 28)
    path = vae_tools.interpolate(model, x[0], x[1], steps=5)
    assert path.shape == (5, 28, 28)
    torch.testing.assert_close(path[0], model.reconstruct(x[:1])[0, 0])
    torch.testing.assert_close(path[-1], model.reconstruct(x[1:])[0, 0])
    assert 0 <= vae_tools.active_units(model, torch.rand(16, 1, 28, 28)) <= 2


def test_gpt_sampling_and_attention_maps():
    from aigc_course.data import CharTokenizer
    from aigc_course.models.gpt import GPT, GPTConfig

    tokenizer = CharTokenizer.from_text("abcdefgh ")
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(vocab_size=9, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.0)
    ).eval()
    text = sample_text(model, tokenizer, "abc", tokens=10, seed=1)
    assert text.startswith("abc") and len(text) == 13
    assert text == sample_text(model, tokenizer, "abc", tokens=10, seed=1)
    greedy = sample_text(model, tokenizer, "a", tokens=8, temperature=0)
    assert sample_text(model, tokenizer, "a", tokens=8, top_k=1, seed=2) == greedy, (
        "top-1 is greedy"
    )
    with pytest.raises(ValueError, match="empty"):
        sample_text(model, tokenizer, "", tokens=5)
    idx = torch.tensor([tokenizer.encode("abcdefg")])
    maps = model.attention_maps(idx)
    assert len(maps) == 2 and maps[0].shape == (2, 7, 7)
    torch.testing.assert_close(maps[1].sum(-1), torch.ones(2, 7))
    assert (maps[0].triu(1) == 0).all(), "causal"
