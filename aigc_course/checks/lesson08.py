"""Checks for lesson 08: causal self-attention, the residual block, the training step,
top-k / top-p filtering, and the KV-cache update."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from aigc_course.checks._core import Case, compare_tensor, run_check
from aigc_course.models.gpt import GPT, Block, CausalSelfAttention, GPTConfig, filter_logits

_CONFIG = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.0)


def causal_self_attention(
    make_layer: Callable[[int, int], nn.Module], *, strict: bool | None = None
) -> bool:
    """Check ``make_layer(n_embd, n_head)``: a module with ``qkv`` (C -> 3C) and ``proj`` (C -> C)
    linear layers whose forward ``(B, T, C) -> (B, T, C)`` is causal multi-head self-attention."""
    torch.manual_seed(0)
    reference = CausalSelfAttention(_CONFIG, layer=0).eval()
    x = torch.randn(2, 8, 16, generator=torch.Generator().manual_seed(1))
    expected = reference(x)

    def verdict(layer) -> str | None:
        missing = [
            name
            for name in ("qkv", "proj")
            if not isinstance(getattr(layer, name, None), nn.Linear)
        ]
        if missing:
            return (
                f"the layer needs nn.Linear attributes named {missing} (qkv: C -> 3C, proj: C -> C)"
            )
        layer.load_state_dict(reference.state_dict(), strict=False)
        layer.eval()
        with torch.no_grad():
            got = layer(x)
        problem = compare_tensor(got, expected.detach(), 1e-4, 1e-5)
        if problem and isinstance(got, torch.Tensor) and got.shape == expected.shape:
            changed = x.clone()
            changed[:, 5:] += 1.0
            with torch.no_grad():
                if not torch.allclose(layer(changed)[:, :5], got[:, :5], atol=1e-5):
                    return "position t sees later positions: the attention is not causal"
        return problem

    cases = [Case("n_embd = 16, n_head = 2, a batch (2, 8, 16)", (16, 2), verdict)]
    hint = (
        "q, k, v = qkv(x).split(C, dim=2); split heads to (B, H, T, C/H); "
        "F.scaled_dot_product_attention(q, k, v, is_causal=True); merge heads; proj"
    )
    return run_check("causal_self_attention", make_layer, cases, hint, strict)


def residual_block(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(x, block)``: pre-LN residual block using ``block.ln_1, attn, ln_2, mlp``."""
    torch.manual_seed(2)
    block = Block(_CONFIG, layer=0).eval()
    x = torch.randn(2, 8, 16, generator=torch.Generator().manual_seed(3))
    cases = [
        Case(
            "a block of n_embd 16",
            (x, block),
            block(x).detach(),
            hint="pre-LN: normalise *before* each sub-layer, and add the sub-layer's output to x "
            "(x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)))",
            rtol=1e-4,
            atol=1e-5,
        )
    ]
    hint = "x = x + block.attn(block.ln_1(x)); then x = x + block.mlp(block.ln_2(x))"
    return run_check("residual_block", function, cases, hint, strict)


def training_step(function: Callable[..., float], *, strict: bool | None = None) -> bool:
    """Check ``function(model, optimizer, x, y, max_norm)``: one step of next-token training."""

    def fresh():
        torch.manual_seed(4)
        model = GPT(_CONFIG)
        return model, torch.optim.AdamW(model.parameters(), lr=1e-2)

    generator = torch.Generator().manual_seed(5)
    x = torch.randint(0, 11, (4, 8), generator=generator)
    y = torch.randint(0, 11, (4, 8), generator=generator)
    reference, reference_optimizer = fresh()
    reference_optimizer.zero_grad()
    _, expected_loss = reference(x, y)
    expected_loss.backward()
    nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
    reference_optimizer.step()

    def run(_):
        model, optimizer = fresh()
        loss = function(model, optimizer, x, y, 0.5)
        return model, loss

    def verdict(result) -> str | None:
        model, loss = result
        value = loss.item() if isinstance(loss, torch.Tensor) else loss
        if not isinstance(value, float) or abs(value - expected_loss.item()) > 1e-5:
            return f"return the loss before the update as a float: expected {expected_loss.item():.5f}, got {value!r}"
        for (name, got), expected in zip(
            model.named_parameters(), reference.parameters(), strict=True
        ):
            if not torch.allclose(got, expected, atol=1e-6):
                return f"after the step, {name} differs from a correct step (zero_grad, backward, clip, step)"
        return None

    cases = [Case("one AdamW step on a tiny GPT, clipping at 0.5", (None,), verdict)]
    hint = "optimizer.zero_grad(); _, loss = model(x, y); loss.backward(); clip_grad_norm_(..., max_norm); optimizer.step()"
    return run_check("training_step", run, cases, hint, strict)


