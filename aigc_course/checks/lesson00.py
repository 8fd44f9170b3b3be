"""Checks for lesson 00 (setup): the warm-up exercise."""

from __future__ import annotations

from collections.abc import Callable

import torch

from aigc_course.checks._core import Case, run_check


def _reference_softmax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    shifted = logits - logits.amax(dim=dim, keepdim=True)
    exponentials = shifted.exp()
    return exponentials / exponentials.sum(dim=dim, keepdim=True)


def stable_softmax(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(logits, dim=-1)``: a softmax that does not overflow on large logits."""
    overflow_hint = (
        "exp(1000) overflows to inf; softmax(x) = softmax(x - c) for any constant c, so subtract "
        "the maximum along `dim` first (`x.amax(dim=dim, keepdim=True)`)"
    )
    small = torch.tensor([1.0, 2.0, 3.0])
    batch = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, -1.0, 0.5, 2.0]])
    large = torch.tensor([1000.0, 1001.0, 1002.0])
    very_negative = torch.tensor([-1000.0, -1001.0, -1002.0])
    cases = [
        Case("logits [1, 2, 3]", (small,), _reference_softmax(small)),
        Case("a batch of two rows, dim=-1", (batch,), _reference_softmax(batch)),
        Case("a batch, dim=0", (batch,), _reference_softmax(batch, dim=0), kwargs={"dim": 0}),
        Case("large logits [1000, 1001, 1002]", (large,), _reference_softmax(large), overflow_hint),
        Case("very negative logits", (very_negative,), _reference_softmax(very_negative)),
    ]
    hint = "divide exp(x - max) by its sum along `dim`, keeping the dimension (keepdim=True)"
    return run_check("stable_softmax", function, cases, hint, strict)
