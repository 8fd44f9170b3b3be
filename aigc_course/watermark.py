"""A green-list watermark for generated text (Kirchenbauer et al., 2023), and its detector.

**Marking.** Before each token is sampled, the previous token and a secret ``key`` seed a random
split of the vocabulary: a fraction ``gamma`` of the tokens are *green*, the rest red. The sampler
adds ``delta`` to the logits of the green tokens, so it picks green tokens more often than chance,
while a token the model is sure of (a logit far above the rest) is still picked.

**Detecting.** Whoever holds the key recomputes each token's green list from the token before it
and counts the green tokens. Text written without the watermark has each token green with
probability ``gamma``, independently of the key, so the count G among T scored tokens has mean
gamma T and variance T gamma (1 - gamma), and

    z = (G - gamma T) / sqrt(T gamma (1 - gamma))

is about N(0, 1). Watermarked text has far more green tokens, and z grows like sqrt(T). The test
needs the key and the token ids only: not the model, not its logits.

The green lists depend only on (key, previous token), so for a vocabulary of V tokens they form a
V x V table, made once (:func:`green_lists`) and reused for every text tested (:func:`z_test`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from aigc_course.errors import SettingError
from aigc_course.i18n import _


def green_lists(key: int, vocab_size: int, gamma: float = 0.5) -> torch.Tensor:
    """The green lists of every previous token: ``(V, V)`` bool, row p = the tokens green after p.

    Each row is a random subset of round(gamma V) tokens, from a generator seeded by the key and p."""
    if not 0 < gamma < 1:
        raise SettingError(
            _("gamma (the green fraction) must be between 0 and 1, got {gamma}").format(gamma=gamma)
        )
    if vocab_size < 2:
        raise SettingError(
            _("the vocabulary needs at least 2 tokens, got {size}").format(size=vocab_size)
        )
    size = max(1, min(vocab_size - 1, round(gamma * vocab_size)))
    table = torch.zeros(vocab_size, vocab_size, dtype=torch.bool)
    for previous in range(vocab_size):
        generator = torch.Generator().manual_seed(key * 1_000_003 + previous)
        table[previous, torch.randperm(vocab_size, generator=generator)[:size]] = True
    return table


@dataclass(frozen=True)
class Watermark:
    """The watermark's settings: the secret ``key``, the green fraction ``gamma`` and the bias
    ``delta`` added to green logits."""

    key: int
    vocab_size: int
    gamma: float = 0.5
    delta: float = 2.0
    table: torch.Tensor = field(init=False, repr=False, compare=False)  # (V, V), from the key

    def __post_init__(self) -> None:
        if self.delta < 0:
            raise SettingError(
                _("delta (the bias of green tokens) must be 0 or more, got {delta}").format(
                    delta=self.delta
                )
            )
        object.__setattr__(self, "table", green_lists(self.key, self.vocab_size, self.gamma))

    @property
    def green_fraction(self) -> float:
        """The exact share of green tokens per list (gamma, rounded to whole tokens)."""
        return self.table[0].sum().item() / self.vocab_size

    def bias_logits(self, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Add delta to the green tokens' logits: ``logits`` ``(B, V)`` for the token after
        ``ids`` ``(B, T)`` (the green list follows each sequence's last token)."""
        green = self.table.to(logits.device)[ids[:, -1]]  # (B, V)
        return logits + self.delta * green.to(logits.dtype)


@dataclass(frozen=True)
class Detection:
    """The detector's verdict on one text: green tokens among those scored, and the z-score."""

    green: int
    scored: int
    z: float

    def detected(self, threshold: float = 4.0) -> bool:
        return self.z > threshold


def z_test(ids: torch.Tensor | list[int], green: torch.Tensor) -> Detection:
    """The test of token ids ``(T,)`` against green lists ``(V, V)`` (:func:`green_lists`): token t
    is scored against the green list of token t - 1, so T ids give T - 1 scored tokens. Build the
    lists once to test many texts with one key."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.dim() != 1 or len(ids) < 2:
        raise SettingError(_("detect needs a 1-D sequence of at least 2 token ids"))
    fraction = green[0].sum().item() / green.shape[1]
    count = int(green[ids[:-1], ids[1:]].sum())
    scored = len(ids) - 1
    z = (count - fraction * scored) / math.sqrt(scored * fraction * (1 - fraction))
    return Detection(count, scored, z)


def detect(
    ids: torch.Tensor | list[int], key: int, vocab_size: int, gamma: float = 0.5
) -> Detection:
    """Test token ids ``(T,)`` for the watermark of ``key``: the key is all it needs, not the model."""
    return z_test(ids, green_lists(key, vocab_size, gamma))
