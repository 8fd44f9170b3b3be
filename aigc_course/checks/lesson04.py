"""Checks for lesson 04: scaled dot-product attention, the causal mask, splitting and merging heads."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from aigc_course import attention as reference
from aigc_course.checks._core import (
    Case,
    Draws,
    compare_tensor,
    draw_choice,
    draw_dtype,
    draw_int,
    draw_shape,
    randn,
    run_check,
)
from aigc_course.i18n import _


def _qkv(seed: int, shape: tuple[int, ...], t_k: int | None = None, d_v: int | None = None):
    """q ``(..., T_q, d_k)``, k ``(..., T_k, d_k)`` and v ``(..., T_k, d_v)``."""
    generator = torch.Generator().manual_seed(seed)
    *batch, t_q, d = shape
    t_k = t_q if t_k is None else t_k
    d_v = d if d_v is None else d_v
    return (
        torch.randn(*batch, t_q, d, generator=generator),
        torch.randn(*batch, t_k, d, generator=generator),
        torch.randn(*batch, t_k, d_v, generator=generator),
    )


def _attention_mistakes(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """What the classic wrong attentions return (their d_v differs from d_k on purpose)."""
    d_k, d_v = q.size(-1), v.size(-1)
    scores = q @ k.transpose(-2, -1)
    scaled = scores * d_k**-0.5

    def attend(
        scale: float, dim: int = -1, masked_with: float = float("-inf"), flip: bool = False
    ) -> torch.Tensor:
        logits = scores * scale
        if mask is not None:
            logits = logits.masked_fill(mask if flip else ~mask, masked_with)
        return torch.softmax(logits, dim=dim) @ v

    mistakes = {
        _(
            "scaled by sqrt(d_v): the scale is 1 / sqrt(d_k), with d_k = q.size(-1) (the size of "
            "the vectors in the dot product), not v.size(-1)"
        ): attend(d_v**-0.5),
        _("the scores are not scaled: divide q k^T by sqrt(d_k) before the softmax"): attend(1.0),
        _("divide by sqrt(d_k), not by d_k"): attend(1 / d_k),
        _("divide the scores by sqrt(d_k), do not multiply"): attend(d_k**0.5),
        _(
            "the softmax runs over the queries (dim=-2): each query's weights over the keys must "
            "sum to 1, so use dim=-1"
        ): attend(d_k**-0.5, dim=-2),
        _("the softmax is missing: weights = softmax(q k^T / sqrt(d_k)), then weights @ v"): scaled
        @ v,
    }
    if mask is not None:
        mistakes[
            _(
                "the mask is inverted: True means *may attend*, so fill the scores where ~mask "
                "(mask == False) with -inf"
            )
        ] = attend(d_k**-0.5, flip=True)
        mistakes[
            _("masked scores must be -inf (not 0) before the softmax, so that they get weight 0")
        ] = attend(d_k**-0.5, masked_with=0.0)
        weights = torch.softmax(scaled, dim=-1) * mask
        mistakes[
            _(
                "the mask goes on the scores *before* the softmax (masked_fill with -inf); "
                "zeroing weights after it leaves rows that do not sum to 1"
            )
        ] = weights @ v
    return mistakes


def scaled_dot_product_attention(
    function: Callable[..., torch.Tensor], *, strict: bool | None = None
) -> bool:
    """Check ``function(q, k, v, mask=None)``: softmax(q k^T / sqrt(d_k) + mask) v.

    Every case has d_v != d_k, so that scaling by the wrong size shows.

    Edge cases: a causal mask, d_v != d_k. Drawn: 0 to 2 batch axes, T_q != T_k, d_k 1 to 9, d_v
    1 to 5, no, causal and random masks (every query keeps a key), float32 and float64; values
    and gradients.
    """
    q, k, v = _qkv(0, (2, 4, 8), d_v=3)
    q2, k2, v2 = _qkv(1, (2, 3, 5, 16), t_k=7, d_v=4)
    causal = torch.ones(4, 4, dtype=torch.bool).tril()
    cases = [
        Case(
            _("a batch of 2, 4 tokens, d_k = 8, d_v = 3"),
            (q, k, v),
            F.scaled_dot_product_attention(q, k, v),
            hint=_(
                "scores = q @ k.transpose(-2, -1) / sqrt(d_k); weights = softmax over the last "
                "dimension (the keys); output = weights @ v"
            ),
            mistakes=_attention_mistakes(q, k, v),
        ),
        Case(
            _("heads and 5 queries against 7 keys, d_k = 16, d_v = 4"),
            (q2, k2, v2),
            F.scaled_dot_product_attention(q2, k2, v2),
            hint=_("use q.size(-1) for d_k, and transpose only the last two dimensions of k"),
            mistakes=_attention_mistakes(q2, k2, v2),
        ),
        Case(
            _("a causal boolean mask (True = may attend)"),
            (q, k, v),
            F.scaled_dot_product_attention(q, k, v, attn_mask=causal),
            kwargs={"mask": causal},
            hint=_("scores.masked_fill(~mask, float('-inf')) before the softmax"),
            mistakes=_attention_mistakes(q, k, v, causal),
        ),
    ]
    hint = _("softmax(q k^T / sqrt(d_k)) v; the softmax is over the keys (dim=-1)")
    return run_check("scaled_dot_product_attention", function, cases, hint, strict, ATTENTION)


def causal_mask(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(T)``: a ``(T, T)`` bool mask, True where query i may attend to key j <= i.

    Edge cases: T = 1. Drawn: T from 1 to 12.
    """

    def expect(length: int):
        def verdict(got) -> str | None:
            if isinstance(got, torch.Tensor) and got.dtype != torch.bool:
                return _("expected a bool tensor (True = may attend), got {dtype}").format(
                    dtype=got.dtype
                )
            return compare_tensor(got, reference.causal_mask(length), 0, 0)

        return verdict

    def mistakes(length: int) -> dict[str, torch.Tensor]:
        ones = torch.ones(length, length, dtype=torch.bool)
        return {
            _(
                "the mask is transposed: row i is the query, column j the key, and a query may see "
                "keys j <= i, on and *below* the diagonal (tril, not triu)"
            ): ones.triu(),
            _(
                "the diagonal is missing: a position may attend to itself (j <= i, so tril(), not "
                "tril(-1))"
            ): ones.tril(-1),
            _("the mask is inverted: True means *may attend* (j <= i), not *hidden*"): ~ones.tril(),
        }

    cases = [
        Case(
            _("T = 4"),
            (4,),
            expect(4),
            hint=_("True on and below the diagonal: torch.ones(T, T, dtype=torch.bool).tril()"),
            mistakes=mistakes(4),
        ),
        Case(_("T = 1"), (1,), expect(1), mistakes=mistakes(1)),
    ]
    hint = _("row i (a query) may see columns 0..i (keys up to its own position)")
    return run_check("causal_mask", function, cases, hint, strict, CAUSAL_MASK)