def top_k_top_p(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(logits, top_k, top_p)``: -inf outside the top-k and outside the nucleus."""
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0], [0.0, 3.0, 0.1, 2.9, -2.0, 1.0]])

    def same(expected: torch.Tensor):
        def verdict(got) -> str | None:
            if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
                return compare_tensor(got, expected, 0, 0)
            kept, expected_kept = torch.isfinite(got), torch.isfinite(expected)
            if not torch.equal(kept, expected_kept):
                return (
                    f"wrong tokens kept\n   expected kept: {expected_kept.int().tolist()}\n"
                    f"   got kept:      {kept.int().tolist()}"
                )
            if (got[~kept] != float("-inf")).any():
                return "removed tokens must be -inf (NaN or +inf break the softmax)"
            return compare_tensor(got[kept], expected[expected_kept], 1e-6, 1e-6)

        return verdict

    nucleus_hint = (
        "sort descending; keep tokens while the probability mass *before* them is < p "
        "(so the most likely token is always kept); map back to the original order"
    )
    cases = [
        Case("top_k = 2", (logits, 2, None), same(filter_logits(logits, top_k=2))),
        Case(
            "top_p = 0.8", (logits, None, 0.8), same(filter_logits(logits, top_p=0.8)), nucleus_hint
        ),
        Case(
            "top_k = 3 and top_p = 0.5",
            (logits, 3, 0.5),
            same(filter_logits(logits, top_k=3, top_p=0.5)),
        ),
        Case("neither (no change)", (logits, None, None), same(logits.clone())),
    ]
    hint = "use float('-inf') for removed tokens, so that softmax gives them probability 0"
    return run_check("top_k_top_p", function, cases, hint, strict)


def kv_cache_update(function: Callable[..., tuple], *, strict: bool | None = None) -> bool:
    """Check ``function(cached_k, cached_v, k, v)``: append the new keys/values along the time axis."""
    generator = torch.Generator().manual_seed(6)
    k1, v1 = (
        torch.randn(1, 2, 3, 4, generator=generator),
        torch.randn(1, 2, 3, 4, generator=generator),
    )
    k2, v2 = (
        torch.randn(1, 2, 1, 4, generator=generator),
        torch.randn(1, 2, 1, 4, generator=generator),
    )

    def expect(keys, values):
        def verdict(got) -> str | None:
            if not isinstance(got, tuple) or len(got) != 2:
                return "return a tuple (all_keys, all_values)"
            return compare_tensor(got[0], keys, 0, 0) or compare_tensor(got[1], values, 0, 0)

        return verdict

    cases = [
        Case(
            "an empty cache (None) and a prompt of 3 positions",
            (None, None, k1, v1),
            expect(k1, v1),
        ),
        Case(
            "3 cached positions and 1 new one",
            (k1, v1, k2, v2),
            expect(torch.cat([k1, k2], 2), torch.cat([v1, v2], 2)),
            hint="the time axis of (B, H, T, D) is dim=2: torch.cat([cached, new], dim=2)",
        ),
    ]
    hint = "with no cache yet return the new keys and values; otherwise concatenate along time"
    return run_check("kv_cache_update", function, cases, hint, strict)
