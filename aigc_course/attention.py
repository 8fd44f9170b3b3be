"""Scaled dot-product attention and multi-head self-attention, from scratch.

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V

Q ``(..., T_q, d_k)`` asks, K ``(..., T_k, d_k)`` is matched against, V ``(..., T_k, d_v)`` is averaged:
row i of the softmax is a probability distribution over the keys, and output i is the V-average
under it. The softmax is not optional: without it the "weights" are unnormalised and can be
negative, and the output is no longer an average. Dividing by sqrt(d_k) keeps the logits' variance
near 1 whatever d_k is (for independent unit-variance entries, q . k has variance d_k), so the
softmax does not saturate and its gradients do not vanish.

Masks follow ``torch.nn.functional.scaled_dot_product_attention``: a boolean mask is True where a
query *may* attend to a key; a float mask is added to the logits. :func:`attention` computes what
that function computes, and :class:`MultiHeadSelfAttention` can use either (``attention`` in its
config), so lesson 04 can check one against the other and lesson 08 can train with the fast one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from aigc_course.i18n import _


def causal_mask(length: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``(T, T)`` bool, True on and below the diagonal: position i may attend to j <= i only."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


def padding_mask(lengths: torch.Tensor, length: int) -> torch.Tensor:
    """``(B, 1, 1, T)`` bool, True for real tokens: keys at positions >= lengths[b] are hidden.

    Broadcasts against attention logits of shape ``(B, H, T_q, T)``.
    """
    positions = torch.arange(length, device=lengths.device)
    return (positions[None, :] < lengths[:, None])[:, None, None, :]


def attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q K^T * scale + mask) V, with scale = 1 / sqrt(d_k) by default.

    Shapes: query ``(..., T_q, d_k)``, key ``(..., T_k, d_k)``, value ``(..., T_k, d_v)``; ``mask``
    broadcastable to ``(..., T_q, T_k)``, bool (True = attend) or float (added). Returns the output
    ``(..., T_q, d_v)`` and the attention weights ``(..., T_q, T_k)``: each row sums to one,
    except the row of a query whose keys are *all* masked.

    Such a query has nothing to attend to, and its softmax would be 0 / 0 = NaN. Its weights are
    all 0 instead, so its output is a zero vector (and its gradients are 0, not NaN): what
    ``torch.nn.functional.scaled_dot_product_attention`` returns for such a row since PyTorch 2.5
    (earlier versions gave NaN), so the two agree on every mask.
    """
    scale = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale
    logits = (query @ key.transpose(-2, -1)) * scale  # (..., T_q, T_k)
    if is_causal:  # aligned at the top left, as in PyTorch: query i sees keys 0..i
        keep = torch.ones(query.size(-2), key.size(-2), dtype=torch.bool, device=query.device)
        logits = logits.masked_fill(~keep.tril(), float("-inf"))
    if mask is not None:
        if mask.dtype == torch.bool:
            logits = logits.masked_fill(~mask, float("-inf"))
        else:
            logits = logits + mask
    # A row of -inf logits (every key masked) would give softmax 0 / 0 = NaN: give it weights 0.
    # (Its logits are set to 0 first, so that no NaN appears in the backward pass either.)
    sees_nothing = (logits == float("-inf")).all(dim=-1, keepdim=True)
    logits = logits.masked_fill(sees_nothing, 0.0)
    # The softmax runs in at least fp32: in bf16/fp16 its sum of exponentials loses precision.
    softmax_dtype = (
        torch.float32 if logits.dtype in (torch.float16, torch.bfloat16) else logits.dtype
    )
    weights = torch.softmax(logits, dim=-1, dtype=softmax_dtype).to(query.dtype)
    weights = weights.masked_fill(sees_nothing, 0.0)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ value, weights


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """``(B, T, C) -> (B, H, T, C / H)``: each head gets its own slice of the channels."""
    batch, length, channels = x.shape
    if channels % n_heads:
        raise ValueError(
            _("{channels} channels do not split into {heads} heads evenly").format(
                channels=channels, heads=n_heads
            )
        )
    return x.view(batch, length, n_heads, channels // n_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, T, D) -> (B, T, H * D)``: the inverse of :func:`split_heads`."""
    batch, heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * head_dim)


