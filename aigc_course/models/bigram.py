"""The bigram character model: lesson 02's first language model and every later model's baseline.

A bigram model predicts the next character from the current one only,

    p(x_1, ..., x_T) ~= p(x_1) * prod_t p(x_t | x_{t-1}),

with one probability table P[a, b] = p(next = b | current = a) of shape ``(V, V)``.

Maximum likelihood for that table is counting: P[a, b] = C[a, b] / sum_b' C[a, b'], where C counts
the pairs (a, b) in the training text. Pure counting gives probability zero to every pair never
seen in training, and a single such pair in the validation text makes the validation NLL infinite.
So the baseline adds ``alpha`` pseudo-counts to every cell ("add-one" smoothing for alpha = 1),
which is the MAP estimate under a Dirichlet prior and the maximum of the likelihood of C + alpha.

:class:`Baseline` holds *the* number lesson 08's GPT must beat: the validation NLL on Tiny
Shakespeare's last 10%, in nats and bits per character (computed by
:func:`aigc_course.trainers.gpt.bigram_baseline`, which brings the data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from aigc_course.i18n import _

DEFAULT_ALPHA = 1.0


def pair_counts(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """C[a, b] = how often token b follows token a in ``ids`` ``(N,)``. Returns ``(V, V)`` float64."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    flat = ids[:-1] * vocab_size + ids[1:]
    return (
        torch.bincount(flat, minlength=vocab_size * vocab_size)
        .reshape(vocab_size, vocab_size)
        .double()
    )


def probabilities_from_counts(counts: torch.Tensor, alpha: float = DEFAULT_ALPHA) -> torch.Tensor:
    """Row-normalised (C + alpha): P[a, b] = (C[a, b] + alpha) / sum_b' (C[a, b'] + alpha)."""
    if alpha < 0:
        raise ValueError(_("alpha must be >= 0, got {alpha}").format(alpha=alpha))
    smoothed = counts + alpha
    totals = smoothed.sum(dim=1, keepdim=True)
    if (totals == 0).any():
        raise ValueError(_("a token never occurs as a first element and alpha = 0: its row is 0/0"))
    return smoothed / totals


def average_nll(probabilities: torch.Tensor, ids: torch.Tensor) -> float:
    """Mean of -log P[x_{t-1}, x_t] over the pairs of ``ids``, in nats per character."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    return -probabilities[ids[:-1], ids[1:]].log().mean().item()


def nats_to_bits(nats: float) -> float:
    """1 nat = 1 / ln 2 bits."""
    return nats / math.log(2)


def fit_by_gradient_descent(
    counts: torch.Tensor, alpha: float = DEFAULT_ALPHA, steps: int = 1000, lr: float = 1.0
) -> tuple[torch.Tensor, list[float]]:
    """Fit logits W ``(V, V)`` with P = softmax(W, rows) by minimising the NLL of C + alpha.

    The loss over all training pairs, -1/N sum_ab (C + alpha)[a, b] log P[a, b], only needs the
    count table, so each full-batch Adam step is cheap (the learning rate decays linearly to 0, so
    the iterates settle instead of oscillating). Its minimum is :func:`probabilities_from_counts`,
    which is the point: gradient descent and counting find the same maximum-likelihood model.
    Returns the probabilities and the loss at each step.
    """
    weights = counts + alpha
    total = weights.sum()
    logits = torch.zeros_like(counts, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    history: list[float] = []
    for _step in range(steps):
        optimizer.zero_grad()
        loss = -(weights * torch.log_softmax(logits, dim=1)).sum() / total
        loss.backward()
        optimizer.step()
        schedule.step()
        history.append(loss.item())
    return torch.softmax(logits.detach(), dim=1), history


def sample(
    probabilities: torch.Tensor, start: int, length: int, generator: torch.Generator | None = None
) -> list[int]:
    """``length`` token ids drawn one at a time, each from the row of the previous token."""
    out = [start]
    for _index in range(length - 1):
        out.append(int(torch.multinomial(probabilities[out[-1]], 1, generator=generator)))
    return out


@dataclass(frozen=True)
class Baseline:
    """The bigram baseline on Tiny Shakespeare."""

    alpha: float
    vocab_size: int
    train_characters: int
    val_characters: int
    train_nll: float
    val_nll: float

    @property
    def val_bits_per_character(self) -> float:
        return nats_to_bits(self.val_nll)

    def __str__(self) -> str:
        return _(
            "bigram baseline (add-{alpha} smoothing): validation NLL {val_nll} nats "
            "= {bits} bits per character "
            "({characters} characters; train NLL {train_nll} nats)"
        ).format(
            alpha=f"{self.alpha:g}",
            val_nll=f"{self.val_nll:.4f}",
            bits=f"{self.val_bits_per_character:.4f}",
            characters=f"{self.val_characters:,}",
            train_nll=f"{self.train_nll:.4f}",
        )