def split_heads(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(x, n_heads)``: ``(B, T, C) -> (B, H, T, C / H)``.

    Edge cases: one head. Drawn: 1 to 4 heads of 1 to 4 channels, batches and lengths, float32
    and float64; values and gradients.
    """
    x = torch.arange(2 * 3 * 8, dtype=torch.float32).reshape(2, 3, 8)
    batch, length, channels = x.shape
    heads, size = 4, 2
    mistakes = {
        _(
            "a reshape straight to (B, H, T, C/H) mixes up tokens and channels: view as "
            "(B, T, H, C/H) first, then transpose(1, 2)"
        ): x.reshape(batch, heads, length, size),
        _(
            "the transpose is missing: after the view to (B, T, H, C/H), swap the token and head "
            "axes with transpose(1, 2)"
        ): x.view(batch, length, heads, size),
        _(
            "the heads are interleaved: head h must get the *contiguous* channels "
            "h*C/H .. (h+1)*C/H, so view as (B, T, H, C/H), not (B, T, C/H, H)"
        ): x.view(batch, length, size, heads).permute(0, 3, 1, 2),
    }
    cases = [
        Case(
            _("x of shape (2, 3, 8) into 4 heads"),
            (x, 4),
            reference.split_heads(x, 4),
            hint=_(
                "view as (B, T, H, C/H), then transpose(1, 2): head h gets channels "
                "h*C/H .. (h+1)*C/H"
            ),
            mistakes=mistakes,
        ),
        Case(_("into 1 head"), (x, 1), reference.split_heads(x, 1)),
    ]
    # code, the same in every language: not translated
    hint = "x.view(B, T, n_heads, C // n_heads).transpose(1, 2)"
    return run_check("split_heads", function, cases, hint, strict, SPLIT_HEADS)


def merge_heads(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(x)``: ``(B, H, T, D) -> (B, T, H * D)``, the inverse of split_heads.

    Drawn: batch, heads, length and head size 1 to 4, float32 and float64; values and gradients.
    """
    x = torch.arange(2 * 4 * 3 * 2, dtype=torch.float32).reshape(2, 4, 3, 2)
    batch, heads, length, size = x.shape
    mistakes = {
        _(
            "the transpose is missing: a reshape of (B, H, T, D) straight to (B, T, H * D) mixes "
            "tokens of different heads; transpose(1, 2) first"
        ): x.reshape(batch, length, heads * size),
        _(
            "the channels are interleaved: each head's D channels must stay together, so "
            "transpose(1, 2) to (B, T, H, D) before the reshape (not permute(0, 2, 3, 1))"
        ): x.permute(0, 2, 3, 1).reshape(batch, length, heads * size),
        _("concatenate the heads (H * D channels), do not add them up"): x.sum(1),
        _("concatenate the heads (H * D channels), do not average them"): x.mean(1),
    }
    cases = [
        Case(
            _("x of shape (2, 4, 3, 2)"),
            (x,),
            reference.merge_heads(x),
            hint=_(
                "transpose(1, 2) first, so that the heads of one token sit next to each other, "
                "then reshape (a plain view would fail: the transpose is not contiguous)"
            ),
            mistakes=mistakes,
        ),
    ]
    # code, the same in every language: not translated
    hint = "x.transpose(1, 2).reshape(B, T, H * D)"
    return run_check("merge_heads", function, cases, hint, strict, MERGE_HEADS)


# --- inputs drawn per call: batch and head axes, lengths, d_k != d_v, masks, float32 and float64 ----


def _draw_attention(generator: torch.Generator) -> tuple[str, tuple, dict]:
    dtype, batch = draw_dtype(generator), draw_shape(generator, 0, 2, 1, 3)
    kind = draw_choice(generator, ("none", "causal", "random"))
    t_q, t_k = draw_int(generator, 1, 5), draw_int(generator, 1, 6)
    if kind == "causal":  # the last query sees every key, the first the keys before it and itself
        t_k = max(t_k, t_q)
    d_k, d_v = draw_int(generator, 1, 9), draw_int(generator, 1, 5)
    q = randn(generator, *batch, t_q, d_k, dtype=dtype)
    k = randn(generator, *batch, t_k, d_k, dtype=dtype)
    v = randn(generator, *batch, t_k, d_v, dtype=dtype)
    kwargs = {}
    if kind == "causal":
        kwargs["mask"] = torch.ones(t_q, t_k, dtype=torch.bool).tril(t_k - t_q)
    elif kind == "random":  # every query keeps at least one key, so no row is all -inf
        mask = torch.rand(t_q, t_k, generator=generator) < 0.6
        mask[torch.arange(t_q), torch.randint(0, t_k, (t_q,), generator=generator)] = True
        kwargs["mask"] = mask
    descriptions = {
        "none": _("q {q_shape}, k {k_shape}, v {v_shape}, mask: none, {dtype}"),
        "causal": _("q {q_shape}, k {k_shape}, v {v_shape}, mask: causal, {dtype}"),
        "random": _("q {q_shape}, k {k_shape}, v {v_shape}, mask: random, {dtype}"),
    }
    description = descriptions[kind].format(
        q_shape=tuple(q.shape), k_shape=tuple(k.shape), v_shape=tuple(v.shape), dtype=dtype
    )
    return description, (q, k, v), kwargs


def _attention_reference(q, k, v, mask=None) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _draw_length(generator: torch.Generator) -> tuple[str, tuple, dict]:
    length = draw_int(generator, 1, 12)
    return _("T = {length}").format(length=length), (length,), {}


def _draw_channels(generator: torch.Generator) -> tuple[str, tuple, dict]:
    dtype, heads, size = draw_dtype(generator), draw_int(generator, 1, 4), draw_int(generator, 1, 4)
    batch, length = draw_int(generator, 1, 3), draw_int(generator, 1, 5)
    x = randn(generator, batch, length, heads * size, dtype=dtype)
    description = _("x {shape} into {heads} heads, {dtype}").format(
        shape=tuple(x.shape), heads=heads, dtype=dtype
    )
    return description, (x, heads), {}


def _draw_heads(generator: torch.Generator) -> tuple[str, tuple, dict]:
    dtype, shape = draw_dtype(generator), draw_shape(generator, 4, 4, 1, 4)
    description = _("x {shape}, {dtype}").format(shape=shape, dtype=dtype)
    return description, (randn(generator, *shape, dtype=dtype),), {}


ATTENTION = Draws(
    _draw_attention, _attention_reference, gradients=True, mistakes=_attention_mistakes
)
CAUSAL_MASK = Draws(_draw_length, reference.causal_mask)
SPLIT_HEADS = Draws(_draw_channels, reference.split_heads, gradients=True)
MERGE_HEADS = Draws(_draw_heads, reference.merge_heads, gradients=True)
scaled_dot_product_attention.draws = ATTENTION
causal_mask.draws = CAUSAL_MASK
split_heads.draws = SPLIT_HEADS
merge_heads.draws = MERGE_HEADS
