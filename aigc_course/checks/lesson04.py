"""Checks for lesson 04: scaled dot-product attention, the causal mask, splitting and merging heads."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from aigc_course.checks._core import Case, compare_tensor, run_check
from aigc_course.nn import attention as reference


def _qkv(seed: int, shape: tuple[int, ...], t_k: int | None = None):
    generator = torch.Generator().manual_seed(seed)
    *batch, t_q, d = shape
    t_k = t_q if t_k is None else t_k
    return (
        torch.randn(*batch, t_q, d, generator=generator),
        torch.randn(*batch, t_k, d, generator=generator),
        torch.randn(*batch, t_k, d, generator=generator),
    )


def scaled_dot_product_attention(
    function: Callable[..., torch.Tensor], *, strict: bool | None = None
) -> bool:
    """Check ``function(q, k, v, mask=None)``: softmax(q k^T / sqrt(d_k) + mask) v."""
    q, k, v = _qkv(0, (2, 4, 8))
    q2, k2, v2 = _qkv(1, (2, 3, 5, 16), t_k=7)
    causal = torch.ones(4, 4, dtype=torch.bool).tril()
    cases = [
        Case(
            "a batch of 2, 4 tokens, d_k = 8",
            (q, k, v),
            F.scaled_dot_product_attention(q, k, v),
            hint="scores = q @ k.transpose(-2, -1) / sqrt(d_k); weights = softmax over the last "
            "dimension (the keys); output = weights @ v",
        ),
        Case(
            "heads and 5 queries against 7 keys, d_k = 16",
            (q2, k2, v2),
            F.scaled_dot_product_attention(q2, k2, v2),
            hint="use q.size(-1) for d_k, and transpose only the last two dimensions of k",
        ),
        Case(
            "a causal boolean mask (True = may attend)",
            (q, k, v),
            F.scaled_dot_product_attention(q, k, v, attn_mask=causal),
            kwargs={"mask": causal},
            hint="scores.masked_fill(~mask, float('-inf')) before the softmax",
        ),
    ]
    hint = "softmax(q k^T / sqrt(d_k)) v; the softmax is over the keys (dim=-1)"
    return run_check("scaled_dot_product_attention", function, cases, hint, strict)


def causal_mask(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(T)``: a ``(T, T)`` bool mask, True where query i may attend to key j <= i."""

    def expect(length: int):
        def verdict(got) -> str | None:
            if isinstance(got, torch.Tensor) and got.dtype != torch.bool:
                return f"expected a bool tensor (True = may attend), got {got.dtype}"
            return compare_tensor(got, reference.causal_mask(length), 0, 0)

        return verdict

    cases = [
        Case(
            "T = 4",
            (4,),
            expect(4),
            hint="True on and below the diagonal: torch.ones(T, T, dtype=torch.bool).tril()",
        ),
        Case("T = 1", (1,), expect(1)),
    ]
    hint = "row i (a query) may see columns 0..i (keys up to its own position)"
    return run_check("causal_mask", function, cases, hint, strict)


def split_heads(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(x, n_heads)``: ``(B, T, C) -> (B, H, T, C / H)``."""
    x = torch.arange(2 * 3 * 8, dtype=torch.float32).reshape(2, 3, 8)
    cases = [
        Case(
            "x of shape (2, 3, 8) into 4 heads",
            (x, 4),
            reference.split_heads(x, 4),
            hint="view as (B, T, H, C/H), then transpose(1, 2): head h gets channels h*C/H .. (h+1)*C/H",
        ),
        Case("into 1 head", (x, 1), reference.split_heads(x, 1)),
    ]
    hint = "x.view(B, T, n_heads, C // n_heads).transpose(1, 2)"
    return run_check("split_heads", function, cases, hint, strict)


def merge_heads(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(x)``: ``(B, H, T, D) -> (B, T, H * D)``, the inverse of split_heads."""
    x = torch.arange(2 * 4 * 3 * 2, dtype=torch.float32).reshape(2, 4, 3, 2)
    cases = [
        Case(
            "x of shape (2, 4, 3, 2)",
            (x,),
            reference.merge_heads(x),
            hint="transpose(1, 2) first, so that the heads of one token sit next to each other, "
            "then reshape (a plain view would fail: the transpose is not contiguous)",
        ),
    ]
    hint = "x.transpose(1, 2).reshape(B, T, H * D)"
    return run_check("merge_heads", function, cases, hint, strict)