def sinusoidal_positions(length: int, dim: int, base: float = 10_000.0) -> torch.Tensor:
    """The Transformer's fixed position encodings, ``(T, C)``.

    PE[t, 2i] = sin(t / base^(2i / C)), PE[t, 2i + 1] = cos(t / base^(2i / C)): each pair of
    channels is a clock with its own frequency, from one turn per 2 pi positions to very slow.
    """
    if dim % 2:
        raise ValueError(
            _("sinusoidal positions need an even dimension, got {dim}").format(dim=dim)
        )
    positions = torch.arange(length, dtype=torch.float32)[:, None]
    frequencies = base ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    angles = positions * frequencies  # (T, C / 2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)


def _merge_causal(mask: torch.Tensor, length: int) -> torch.Tensor:
    causal = causal_mask(length, mask.device)
    if mask.dtype == torch.bool:
        return mask & causal
    return mask.masked_fill(~causal, float("-inf"))


@dataclass(frozen=True)
class AttentionConfig:
    """Sizes of a multi-head self-attention layer."""

    n_embd: int = 64  # C, the width of the tokens' vectors
    n_head: int = 4  # H heads of C / H channels each
    dropout: float = 0.0
    bias: bool = True
    causal: bool = False
    attention: Literal["sdpa", "manual"] = "sdpa"  # PyTorch's fused kernel, or :func:`attention`

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(
                _("n_embd={n_embd} must be divisible by n_head={n_head}").format(
                    n_embd=self.n_embd, n_head=self.n_head
                )
            )
        if self.attention not in ("sdpa", "manual"):
            raise ValueError(
                _("attention must be 'sdpa' or 'manual', got {attention}").format(
                    attention=repr(self.attention)
                )
            )


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention with one fused Q, K, V projection.

    x ``(B, T, C)`` -> one linear layer to ``(B, T, 3C)`` -> Q, K, V, each split into H heads of
    C / H channels -> attention per head -> heads merged back to ``(B, T, C)`` -> output projection.
    ``config.attention == "manual"`` runs :func:`attention`; ``"sdpa"`` runs
    ``torch.nn.functional.scaled_dot_product_attention`` (flash attention on suitable GPUs).
    ``return_weights=True`` always takes the manual path, the one that has the weights.
    The names (``n_embd``, ``n_head``, ``qkv``, ``proj``) are those of the GPT's attention
    (:class:`aigc_course.models.gpt.CausalSelfAttention`).
    """

    def __init__(self, config: AttentionConfig) -> None:
        super().__init__()
        self.config = config
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # fused Q, K, V
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        return_weights: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, C) -> (B, T, C)``; with ``return_weights`` also the ``(B, H, T, T)`` weights."""
        query, key, value = self.qkv(x).split(self.config.n_embd, dim=-1)
        query, key, value = (split_heads(t, self.config.n_head) for t in (query, key, value))
        dropout_p = self.config.dropout if self.training else 0.0
        if self.config.attention == "sdpa" and not return_weights:
            is_causal = self.config.causal
            if is_causal and mask is not None:  # PyTorch takes one or the other: merge them
                mask, is_causal = _merge_causal(mask, x.size(1)), False
            out = F.scaled_dot_product_attention(
                query, key, value, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal
            )
            weights = None
        else:
            out, weights = attention(
                query, key, value, mask=mask, is_causal=self.config.causal, dropout_p=dropout_p
            )
        out = self.dropout(self.proj(merge_heads(out)))
        return (out, weights) if return_weights else out


# --------------------------------------------------------------------------------------------
# Lesson 04's explorer
# --------------------------------------------------------------------------------------------


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
        raise ValueError(_("the sentence has no words"))
    generator = torch.Generator().manual_seed(seed)
    vocabulary = sorted(set(words))
    table = torch.randn(len(vocabulary), dim, generator=generator)
    x = table[torch.tensor([vocabulary.index(word) for word in words])]
    x = x + position_strength * sinusoidal_positions(len(words), dim) * dim**0.5 / 2
    scale = None if scaled else 1.0
    _output, weights = attention(x[None], x[None], x[None], is_causal=causal, scale=scale)
    return words, weights[0]
