"""Checks for lesson 09: the LoRA layer, merging an adapter, freezing everything but the adapters,
and the loss of a text read after a prompt."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from aigc_course.checks._core import (
    Case,
    as_number,
    compare_tensor,
    describe_numbers,
    module_gradient_problem,
    recognise_mistake,
    run_check,
    tolerance,
)
from aigc_course.i18n import _
from aigc_course.models import lora
from aigc_course.models.gpt import GPT, GPTConfig

# in != out, rank > 1 and alpha not a multiple of the rank, so that swapped shapes fail and alpha,
# alpha / r and alpha // r all differ
_IN, _OUT, _RANK, _ALPHA = 8, 5, 2, 5.0
_CONFIG = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.0)


def _base_layer(size_in: int = _IN, size_out: int = _OUT) -> nn.Linear:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11 + size_in + 100 * size_out)
        return nn.Linear(size_in, size_out)


def _known_adapter(
    size_in: int = _IN, size_out: int = _OUT, rank: int = _RANK
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(12)
    return torch.randn(rank, size_in, generator=generator), torch.randn(
        size_out, rank, generator=generator
    )


def _inputs(*batch: int, size_in: int = _IN) -> torch.Tensor:
    batch = batch or (2, 3)
    return torch.randn(*batch, size_in, generator=torch.Generator().manual_seed(13))


def _adapter_problem(layer: nn.Module, base: nn.Linear, rank: int) -> str | None:
    """What is wrong with a fresh LoRA layer's parts: shapes, initialisation, what trains."""
    for name, shape, what in (
        ("lora_A", (rank, base.in_features), "(rank, in_features)"),
        ("lora_B", (base.out_features, rank), "(out_features, rank)"),
    ):
        parameter = getattr(layer, name, None)
        if not isinstance(parameter, nn.Parameter):
            return _("the layer needs an nn.Parameter named {name} of shape {shape}").format(
                name=name, shape=what
            )
        if tuple(parameter.shape) != shape:
            return _(
                "{name} must be {shape}, here {expected}; got {got} "
                "(A reads the input: (r, in); B writes the output: (out, r))"
            ).format(name=name, shape=what, expected=shape, got=tuple(parameter.shape))
    if not isinstance(getattr(layer, "base", None), nn.Linear):
        return _("keep the frozen layer as self.base")
    if any(p.requires_grad for p in layer.base.parameters()):
        return _(
            "the base layer still trains: freeze it (requires_grad_(False) on its weight and "
            "bias); only lora_A and lora_B learn"
        )
    if not (layer.lora_A.requires_grad and layer.lora_B.requires_grad):
        return _("lora_A and lora_B must be trainable (requires_grad=True)")
    if not torch.equal(layer.base.weight, base.weight):
        return _("leave the base layer's weight as it is: LoRA adds beside it")
    if bool((layer.lora_B != 0).any()):
        return _(
            "B must start at zero, so that the adapted layer starts as exactly the pretrained "
            "one; with A and B both random the model starts damaged"
        )
    if bool((layer.lora_A == 0).all()):
        return _(
            "A must start random (e.g. nn.init.kaiming_uniform_): with A and B both zero no "
            "gradient ever reaches either, and the adapter never learns"
        )
    spread = layer.lora_A.detach().std().item() if layer.lora_A.numel() > 1 else 0.1
    if not (torch.isfinite(layer.lora_A).all() and 1e-3 < spread < 10):
        return _(
            "A must start as small random numbers (e.g. nn.init.kaiming_uniform_(A, "
            "a=math.sqrt(5))); its values have a spread of {spread}: an uninitialised "
            "torch.empty holds whatever was in memory"
        ).format(spread=f"{spread:.3g}")
    return None


#: (in_features, out_features, rank, alpha, batch shape): alpha / r is fractional, below and
#: above 1; the input has one, two or three leading axes.
_SHAPES = [
    (8, 5, 2, 5.0, (2, 3)),
    (6, 7, 3, 1.0, (4,)),
    (3, 2, 1, 16.0, (1, 2, 5)),
    (10, 4, 4, 6.0, (2, 1)),
]


