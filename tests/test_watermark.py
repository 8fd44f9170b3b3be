"""The green-list watermark (aigc_course.watermark): unmarked text scores z ~ N(0, 1), marked text of
enough length is detected, the detector needs only the key, and the sampler's bias is what it says."""

from __future__ import annotations

import math

import pytest
import torch

from aigc_course import watermark
from aigc_course.errors import SettingError
from aigc_course.models.gpt import GPT, GPTConfig

V = 65


def test_each_green_list_is_a_gamma_share_of_the_vocabulary_and_depends_on_the_key():
    table = watermark.green_lists(key=7, vocab_size=V, gamma=0.25)
    assert table.shape == (V, V) and (table.sum(dim=1) == round(0.25 * V)).all()
    assert not torch.equal(table[0], table[1]), "the previous token changes the list"
    assert torch.equal(table, watermark.green_lists(7, V, 0.25)), "the key alone decides it"
    assert not torch.equal(table, watermark.green_lists(8, V, 0.25))
    with pytest.raises(SettingError, match="gamma"):
        watermark.green_lists(7, V, 1.0)


def test_unwatermarked_text_scores_z_about_standard_normal_over_many_seeds():
    generator = torch.Generator().manual_seed(0)
    zs = torch.tensor(
        [
            watermark.detect(
                torch.randint(0, V, (200,), generator=generator), key=k, vocab_size=V
            ).z
            for k in range(1000)
        ]
    )
    assert abs(zs.mean().item()) < 0.1 and abs(zs.std().item() - 1) < 0.1
    assert (zs > 4).sum() == 0, "a z above 4 by chance: one in 30,000"


def _sample(model: GPT, mark: watermark.Watermark | None, length: int, seed: int) -> torch.Tensor:
    start = torch.zeros(1, 1, dtype=torch.long)
    adjust = mark.bias_logits if mark else None
    out = model.generate(
        start, length, generator=torch.Generator().manual_seed(seed), adjust_logits=adjust
    )
    return out[0]


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=V, block_size=32, n_layer=1, n_head=2, n_embd=16, dropout=0.0)
    return GPT(config).eval()


def test_watermarked_text_of_enough_length_is_detected_with_the_key_alone(model):
    mark = watermark.Watermark(key=42, vocab_size=V, gamma=0.5, delta=2.0)
    marked = _sample(model, mark, 200, seed=1)
    plain = _sample(model, None, 200, seed=1)
    found = watermark.detect(marked, key=42, vocab_size=V, gamma=0.5)  # no model passed
    assert found.detected() and found.scored == 200 and found.green > 140
    assert not watermark.detect(plain, key=42, vocab_size=V).detected()
    assert abs(watermark.detect(marked, key=43, vocab_size=V).z) < 4, "another key sees nothing"
    short = watermark.detect(marked[:11], key=42, vocab_size=V)
    assert short.z < found.z, "z grows with the length"


def test_the_bias_adds_delta_to_exactly_the_green_logits():
    mark = watermark.Watermark(key=3, vocab_size=V, gamma=0.5, delta=1.5)
    ids = torch.tensor([[5, 9], [1, 2]])
    logits = torch.randn(2, V)
    biased = mark.bias_logits(ids, logits)
    expected = logits + 1.5 * mark.table[torch.tensor([9, 2])].float()
    torch.testing.assert_close(biased, expected)
    assert mark.green_fraction == round(0.5 * V) / V
    with pytest.raises(SettingError, match="delta"):
        watermark.Watermark(key=3, vocab_size=V, delta=-1)


def test_the_z_score_is_the_formula_on_a_hand_made_sequence():
    table = watermark.green_lists(5, V, 0.5)
    ids = [0]
    for i in range(10):  # green, green, ..., then red: seven green of ten
        row = table[ids[-1]]
        wanted = i < 7
        ids.append(int(torch.nonzero(row == wanted)[0]))
    found = watermark.detect(ids, key=5, vocab_size=V, gamma=0.5)
    assert watermark.z_test(ids, table) == found, "the key's lists, built once, test the same"
    gamma = round(0.5 * V) / V
    assert found.green == 7 and found.scored == 10
    assert math.isclose(found.z, (7 - 10 * gamma) / math.sqrt(10 * gamma * (1 - gamma)))
    with pytest.raises(SettingError, match="at least 2"):
        watermark.detect([3], key=5, vocab_size=V)
