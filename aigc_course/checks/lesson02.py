"""Checks for lesson 02: the Gaussian MLE, bigram counts, smoothed probabilities, average NLL."""

from __future__ import annotations

from collections.abc import Callable

import torch

from aigc_course.checks._core import Case, compare_tensor, run_check
from aigc_course.models import bigram


def gaussian_mle(function: Callable[..., tuple], *, strict: bool | None = None) -> bool:
    """Check ``function(x) -> (mean, std)``: the maximum-likelihood Gaussian for samples ``x``."""
    generator = torch.Generator().manual_seed(0)
    x = 3.0 + 2.0 * torch.randn(50, generator=generator)
    small = torch.tensor([1.0, 2.0, 3.0, 6.0])

    def expect(samples: torch.Tensor):
        mean = samples.mean()
        std = ((samples - mean) ** 2).mean().sqrt()

        def verdict(got) -> str | None:
            if not isinstance(got, tuple) or len(got) != 2:
                return f"expected a tuple (mean, std), got {type(got).__name__}"
            problem = compare_tensor(got[0], mean, 1e-5, 1e-6)
            if problem:
                return f"the mean: {problem}"
            unbiased = samples.std(unbiased=True)
            if isinstance(got[1], torch.Tensor) and torch.allclose(got[1].float(), unbiased):
                return "the std divides by n - 1 (torch.std's default): the MLE divides by n"
            problem = compare_tensor(got[1], std, 1e-5, 1e-6)
            return f"the std: {problem}" if problem else None

        return verdict

    cases = [
        Case("x = [1, 2, 3, 6] (answer: mean 3, std sqrt(3.5))", (small,), expect(small)),
        Case("50 samples", (x,), expect(x)),
    ]
    hint = "mean = x.mean(); std = sqrt(mean of (x - mean)^2), i.e. x.std(unbiased=False)"
    return run_check("gaussian_mle", function, cases, hint, strict)


def bigram_counts(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(ids, vocab_size)``: C[a, b] = how often b follows a."""
    short = torch.tensor([0, 1, 1, 2, 0, 1])
    generator = torch.Generator().manual_seed(1)
    longer = torch.randint(0, 7, (500,), generator=generator)
    cases = [
        Case(
            "ids [0, 1, 1, 2, 0, 1] with 3 tokens",
            (short, 3),
            bigram.pair_counts(short, 3),
            hint="the pairs are (ids[t], ids[t+1]) for t = 0 .. N-2: (0,1), (1,1), (1,2), (2,0), (0,1)",
        ),
        Case("500 random ids with 7 tokens", (longer, 7), bigram.pair_counts(longer, 7)),
    ]
    hint = "rows are the current token, columns the next one; a (V, V) float tensor"
    return run_check("bigram_counts", function, cases, hint, strict)


def bigram_probabilities(
    function: Callable[..., torch.Tensor], *, strict: bool | None = None
) -> bool:
    """Check ``function(counts, alpha)``: each row of counts + alpha, normalised to sum to one."""
    counts = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 2.0], [5.0, 5.0, 0.0]])
    cases = [
        Case(
            "alpha = 0 (plain maximum likelihood)",
            (counts, 0.0),
            bigram.probabilities_from_counts(counts, 0.0).float(),
        ),
        Case(
            "alpha = 1 (add-one smoothing)",
            (counts, 1.0),
            bigram.probabilities_from_counts(counts, 1.0).float(),
            hint="add alpha to every cell first, then divide each row by its own sum",
        ),
    ]
    hint = "(counts + alpha) / (counts + alpha).sum(dim=1, keepdim=True)"
    return run_check("bigram_probabilities", function, cases, hint, strict)


def average_nll(function: Callable[..., float], *, strict: bool | None = None) -> bool:
    """Check ``function(probabilities, ids)``: mean of -log P[ids[t], ids[t+1]] in nats."""
    probabilities = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    ids = torch.tensor([0, 1, 1, 0, 0])

    def expect(value: float):
        def verdict(got) -> str | None:
            got = got.item() if isinstance(got, torch.Tensor) and got.numel() == 1 else got
            if not isinstance(got, float):
                return f"expected a number (a Python float or a 0-dim tensor), got {type(got).__name__}"
            if abs(got - value) > 1e-5:
                return f"wrong value: expected {value:.6f}, got {got:.6f}"
            return None

        return verdict

    expected = bigram.average_nll(probabilities.double(), ids)
    cases = [
        Case(
            "ids [0, 1, 1, 0, 0] (4 pairs)",
            (probabilities, ids),
            expect(expected),
            hint="average over the 4 pairs (not the 5 tokens), and use the natural log",
        )
    ]
    hint = "-probabilities[ids[:-1], ids[1:]].log().mean()"
    return run_check("average_nll", function, cases, hint, strict)
