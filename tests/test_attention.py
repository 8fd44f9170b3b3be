"""aigc_course.attention against PyTorch's scaled_dot_product_attention, and its properties."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from aigc_course import attention as A

TOLERANCE = {
    torch.float32: (1e-5, 1e-5),
    torch.float64: (1e-10, 1e-10),
    torch.bfloat16: (2e-2, 2e-2),
}


def random_qkv(batch, heads, t_q, t_k, d, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    make = lambda t: torch.randn(batch, heads, t, d, generator=generator).to(dtype)  # noqa: E731
    return make(t_q), make(t_k), make(t_k)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize(
    "shape", [(1, 1, 1, 1, 4), (2, 3, 5, 5, 8), (2, 4, 7, 11, 16), (3, 2, 16, 16, 32)]
)
@pytest.mark.parametrize("masking", ["none", "causal", "bool", "float", "padding"])
def test_attention_equals_sdpa(dtype, shape, masking):
    batch, heads, t_q, t_k, d = shape
    q, k, v = random_qkv(batch, heads, t_q, t_k, d, dtype)
    kwargs = {}
    if masking == "causal":
        kwargs["is_causal"] = True
    elif masking == "bool":
        generator = torch.Generator().manual_seed(1)
        mask = torch.rand(t_q, t_k, generator=generator) > 0.3
        mask[:, 0] = True  # every query keeps at least one key
        kwargs["mask"] = mask
    elif masking == "float":
        kwargs["mask"] = torch.randn(t_q, t_k).to(dtype)
    elif masking == "padding":
        lengths = torch.randint(1, t_k + 1, (batch,), generator=torch.Generator().manual_seed(2))
        kwargs["mask"] = A.padding_mask(lengths, t_k)
    out, weights = A.attention(q, k, v, **kwargs)
    reference = F.scaled_dot_product_attention(
        q, k, v, attn_mask=kwargs.get("mask"), is_causal=kwargs.get("is_causal", False)
    )
    rtol, atol = TOLERANCE[dtype]
    torch.testing.assert_close(out, reference, rtol=rtol, atol=atol)
    sums = weights.double().sum(-1)
    torch.testing.assert_close(sums, torch.ones_like(sums), rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("kind", ["bool", "float"])
def test_fully_and_partially_masked_rows_equal_sdpa(dtype, kind):
    """A query with no visible key: PyTorch (2.5+) returns a zero output row and zero gradients,
    not NaN; ``attention`` must do the same. The other rows are partially masked."""
    q, k, v = random_qkv(2, 3, 5, 7, 8, dtype, seed=3)
    visible = torch.rand(5, 7, generator=torch.Generator().manual_seed(4)) > 0.5
    visible[:, 6] = True  # rows 0, 2, 4: partially masked, at least one visible key
    visible[1] = False  # row 1 sees nothing
    visible[3] = False  # row 3 sees nothing either
    visible = visible.expand(2, 3, 5, 7).clone()
    visible[1, 2, 0] = False  # and one more row, in a single batch element and head only
    fully_masked = ~visible.any(-1)
    assert fully_masked.sum() == 2 * 3 * 2 + 1 and (visible.sum(-1)[~fully_masked] < 7).all()
    if kind == "bool":
        mask = visible
    else:  # -inf where hidden, finite values where visible: the float-mask form of the same
        mask = torch.randn(2, 3, 5, 7).to(dtype).masked_fill(~visible, float("-inf"))

    inputs = [t.clone().requires_grad_() for t in (q, k, v)]
    reference = F.scaled_dot_product_attention(*inputs, attn_mask=mask)
    reference_grads = torch.autograd.grad(reference.float().pow(2).sum(), inputs)
    inputs = [t.clone().requires_grad_() for t in (q, k, v)]
    out, weights = A.attention(*inputs, mask=mask)
    grads = torch.autograd.grad(out.float().pow(2).sum(), inputs)

    assert (reference[fully_masked] == 0).all(), "PyTorch's own answer for a row that sees nothing"
    assert (out[fully_masked] == 0).all() and (weights[fully_masked] == 0).all()
    rtol, atol = TOLERANCE[dtype]
    torch.testing.assert_close(out, reference, rtol=rtol, atol=atol)
    sums = weights[~fully_masked].double().sum(-1)
    torch.testing.assert_close(sums, torch.ones_like(sums), rtol=rtol, atol=atol)
    assert (weights[~visible] == 0).all(), "hidden keys get no weight"
    for grad, reference_grad in zip(grads, reference_grads, strict=True):
        assert torch.isfinite(grad).all(), "no NaN in the backward pass either"
        torch.testing.assert_close(grad, reference_grad, rtol=10 * rtol, atol=10 * atol)


def test_a_sequence_of_padding_only_is_zero_in_both_backends():
    torch.manual_seed(2)
    config = A.AttentionConfig(n_embd=16, n_head=2, causal=True)
    fast = A.MultiHeadSelfAttention(config).eval()
    manual = A.MultiHeadSelfAttention(A.AttentionConfig(**{**vars(config), "attention": "manual"}))
    manual.load_state_dict(fast.state_dict())
    x = torch.randn(2, 6, 16)
    padding = A.padding_mask(torch.tensor([6, 0]), 6)  # the second sequence has no real token
    out = fast(x, mask=padding)
    torch.testing.assert_close(manual.eval()(x, mask=padding), out, rtol=1e-5, atol=1e-6)
    # No token to attend to: the attention output is 0, so the layer returns its output bias.
    torch.testing.assert_close(out[1], fast.proj.bias.expand(6, 16), rtol=0, atol=0)
    assert torch.isfinite(out).all()


def test_weights_are_the_softmax_of_scaled_dot_products():
    q, k, v = random_qkv(1, 1, 3, 4, 8, torch.float64)
    _, weights = A.attention(q, k, v)
    expected = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(8), dim=-1)
    torch.testing.assert_close(weights, expected)
    assert (weights >= 0).all()


def test_causal_and_padding_masks_hide_what_they_should():
    assert A.causal_mask(3).tolist() == [
        [True, False, False],
        [True, True, False],
        [True, True, True],
    ]
    q, k, v = random_qkv(2, 1, 4, 4, 8, torch.float64)
    _, weights = A.attention(q, k, v, is_causal=True)
    assert (weights[..., A.causal_mask(4).logical_not()] == 0).all()
    mask = A.padding_mask(torch.tensor([2, 4]), 4)
    assert mask.shape == (2, 1, 1, 4)
    _, weights = A.attention(q, k, v, mask=mask)
    assert (weights[0, ..., 2:] == 0).all() and (weights[1] > 0).all()


def test_split_and_merge_heads_are_inverses():
    x = torch.randn(2, 5, 12)
    heads = A.split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 4)
    torch.testing.assert_close(heads[:, 1], x[..., 4:8])
    torch.testing.assert_close(A.merge_heads(heads), x)
    with pytest.raises(ValueError, match="do not split"):
        A.split_heads(x, 5)


def test_multi_head_backends_agree_and_causality_holds():
    torch.manual_seed(0)
    layer = A.MultiHeadSelfAttention(A.AttentionConfig(n_embd=32, n_head=4, causal=True)).eval()
    x = torch.randn(2, 9, 32)
    fast = layer(x)
    manual, weights = layer(x, return_weights=True)  # lesson 04's attention: it has the weights
    torch.testing.assert_close(fast, manual, rtol=1e-5, atol=1e-5)
    assert weights.shape == (2, 4, 9, 9)
    changed = x.clone()
    changed[:, 6:] = torch.randn(2, 3, 32)  # change the future
    torch.testing.assert_close(layer(changed)[:, :6], fast[:, :6])  # the past does not see it
    padding = A.padding_mask(torch.tensor([9, 5]), 9)
    manual_layer = A.MultiHeadSelfAttention(
        A.AttentionConfig(n_embd=32, n_head=4, causal=True, attention="manual")
    ).eval()
    manual_layer.load_state_dict(layer.state_dict())
    torch.testing.assert_close(
        layer(x, mask=padding), manual_layer(x, mask=padding), rtol=1e-5, atol=1e-5
    )
    with pytest.raises(ValueError, match="attention"):
        A.AttentionConfig(attention="flash")


def test_self_attention_without_positions_is_permutation_equivariant():
    torch.manual_seed(1)
    layer = A.MultiHeadSelfAttention(A.AttentionConfig(n_embd=16, n_head=2)).eval()
    x = torch.randn(1, 6, 16)
    permutation = torch.tensor([3, 0, 5, 1, 4, 2])
    torch.testing.assert_close(
        layer(x[:, permutation]), layer(x)[:, permutation], rtol=1e-5, atol=1e-6
    )
    positions = A.sinusoidal_positions(6, 16)
    with_positions = layer(x[:, permutation] + positions)
    assert not torch.allclose(with_positions, layer(x + positions)[:, permutation], atol=1e-3)


def test_sinusoidal_positions():
    table = A.sinusoidal_positions(50, 8)
    assert table.shape == (50, 8)
    torch.testing.assert_close(table[:, 0], torch.arange(50.0).sin())
    torch.testing.assert_close(table[:, 1], torch.arange(50.0).cos())
    torch.testing.assert_close(table[0], torch.tensor([0.0, 1.0] * 4))
    with pytest.raises(ValueError, match="even"):
        A.sinusoidal_positions(4, 7)


def test_config_validation():
    with pytest.raises(ValueError, match="divisible"):
        A.AttentionConfig(n_embd=10, n_head=3)
