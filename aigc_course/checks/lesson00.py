"""Checks for lesson 00 (setup): the warm-up exercise."""

from __future__ import annotations

from collections.abc import Callable

import torch

from aigc_course.checks._core import (
    Case,
    Draws,
    draw_choice,
    draw_dtype,
    draw_int,
    draw_shape,
    randn,
    run_check,
)
from aigc_course.i18n import _


def _reference_softmax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    shifted = logits - logits.amax(dim=dim, keepdim=True)
    exponentials = shifted.exp()
    return exponentials / exponentials.sum(dim=dim, keepdim=True)


def _shifted_softmax(logits: torch.Tensor, shift: torch.Tensor, dim: int) -> torch.Tensor:
    exponentials = (logits - shift).exp()
    return exponentials / exponentials.sum(dim=dim, keepdim=True)


def _mistakes(logits: torch.Tensor, dim: int = -1) -> dict[str, torch.Tensor]:
    """What the classic wrong softmaxes return on ``logits``."""
    mistakes = {
        _(
            "you subtracted the maximum of the whole tensor (`x.max()`): a row far below it "
            "underflows to 0 / 0 = nan; subtract the maximum per row, along `dim` "
            "(`x.amax(dim=dim, keepdim=True)`)"
        ): _shifted_softmax(logits, logits.max(), dim),
        _(
            "you subtracted the minimum: then the largest logit minus the smallest can overflow "
            "exp; subtract the maximum, so that every exponent is <= 0"
        ): _shifted_softmax(logits, logits.amin(dim=dim, keepdim=True), dim),
    }
    if logits.ndim > 1:
        other = 0 if dim % logits.ndim else 1
        mistakes[
            _(
                "the maximum you subtracted runs along the wrong dimension: subtract the maximum "
                "per row, along `dim` (`x.amax(dim=dim, keepdim=True)`)"
            )
        ] = _shifted_softmax(logits, logits.amax(dim=other, keepdim=True), dim)
        mistakes[
            _(
                "the softmax runs along the wrong dimension: the entries along dim={dim} must "
                "sum to 1; use the `dim` argument (not a fixed dimension) for the max and the sum"
            ).format(dim=dim)
        ] = _reference_softmax(logits, dim=other)
    return mistakes


def stable_softmax(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(logits, dim=-1)``: a softmax that does not overflow on large logits.

    Edge cases: logits of 1000 and of -1000, rows of very different scale, a spread that
    overflows when the minimum is subtracted, and dim=0. Drawn: 1 to 3 dimensions of 1 to 5
    entries, scales 1 to 1000, any ``dim``, float32 and float64; values and gradients."""
    overflow_hint = _(
        "exp(1000) overflows to inf; softmax(x) = softmax(x - c) for any constant c, so subtract "
        "the maximum along `dim` first (`x.amax(dim=dim, keepdim=True)`)"
    )
    small = torch.tensor([1.0, 2.0, 3.0])
    batch = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, -1.0, 0.5, 2.0]])
    large = torch.tensor([1000.0, 1001.0, 1002.0])
    very_negative = torch.tensor([-1000.0, -1001.0, -1002.0])
    # Rows of very different scale: one maximum for the whole tensor underflows the second row.
    scales = torch.tensor([[1000.0, 1001.0], [-1000.0, -1001.0]])
    spread = torch.tensor([-1000.0, 0.0, 1000.0])  # subtracting the minimum overflows here
    cases = [
        Case(_("logits [1, 2, 3]"), (small,), _reference_softmax(small)),
        Case(
            _("a batch of two rows, dim=-1"),
            (batch,),
            _reference_softmax(batch),
            mistakes=_mistakes(batch),
        ),
        Case(
            _("a batch, dim=0"),
            (batch,),
            _reference_softmax(batch, dim=0),
            kwargs={"dim": 0},
            mistakes=_mistakes(batch, dim=0),
        ),
        Case(
            _("large logits [1000, 1001, 1002]"), (large,), _reference_softmax(large), overflow_hint
        ),
        Case(_("very negative logits"), (very_negative,), _reference_softmax(very_negative)),
        Case(
            _("rows of very different scale [[1000, 1001], [-1000, -1001]]"),
            (scales,),
            _reference_softmax(scales),
            hint=_("each row needs its own maximum: x.amax(dim=dim, keepdim=True)"),
            mistakes=_mistakes(scales),
        ),
        Case(
            _("a wide spread [-1000, 0, 1000]"),
            (spread,),
            _reference_softmax(spread),
            overflow_hint,
            mistakes=_mistakes(spread),
        ),
    ]
    hint = _("divide exp(x - max) by its sum along `dim`, keeping the dimension (keepdim=True)")
    return run_check("stable_softmax", function, cases, hint, strict, STABLE_SOFTMAX)


def _draw_logits(generator: torch.Generator) -> tuple[str, tuple, dict]:
    dtype, shape = draw_dtype(generator), draw_shape(generator, 1, 3)
    scale = draw_choice(generator, (1.0, 30.0, 1000.0))
    dim = draw_int(generator, -len(shape), len(shape) - 1)
    logits = scale * randn(generator, *shape, dtype=dtype)
    description = _("logits {shape} x {scale}, dim={dim}, {dtype}").format(
        shape=tuple(shape), scale=f"{scale:g}", dim=dim, dtype=dtype
    )
    return description, (logits,), {"dim": dim}


STABLE_SOFTMAX = Draws(_draw_logits, _reference_softmax, gradients=True, mistakes=_mistakes)
stable_softmax.draws = STABLE_SOFTMAX
