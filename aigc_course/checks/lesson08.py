"""Checks for lesson 08: causal self-attention, the residual block, the training step,
top-k / top-p filtering, and the KV-cache update."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from aigc_course.checks._core import (
    Case,
    Draws,
    as_number,
    compare_tensor,
    draw_choice,
    draw_dtype,
    draw_int,
    module_gradient_problem,
    randn,
    recognise_mistake,
    run_check,
)
from aigc_course.i18n import _
from aigc_course.models.gpt import GPT, Block, CausalSelfAttention, GPTConfig, filter_logits

_CONFIG = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.0)


@torch.no_grad()
def _attention_mistakes(
    reference: CausalSelfAttention, x: torch.Tensor, heads: int
) -> dict[str, Any]:
    """What the classic wrong causal self-attentions return, with the reference's weights."""
    batch, length, channels = x.shape
    size = channels // heads
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    q, k, v = reference.qkv(x).split(channels, dim=2)

    def attend(q, k, v, scale: float) -> torch.Tensor:
        scores = (q @ k.transpose(-2, -1) * scale).masked_fill(~causal, float("-inf"))
        return torch.softmax(scores, dim=-1) @ v

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.view(batch, length, heads, size).transpose(1, 2)

    def merge(y: torch.Tensor) -> torch.Tensor:
        return y.transpose(1, 2).reshape(batch, length, channels)

    def scrambled(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(batch, heads, length, size)

    y = attend(split(q), split(k), split(v), size**-0.5)
    return {
        _(
            "scale the scores by 1 / sqrt(C / n_head), the size of one head's vectors, not by "
            "1 / sqrt(n_embd)"
        ): reference.proj(merge(attend(split(q), split(k), split(v), channels**-0.5))),
        _(
            "the scores are not scaled: divide q k^T by sqrt(C / n_head) (or use "
            "F.scaled_dot_product_attention)"
        ): reference.proj(merge(attend(split(q), split(k), split(v), 1.0))),
        _(
            "the heads are not split: one attention over all C channels is single-head; split "
            "q, k and v into n_head heads of C / n_head channels, (B, T, C) -> (B, H, T, C/H)"
        ): [reference.proj(attend(q, k, v, scale)) for scale in (channels**-0.5, size**-0.5)],
        _(
            "split the heads with view(B, T, H, C/H).transpose(1, 2): a reshape straight to "
            "(B, H, T, C/H) mixes up tokens and channels"
        ): reference.proj(merge(attend(scrambled(q), scrambled(k), scrambled(v), size**-0.5))),
        _(
            "merge the heads with transpose(1, 2) before the reshape to (B, T, C): (B, H, T, D) "
            "reshaped directly mixes tokens of different heads"
        ): reference.proj(y.reshape(batch, length, channels)),
        _("the output projection is missing: return proj(merged heads)"): merge(y),
    }


def _attention_verdict(
    n_embd: int, n_head: int, batch: int, length: int, seed: int
) -> Callable[[Any], str | None]:
    """The verdict on a learner's layer built with (n_embd, n_head): the package's weights are
    loaded into it; its output, and its gradients with respect to the input and to the qkv and
    proj weights, must equal the package's on a drawn batch."""
    config = GPTConfig(
        vocab_size=11, block_size=max(length, 1), n_layer=1, n_head=n_head, n_embd=n_embd
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        reference = CausalSelfAttention(config, layer=0).eval()
    x = torch.randn(batch, length, n_embd, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        expected = reference(x)
    mistakes = _attention_mistakes(reference, x, n_head)

    def verdict(layer) -> str | None:
        missing = [
            name
            for name in ("qkv", "proj")
            if not isinstance(getattr(layer, name, None), nn.Linear)
        ]
        if missing:
            return _(
                "the layer needs nn.Linear attributes named {missing} (qkv: C -> 3C, proj: C -> C)"
            ).format(missing=missing)
        layer.load_state_dict(reference.state_dict(), strict=False)
        layer.eval()
        with torch.no_grad():
            got = layer(x)
        problem = compare_tensor(got, expected)
        if problem and isinstance(got, torch.Tensor) and got.shape == expected.shape:
            mistake = recognise_mistake(got, mistakes, 1e-4, 1e-5)
            if mistake is not None:
                return mistake
            changed = x.clone()
            changed[:, length // 2 + 1 :] += 1.0
            with torch.no_grad():
                early = slice(0, length // 2 + 1)
                if not torch.allclose(layer(changed)[:, early], got[:, early], atol=1e-5):
                    return _(
                        "position t sees later positions: the attention is not causal (pass "
                        "is_causal=True, or mask the scores above the diagonal with -inf)"
                    )
        return problem or module_gradient_problem(layer, reference, x, ("qkv", "proj"))

    return verdict


def causal_self_attention(
    make_layer: Callable[[int, int], nn.Module], *, strict: bool | None = None
) -> bool:
    """Check ``make_layer(n_embd, n_head)``: a module with ``qkv`` (C -> 3C) and ``proj`` (C -> C)
    linear layers whose forward ``(B, T, C) -> (B, T, C)`` is causal multi-head self-attention.

    Cases: head counts 1 to 4, head sizes 1 to 8, batches of 1 to 3, lengths 1 to 8 (T = 1 is
    an edge case: a token sees only itself); values, then gradients with respect to the input
    and to the weights."""
    shapes = [(16, 2, 2, 8), (12, 3, 1, 5), (8, 1, 3, 1), (8, 4, 2, 7), (6, 2, 1, 3)]
    cases = [
        Case(
            _("n_embd = {n_embd}, n_head = {n_head}, a batch ({batch}, {length}, {n_embd})").format(
                n_embd=c, n_head=h, batch=b, length=t
            ),
            (c, h),
            _attention_verdict(c, h, b, t, seed=index),
        )
        for index, (c, h, b, t) in enumerate(shapes)
    ]
    hint = _(
        "q, k, v = qkv(x).split(C, dim=2); split heads to (B, H, T, C/H); "
        "F.scaled_dot_product_attention(q, k, v, is_causal=True); merge heads; proj"
    )
    return run_check("causal_self_attention", make_layer, cases, hint, strict)


@torch.no_grad()
def _residual_mistakes(x: torch.Tensor, block: Block) -> dict[str, torch.Tensor]:
    """What the classic wrong residual blocks return on ``x``."""
    attn, mlp, ln_1, ln_2 = block.attn, block.mlp, block.ln_1, block.ln_2

    def post_ln(x: torch.Tensor) -> torch.Tensor:
        x = ln_1(x + attn(x))
        return ln_2(x + mlp(x))

    def normalised_stream(x: torch.Tensor) -> torch.Tensor:
        x = ln_1(x)
        x = x + attn(x)
        x = ln_2(x)
        return x + mlp(x)

    def swapped_norms(x: torch.Tensor) -> torch.Tensor:
        x = x + attn(ln_2(x))
        return x + mlp(ln_1(x))

    return {
        _(
            "that is post-LN (normalising after the residual sum): this block is pre-LN, "
            "x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))"
        ): post_ln(x),
        _(
            "the residual connections are missing: *add* each sub-layer's output to x, "
            "x = x + attn(ln_1(x))"
        ): mlp(ln_2(attn(ln_1(x)))),
        _(
            "only the sub-layer's input is normalised, not the residual stream: "
            "x = x + attn(ln_1(x)), keeping x itself unnormalised"
        ): normalised_stream(x),
        _(
            "the two sub-layers run one after the other: the MLP reads x after the attention "
            "was added, x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))"
        ): x + attn(ln_1(x)) + mlp(ln_2(x)),
        _("the layer norms are swapped: ln_1 goes before attn, ln_2 before mlp"): swapped_norms(x),
        _("the MLP sub-layer is missing: x = x + mlp(ln_2(x)) after the attention"): x
        + attn(ln_1(x)),
    }


def residual_block(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(x, block)``: pre-LN residual block using ``block.ln_1, attn, ln_2, mlp``.

    Drawn: blocks of 1 to 3 heads of size 1 to 6 with distinct layer norms, batches of 1 to 3,
    lengths 1 to 6; values and the gradient with respect to x.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        block = Block(_CONFIG, layer=0).eval()
    # Distinct layer norms (a fresh one is the identity map's scale 1, shift 0 in both), so that
    # swapping ln_1 and ln_2 shows.
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for norm in (block.ln_1, block.ln_2):
            norm.weight.copy_(1 + 0.5 * torch.randn(norm.weight.shape, generator=generator))
            norm.bias.copy_(0.5 * torch.randn(norm.bias.shape, generator=generator))
    x = torch.randn(2, 8, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = block(x)
    cases = [
        Case(
            _("a block of n_embd 16"),
            (x, block),
            expected,
            hint=_(
                "pre-LN: normalise *before* each sub-layer, and add the sub-layer's output to x "
                "(x = x + attn(ln_1(x)); x = x + mlp(ln_2(x)))"
            ),
            mistakes=_residual_mistakes(x, block),
        )
    ]
    hint = _("x = x + block.attn(block.ln_1(x)); then x = x + block.mlp(block.ln_2(x))")
    return run_check("residual_block", function, cases, hint, strict, RESIDUAL_BLOCK)


_MAX_NORM = 0.25  # the fresh model's gradient norm is about 1.7, its largest entry about 0.48


def _reference_training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    max_norm: float,
    clip: str = "norm",
) -> float:
    """The step the exercise asks for; ``clip`` = "none" or "value" give two classic mistakes."""
    optimizer.zero_grad()
    loss = model(x, y)[1]
    loss.backward()
    if clip == "norm":
        nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    elif clip == "value":
        nn.utils.clip_grad_value_(model.parameters(), max_norm)
    optimizer.step()
    return loss.item()


def _two_training_steps(
    step: Callable[..., Any], batch: int = 4, length: int = 8, max_norm: float = _MAX_NORM
) -> tuple[list, list[list[torch.Tensor]]]:
    """Two steps of ``step`` with plain SGD on a fresh tiny GPT: the results, and the parameters
    before and after each step. (SGD's update shows every change in the gradient, clipping
    included; Adam's first step would hide a missing clip.)"""
    with torch.random.fork_rng(devices=[]):  # the same model every time, RNG untouched
        torch.manual_seed(4)
        model = GPT(_CONFIG)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(5)
    snapshots = [[p.detach().clone() for p in model.parameters()]]
    results = []
    for _step in range(2):
        x = torch.randint(0, _CONFIG.vocab_size, (batch, length), generator=generator)
        y = torch.randint(0, _CONFIG.vocab_size, (batch, length), generator=generator)
        results.append(step(model, optimizer, x, y, max_norm))
        snapshots.append([p.detach().clone() for p in model.parameters()])
    return results, snapshots


#: The classic clipping mistakes, as ``clip`` arguments of :func:`_reference_training_step`.
_CLIP_MISTAKES = ("none", "value")


def _clip_mistake(clip: str) -> str:
    """What the clipping mistake ``clip`` is and how to fix it (in the current language)."""
    if clip == "none":
        return _(
            "the gradients were not clipped before the step: call "
            "nn.utils.clip_grad_norm_(model.parameters(), max_norm) after loss.backward() and "
            "before optimizer.step()"
        )
    return _(
        "clip the gradients' global norm with nn.utils.clip_grad_norm_, not each value "
        "(clip_grad_value_)"
    )


@functools.cache
def _training_reference(
    batch: int, length: int, max_norm: float
) -> tuple[list, list, dict[str, list[torch.Tensor]]]:
    """Two correct steps, and the parameters after one step of each clipping mistake (computed
    once: they are the same for every learner)."""
    losses, snapshots = _two_training_steps(_reference_training_step, batch, length, max_norm)
    after_mistake = {
        clip: _two_training_steps(
            functools.partial(_reference_training_step, clip=clip), batch, length, max_norm
        )[1][1]
        for clip in _CLIP_MISTAKES
    }
    return losses, snapshots, after_mistake


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.allclose(p, q, atol=1e-6) for p, q in zip(a, b, strict=True))


def training_step(function: Callable[..., float], *, strict: bool | None = None) -> bool:
    """Check ``function(model, optimizer, x, y, max_norm)``: one step of next-token training.

    The check runs *two* steps: a step that forgets ``zero_grad()`` adds the first step's
    gradients into the second's.

    Cases: two SGD steps on a fresh tiny GPT (the second exposes a missing zero_grad), for batches
    (4, 8) and (2, 5), clipping at 0.25 and 1.0 (both bite); the loss as any number type.
    """

    def run(setting: tuple[int, int, float]):
        return _two_training_steps(function, *setting)

    def verdict_for(setting: tuple[int, int, float]) -> Callable[[Any], str | None]:
        return lambda result: _training_problem(result, setting)

    settings = [(4, 8, _MAX_NORM), (2, 5, 1.0)]
    cases = [
        Case(
            _(
                "two SGD steps on a tiny GPT, batches ({batch}, {length}), clipping at {max_norm}"
            ).format(batch=b, length=t, max_norm=m),
            ((b, t, m),),
            verdict_for((b, t, m)),
        )
        for b, t, m in settings
    ]
    hint = _(
        "optimizer.zero_grad(); _, loss = model(x, y); loss.backward(); "
        "clip_grad_norm_(..., max_norm); optimizer.step()"
    )
    return run_check("training_step", run if callable(function) else function, cases, hint, strict)


def _training_problem(result, setting: tuple[int, int, float]) -> str | None:
    """What differs from two correct steps with ``setting`` = (batch, length, max_norm)."""
    expected_losses, expected, after_mistake = _training_reference(*setting)
    losses, snapshots = result
    for step, (loss, expected_loss) in enumerate(zip(losses, expected_losses, strict=True)):
        value = as_number(loss)
        if value is None or abs(value - expected_loss) > 1e-5:
            return _(
                "return the loss before the update as a float (step {step}): expected "
                "{expected}, got {got}"
            ).format(step=step + 1, expected=f"{expected_loss:.5f}", got=repr(value))
        if _same(snapshots[step + 1], expected[step + 1]):
            continue
        if step == 1:
            return _(
                "the first step is right, but the second is not: the first step's gradients "
                "were added into the second's (backward *adds* to .grad). Call "
                "optimizer.zero_grad() before loss.backward()"
            )
        if _same(snapshots[1], snapshots[0]):
            return _(
                "the parameters did not change: call optimizer.step() after loss.backward() "
                "(and optimizer.zero_grad() before the backward, not between backward and "
                "step)"
            )
        for clip, parameters in after_mistake.items():
            if _same(snapshots[1], parameters):
                return _clip_mistake(clip)
        return _(
            "after one step the parameters differ from a correct step: in this order, "
            "optimizer.zero_grad(), loss.backward(), clip_grad_norm_(model.parameters(), "
            "max_norm), optimizer.step()"
        )
    return None


def _keep_top_k(logits: torch.Tensor, k: int, *, per_row: bool = True, strict_k: bool = False):
    values = torch.topk(logits, k, dim=-1).values
    kth = values[:, -1:] if per_row else values.min()
    return logits.masked_fill(logits <= kth if strict_k else logits < kth, float("-inf"))


def _keep_top_p(logits: torch.Tensor, p: float, *, shifted: bool = True, unsort: bool = True):
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    probabilities = torch.softmax(sorted_logits, dim=-1)
    mass = probabilities.cumsum(dim=-1) - (probabilities if shifted else 0)
    remove = mass >= p if shifted else mass > p
    if unsort:
        remove = remove.scatter(-1, order, remove)
    return logits.masked_fill(remove, float("-inf"))


def _filter_mistakes(logits: torch.Tensor, top_k: int | None, top_p: float | None):
    def apply(k_options: dict, p_options: dict) -> torch.Tensor:
        result = logits if top_k is None else _keep_top_k(logits, top_k, **k_options)
        return result if top_p is None else _keep_top_p(result, top_p, **p_options)

    mistakes = {}
    if top_k is not None:
        mistakes[
            _(
                "top-k must be per row: take the k-th largest logit of each row "
                "(torch.topk(logits, k, dim=-1).values[:, -1:]), not one threshold for the batch"
            )
        ] = apply({"per_row": False}, {})
        mistakes[
            _(
                "keep exactly k tokens per row: remove the logits *below* the k-th largest "
                "(logits < kth), not those equal to it"
            )
        ] = apply({"strict_k": True}, {})
    if top_p is not None:
        mistakes[
            _(
                "the nucleus must include the token that crosses p: keep tokens while the "
                "probability mass *before* them is < p (so the most likely token is always kept)"
            )
        ] = apply({}, {"shifted": False})
        mistakes[
            _(
                "map the nucleus back to the original order: the removal mask is computed on the "
                "sorted logits, so scatter it back with the sort's indices"
            )
        ] = apply({}, {"unsort": False})
    return mistakes


def top_k_top_p(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(logits, top_k, top_p)``: -inf outside the top-k and outside the nucleus.

    Edge cases: a mass before a token exactly equal to p, neither filter, ties at the k-th logit
    (all kept). Drawn: batch and vocabulary sizes, every k, several p, both filters together (the
    nucleus of the top-k, so the order of the two matters), logits up to 40."""
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0], [0.0, 3.0, 0.1, 2.9, -2.0, 1.0]])
    boundary = torch.tensor([[0.5, 0.25, 0.125, 0.125]]).log()  # exact in binary floating point

    def same(expected: torch.Tensor):
        def verdict(got) -> str | None:
            if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
                return compare_tensor(got, expected, 0, 0)
            kept, expected_kept = torch.isfinite(got), torch.isfinite(expected)
            if (
                torch.equal(got[expected_kept], expected[expected_kept])
                and (got[~expected_kept] != float("-inf")).any()
            ):
                return _("removed tokens must be -inf (0, NaN or +inf break the softmax)")
            if not torch.equal(kept, expected_kept):
                return (
                    _("wrong tokens kept")
                    + "\n   "
                    + _("expected kept: {kept}").format(kept=expected_kept.int().tolist())
                    + "\n   "
                    + _("got kept:      {kept}").format(kept=kept.int().tolist())
                )
            if (got[~kept] != float("-inf")).any():
                return _("removed tokens must be -inf (0, NaN or +inf break the softmax)")
            return compare_tensor(got[kept], expected[expected_kept], 1e-6, 1e-6)

        return verdict

    nucleus_hint = _(
        "sort descending; keep tokens while the probability mass *before* them is < p "
        "(so the most likely token is always kept); map back to the original order"
    )
    cases = [
        Case(
            _("top_k = 2"),
            (logits, 2, None),
            same(filter_logits(logits, top_k=2)),
            mistakes=_filter_mistakes(logits, 2, None),
        ),
        Case(
            _("top_p = 0.8"),
            (logits, None, 0.8),
            same(filter_logits(logits, top_p=0.8)),
            nucleus_hint,
            mistakes=_filter_mistakes(logits, None, 0.8),
        ),
        Case(
            _("top_k = 3 and top_p = 0.5"),
            (logits, 3, 0.5),
            same(filter_logits(logits, top_k=3, top_p=0.5)),
            mistakes=_filter_mistakes(logits, 3, 0.5),
        ),
        Case(
            _(
                "probabilities [1/2, 1/4, 1/8, 1/8] and top_p = 0.75, exactly the mass of the "
                "first two (edge case: the third token's mass before it is exactly p, so it is "
                "removed)"
            ),
            (boundary, None, 0.75),
            same(filter_logits(boundary, top_p=0.75)),
            nucleus_hint,
            mistakes=_filter_mistakes(boundary, None, 0.75),
        ),
        Case(_("neither (no change)"), (logits, None, None), same(logits.clone())),
    ]
    hint = _("use float('-inf') for removed tokens, so that softmax gives them probability 0")
    return run_check("top_k_top_p", function, cases, hint, strict, TOP_K_TOP_P)


def kv_cache_update(function: Callable[..., tuple], *, strict: bool | None = None) -> bool:
    """Check ``function(cached_k, cached_v, k, v)``: append the new keys/values along the time axis.

    Edge cases: an empty cache. Drawn: empty and filled caches of 1 to 5 positions, 1 to 3 new
    ones, batch, heads and head size 1 to 3, float32 and float64; values and gradients.
    """
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
                return _("return a tuple (all_keys, all_values)")
            return compare_tensor(got[0], keys, 0, 0) or compare_tensor(got[1], values, 0, 0)

        return verdict

    mistakes = {
        _(
            "append the new positions *after* the cached ones: torch.cat([cached, new], dim=2) "
            "keeps the positions in time order"
        ): (torch.cat([k2, k1], 2), torch.cat([v2, v1], 2)),
        _(
            "keep the cache: return the cached keys and values followed by the new ones, not "
            "only the new ones"
        ): (k2, v2),
        _("the order of the result: return (keys, values), the keys first"): (
            torch.cat([v1, v2], 2),
            torch.cat([k1, k2], 2),
        ),
    }

    cases = [
        Case(
            _("an empty cache (None) and a prompt of 3 positions"),
            (None, None, k1, v1),
            expect(k1, v1),
        ),
        Case(
            _("3 cached positions and 1 new one"),
            (k1, v1, k2, v2),
            expect(torch.cat([k1, k2], 2), torch.cat([v1, v2], 2)),
            hint=_("the time axis of (B, H, T, D) is dim=2: torch.cat([cached, new], dim=2)"),
            mistakes=mistakes,
        ),
    ]
    hint = _("with no cache yet return the new keys and values; otherwise concatenate along time")
    return run_check("kv_cache_update", function, cases, hint, strict, KV_CACHE)


# --- inputs drawn per call ------------------------------------------------------------------------


def _draw_block(generator: torch.Generator) -> tuple[str, tuple, dict]:
    heads, size = draw_int(generator, 1, 3), draw_int(generator, 1, 6)
    batch, length = draw_int(generator, 1, 3), draw_int(generator, 1, 6)
    config = GPTConfig(
        vocab_size=11, block_size=length, n_layer=1, n_head=heads, n_embd=heads * size
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(draw_int(generator, 0, 10**6))
        block = Block(config, layer=0).eval()
        with torch.no_grad():  # distinct layer norms, so that swapping them shows
            for norm in (block.ln_1, block.ln_2):
                norm.weight.copy_(1 + 0.5 * torch.randn(norm.weight.shape))
                norm.bias.copy_(0.5 * torch.randn(norm.bias.shape))
    x = randn(generator, batch, length, heads * size)
    description = _("a block of {heads} heads of size {size}, x {shape}").format(
        heads=heads, size=size, shape=tuple(x.shape)
    )
    return description, (x, block), {}


def _block_reference(x: torch.Tensor, block: Block) -> torch.Tensor:
    return block(x)


def _draw_filter(generator: torch.Generator) -> tuple[str, tuple, dict]:
    batch, vocab = draw_int(generator, 1, 3), draw_int(generator, 1, 12)
    top_k = draw_choice(generator, (None, *range(1, vocab + 1)))
    top_p = draw_choice(generator, (None, 0.05, 0.3, 0.5, 0.8, 0.95, 1.0))
    scale = draw_choice(generator, (0.5, 3.0, 40.0))
    if top_p is None:  # ties at the k-th logit: all of them are kept
        logits = torch.randint(-2, 3, (batch, vocab), generator=generator).float()
    else:  # distinct logits: with ties the nucleus's order among them is arbitrary
        logits = scale * randn(generator, batch, vocab)
    description = _("logits {shape}, top_k = {top_k}, top_p = {top_p}").format(
        shape=tuple(logits.shape), top_k=top_k, top_p=top_p
    )
    return description, (logits, top_k, top_p), {}


def _filter_reference(logits: torch.Tensor, top_k: int | None, top_p: float | None):
    return filter_logits(logits.clone(), top_k=top_k, top_p=top_p)


def _draw_cache(generator: torch.Generator) -> tuple[str, tuple, dict]:
    dtype = draw_dtype(generator)
    batch, heads, size = (draw_int(generator, 1, 3) for _index in range(3))
    cached, new = draw_int(generator, 0, 5), draw_int(generator, 1, 3)
    k, v = (randn(generator, batch, heads, new, size, dtype=dtype) for _index in range(2))
    if cached == 0:
        description = _("an empty cache and {new} new positions, {dtype}").format(
            new=new, dtype=dtype
        )
        return description, (None, None, k, v), {}
    cached_k, cached_v = (
        randn(generator, batch, heads, cached, size, dtype=dtype) for _index in range(2)
    )
    description = _("{cached} cached and {new} new positions of shape {shape}, {dtype}").format(
        cached=cached, new=new, shape=tuple(k.shape), dtype=dtype
    )
    return description, (cached_k, cached_v, k, v), {}


def _cache_reference(cached_k, cached_v, k, v) -> tuple[torch.Tensor, torch.Tensor]:
    if cached_k is None:
        return k, v
    return torch.cat([cached_k, k], dim=2), torch.cat([cached_v, v], dim=2)


RESIDUAL_BLOCK = Draws(
    _draw_block, _block_reference, count=4, gradients=True, mistakes=_residual_mistakes
)
TOP_K_TOP_P = Draws(_draw_filter, _filter_reference, count=12, mistakes=_filter_mistakes)
KV_CACHE = Draws(_draw_cache, _cache_reference, gradients=True)
residual_block.draws = RESIDUAL_BLOCK
top_k_top_p.draws = TOP_K_TOP_P
kv_cache_update.draws = KV_CACHE