def _lora_verdict(
    size_in: int, size_out: int, rank: int, alpha: float, batch: tuple[int, ...]
) -> Callable[[Any], str | None]:
    base, x = _base_layer(size_in, size_out), _inputs(*batch, size_in=size_in)
    A, B = _known_adapter(size_in, size_out, rank)
    with torch.no_grad():
        plain = base(x)
        update = x @ A.T @ B.T
    scale = alpha / rank
    mistakes = {
        _(
            "scale the update by alpha / r, not by alpha: the update's size then stays comparable "
            "when r changes"
        ): plain + alpha * update,
        _("scale the update by alpha / r (here {scale}), not r / alpha").format(
            scale=f"{scale:g}"
        ): plain + update / scale,
        _(
            "scale the update by alpha / r as a real number ({scale} here): alpha // r rounds "
            "it down (to 0 when r > alpha)"
        ).format(scale=f"{scale:g}"): plain + (alpha // rank) * update,
        _("the update is not scaled: multiply it by alpha / r"): plain + update,
        _("the layer must *add* the update to the frozen layer's output, base(x) + ..."): scale
        * update,
        _("add the update, do not subtract it"): plain - scale * update,
    }
    reference = lora.LoRALinear(_base_layer(size_in, size_out), rank, alpha)
    with torch.no_grad():
        reference.lora_A.copy_(A)
        reference.lora_B.copy_(B)

    def verdict(layer) -> str | None:
        if not isinstance(layer, nn.Module):
            return _("expected an nn.Module, got {type}").format(type=type(layer).__name__)
        problem = _adapter_problem(layer, base, rank)
        if problem:
            return problem
        with torch.no_grad():
            start = layer(x)
            problem = compare_tensor(start, plain)
            if problem:
                return _(
                    "at initialisation the layer must compute exactly base(x): {problem}"
                ).format(problem=problem)
            layer.lora_A.copy_(A)
            layer.lora_B.copy_(B)
            got = layer(x)
        expected = plain + scale * update
        problem = compare_tensor(got, expected)
        if problem:
            mistake = recognise_mistake(got, mistakes, 1e-4, 1e-5)
            return _("with A and B set: {problem}").format(problem=mistake or problem)
        return module_gradient_problem(layer, reference, x, ("lora_A", "lora_B"))

    return verdict


def lora_linear(make_layer: Callable[..., nn.Module], *, strict: bool | None = None) -> bool:
    """Check ``make_layer(base, rank, alpha)``: a LoRA layer with ``base`` (frozen), ``lora_A``
    ``(r, in)``, ``lora_B`` ``(out, r)`` and forward ``base(x) + (alpha / r) x A^T B^T``.

    Cases: four layer shapes, ranks 1 to 4, alpha / r from 1/3 to 16, inputs with one to three
    leading axes; at initialisation, with A and B set, then the gradients with respect to the
    input (through the frozen path and the adapter) and to A and B."""
    cases = [
        Case(
            _("nn.Linear({size_in}, {size_out}), rank {rank}, alpha {alpha}, x {shape}").format(
                size_in=i, size_out=o, rank=r, alpha=f"{a:g}", shape=(*b, i)
            ),
            (_base_layer(i, o), r, a),
            _lora_verdict(i, o, r, a, b),
        )
        for i, o, r, a, b in _SHAPES
    ]
    hint = _(
        "freeze base; lora_A = Parameter (r, in), random; lora_B = Parameter (out, r), zeros; "
        "forward: base(x) + (alpha / r) * (x @ A.T) @ B.T"
    )
    return run_check("lora_linear", make_layer, cases, hint, strict)


def _package_layer(
    size_in: int = _IN, size_out: int = _OUT, rank: int = _RANK, alpha: float = _ALPHA
) -> lora.LoRALinear:
    layer = lora.LoRALinear(_base_layer(size_in, size_out), rank, alpha)
    A, B = _known_adapter(size_in, size_out, rank)
    with torch.no_grad():
        layer.lora_A.copy_(A)
        layer.lora_B.copy_(B)
    return layer


def _merge_verdict(
    size_in: int, size_out: int, rank: int, alpha: float
) -> Callable[[Any], str | None]:
    x = _inputs(size_in=size_in)
    reference = _package_layer(size_in, size_out, rank, alpha)
    with torch.no_grad():
        before = reference(x)
        W, update = reference.base.weight.clone(), reference.lora_B @ reference.lora_A
    scale = alpha / rank
    mistakes = {
        _("scale the merged update by alpha / r, not alpha"): W + alpha * update,
        _("the merged update is not scaled: W + (alpha / r) B A"): W + update,
        _("add the update into W, do not subtract it"): W - scale * update,
    }

    def verdict(result) -> str | None:
        layer, original, once = result
        if layer.base.weight is not original or layer.base.weight.requires_grad:
            return _(
                "change the frozen weight in place (under torch.no_grad(): layer.base.weight += "
                "...): a new nn.Parameter is trainable and is not the tensor the model and its "
                "optimizer hold"
            )
        problem = compare_tensor(once, W + scale * update)
        if problem:
            mistake = recognise_mistake(once, mistakes, 1e-4, 1e-5)
            if torch.equal(once, W):
                mistake = _(
                    "the base weight did not change: add (alpha / r) B A into layer.base.weight"
                )
            return _("the merged weight: {problem}").format(problem=mistake or problem)
        if not (layer.lora_A.abs().sum() > 0 and layer.lora_B.abs().sum() > 0):
            return _(
                "keep A and B after merging (unmerge and saving the adapter need them); set "
                "layer.merged = True instead of zeroing them"
            )
        A, B = _known_adapter(size_in, size_out, rank)
        if not (torch.equal(layer.lora_A.detach(), A) and torch.equal(layer.lora_B.detach(), B)):
            return _(
                "merging changed the adapter itself (A or B was modified in place, e.g. "
                "`layer.lora_B *= layer.scale`): leave A and B as they are, unmerge and saving "
                "the adapter need them; compute the update into a new tensor"
            )
        if layer.merged is not True:
            return _(
                "set layer.merged = True: forward still adds the update, so it now counts twice"
            )
        if not torch.equal(layer.base.weight.detach(), once):
            return _(
                "merging a merged layer again added the update twice: return at once when "
                "layer.merged is already True"
            )
        with torch.no_grad():
            return compare_tensor(layer(x), before)

    return verdict


def merge_adapter(
    function: Callable[[lora.LoRALinear], None], *, strict: bool | None = None
) -> bool:
    """Check ``function(layer)``: merges a :class:`~aigc_course.models.lora.LoRALinear`'s update
    into its frozen weight (``W <- W + (alpha / r) B A``), sets ``layer.merged``, keeps A and B.

    Cases: two layer shapes (alpha / r of 2.5 and 1/3). Edge cases: merging twice, the adapter
    left unchanged, the weight changed in place.
    """

    def run(shape: tuple[int, int, int, float]):
        layer = _package_layer(*shape)
        original = layer.base.weight
        function(layer)
        once = layer.base.weight.detach().clone()
        function(layer)  # merging an adapter that is merged already must change nothing
        return layer, original, once

    shapes = [(_IN, _OUT, _RANK, _ALPHA), (6, 7, 3, 1.0)]
    cases = [
        Case(
            _("a LoRA layer ({size_in} -> {size_out}, rank {rank}, alpha {alpha})").format(
                size_in=i, size_out=o, rank=r, alpha=f"{a:g}"
            ),
            ((i, o, r, a),),
            _merge_verdict(i, o, r, a),
        )
        for i, o, r, a in shapes
    ]
    hint = _(
        "if layer.merged: return; with torch.no_grad(): layer.base.weight += layer.scale * "
        "(layer.lora_B @ layer.lora_A); layer.merged = True"
    )
    return run_check("merge_adapter", run if callable(function) else function, cases, hint, strict)


def _adapted_gpt(targets: str = "both", rank: int = 2) -> GPT:
    """A tiny GPT with LoRA on ``targets``, every parameter left trainable."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(14)
        model = GPT(_CONFIG)
        lora.add_lora(model, lora.LoRAConfig(rank=rank, alpha=4.0, targets=targets))
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model


def _freeze_problem(result: tuple, adapter_numbers: int) -> str | None:
    """What is wrong with a model after the learner froze it, and the count it returned."""
    model, count = result
    named = dict(model.named_parameters())
    frozen_adapters = [n for n, p in named.items() if ".lora_" in n and not p.requires_grad]
    if frozen_adapters:
        return _(
            "the adapters are frozen too ({count} tensors, e.g. "
            "{example}): keep requires_grad on every parameter named lora_"
        ).format(count=len(frozen_adapters), example=frozen_adapters[0])
    training = [n for n, p in named.items() if ".lora_" not in n and p.requires_grad]
    if training:
        return _(
            "{count} tensors outside the adapters still train, e.g. "
            "{examples}: freeze every parameter whose name lacks 'lora_' "
            "(embeddings, LayerNorms and biases too, not only the linear weights)"
        ).format(count=len(training), examples=", ".join(training[:3]))
    number = as_number(count)
    if number is None or number != int(number):
        return _("return the number of trainable numbers as an int, got {got}").format(
            got=repr(count)
        )
    number = int(number)
    if number != adapter_numbers:
        tensors = sum(1 for n in named if ".lora_" in n)
        if number == tensors:
            return _(
                "count the trainable *numbers* (sum of p.numel()), not the tensors: "
                "expected {expected}, got {got}"
            ).format(expected=f"{adapter_numbers:,}", got=number)
        return _("wrong count of trainable numbers: expected {expected}, got {got}").format(
            expected=f"{adapter_numbers:,}", got=f"{number:,}"
        )
    return None


def freeze_all_but_adapters(
    function: Callable[[nn.Module], int], *, strict: bool | None = None
) -> bool:
    """Check ``function(model)``: freezes every parameter but the adapters' (``lora_A``,
    ``lora_B``) and returns how many numbers still train.

    Cases: tiny GPTs with LoRA of rank 2 on attention and MLP and of rank 5 on attention only;
    the count as any integer type.
    """

    def run(setting: tuple[str, int]):
        model = _adapted_gpt(*setting)
        return model, function(model)

    def verdict_for(setting: tuple[str, int]) -> Callable[[Any], str | None]:
        adapter_numbers = sum(
            p.numel() for n, p in _adapted_gpt(*setting).named_parameters() if ".lora_" in n
        )
        return lambda result: _freeze_problem(result, adapter_numbers)

    cases = [
        Case(
            _("a tiny GPT with LoRA of rank {rank} on {targets}, all trainable").format(
                rank=r, targets=t
            ),
            ((t, r),),
            verdict_for((t, r)),
        )
        for t, r in (("both", 2), ("attention", 5))
    ]
    hint = _(
        "for name, p in model.named_parameters(): p.requires_grad_('lora_' in name); "
        "return sum(p.numel() for p in model.parameters() if p.requires_grad)"
    )
    return run_check(
        "freeze_all_but_adapters", run if callable(function) else function, cases, hint, strict
    )


def _continuation_mistakes(model: GPT, prompt: torch.Tensor, continuation: torch.Tensor) -> dict:
    """What the classic wrong measures give (the model in eval mode)."""
    n, size = continuation.numel(), model.config.block_size
    ids = torch.cat([prompt, continuation])
    with torch.no_grad():
        window = ids[-(size + 1) :]
        logits = model(window[None, :-1])[0]
        log_p = logits[0].log_softmax(-1)
        targets = window[1:]
        per_token = -log_p.gather(1, targets[:, None])[:, 0]
        right = per_token[-n:].mean().item()
        # the logits at the continuation's own positions, scored with the token there
        last = ids[-size:]
        own_logits = model(last[None])[0]
        own_log_p = own_logits[0, -n:].log_softmax(-1)
        own = -own_log_p.gather(1, last[-n:, None]).mean().item()
        start = ids[: size + 1]  # the start kept, the end of the text cut off
        logits_start = model(start[None, :-1])[0]
        kept = start[1:][-n:]
        from_start = -logits_start[0].log_softmax(-1)[-n:].gather(1, kept[:, None]).mean().item()
    mistakes = {
        _(
            "average over the continuation's tokens only: the prompt's tokens are not what is "
            "being scored"
        ): per_token.mean().item(),
        _(
            "the logits at position t predict token t + 1: score the continuation's tokens with "
            "the logits one position earlier"
        ): own,
        _("the loss is the *mean* over the continuation's tokens, not the sum"): right * n,
        _("report nats (natural log, as F.cross_entropy), not bits"): right / math.log(2),
    }
    if ids.numel() > size + 1:
        mistakes[
            _(
                "cut a long prompt from the *left* (keep the last block_size + 1 tokens): the model "
                "must see the text right before the continuation, and all of the continuation"
            )
        ] = from_start
    return mistakes


def continuation_loss(function: Callable[..., float], *, strict: bool | None = None) -> bool:
    """Check ``function(model, prompt, continuation)``: the mean loss (nats per token) of the 1-D
    ``continuation`` read after the 1-D ``prompt``, in eval mode, a long prompt cut from the left.

    Edge cases: a prompt longer than the context, 1-token prompt and continuation, a
    continuation filling the context, dropout on.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(15)
        model = GPT(dataclasses.replace(_CONFIG, dropout=0.3))
    generator = torch.Generator().manual_seed(16)
    short = (
        torch.randint(0, 11, (3,), generator=generator),
        torch.randint(0, 11, (4,), generator=generator),
    )
    long = (
        torch.randint(0, 11, (9,), generator=generator),
        torch.randint(0, 11, (4,), generator=generator),
    )
    tiny = (
        torch.randint(0, 11, (1,), generator=generator),
        torch.randint(0, 11, (1,), generator=generator),
    )
    filling = (
        torch.randint(0, 11, (2,), generator=generator),
        torch.randint(0, 11, (8,), generator=generator),
    )

    def run(prompt, continuation):
        model.train()  # as a model is during fine-tuning: the measure must switch dropout off
        return [function(model, prompt, continuation) for _call in range(2)]

    def case(description: str, prompt: torch.Tensor, continuation: torch.Tensor) -> Case:
        expected = model.continuation_nll(prompt, continuation)
        model.eval()
        mistakes = _continuation_mistakes(model, prompt, continuation)

        def verdict(results) -> str | None:
            values = []
            for got in results:
                value = as_number(got)
                if value is None:
                    return _("return the loss as a float, got {got}").format(got=repr(got))
                values.append(value)
            if values[0] != values[1]:
                return _(
                    "two calls gave different losses: dropout is on. Call model.eval() before "
                    "scoring (and restore the mode after, if you like)"
                )
            rtol, atol = tolerance(torch.float32)
            if math.isclose(values[0], expected, rel_tol=rtol, abs_tol=atol):
                return None
            mistake = recognise_mistake(values[0], mistakes, rtol, atol)
            want, have = describe_numbers(expected, values[0])
            return mistake or _("wrong value: expected {want}, got {have}").format(
                want=want, have=have
            )

        return Case(description, (prompt, continuation), verdict)

    cases = [
        case(_("a 3-token prompt and a 4-token continuation"), *short),
        case(_("a 9-token prompt and a 4-token continuation (context 8)"), *long),
        case(_("a 1-token prompt and a 1-token continuation (edge case)"), *tiny),
        case(_("a 2-token prompt and an 8-token continuation (it fills the context)"), *filling),
    ]
    hint = _(
        "model.eval(); ids = cat([prompt, continuation])[-(block_size + 1):]; logits = "
        "model(ids[None, :-1])[0]; the last n rows predict ids[-n:]; mean of -log_softmax there"
    )
    return run_check(
        "continuation_loss", run if callable(function) else function, cases, hint, strict
    )
