"""Tiny Shakespeare and the character tokenizer of the language-model lessons."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from aigc_course import files
from aigc_course.data.sources import TINY_SHAKESPEARE, locate


def load_tiny_shakespeare() -> str:
    """The Tiny Shakespeare corpus (1,115,394 characters), verified by its sha256."""
    return locate(TINY_SHAKESPEARE, "input.txt").read_text(encoding="utf-8")


class CharTokenizer:
    """A character-level tokenizer: each distinct character of a text is one token.

    The vocabulary is the sorted set of characters, so the same text always gives the same ids.
    It is saved beside a model (``save``/``load`` or ``to_dict``/``from_dict``), because a model's
    token ids mean nothing without the vocabulary it was trained with.

    >>> tokenizer = CharTokenizer.from_text("hello")
    >>> tokenizer.encode("hell")
    [1, 0, 2, 2]
    >>> tokenizer.decode([1, 0, 2, 2, 3])
    'hello'
    """

    def __init__(self, vocabulary: Sequence[str]) -> None:
        characters = list(vocabulary)
        if not characters:
            raise ValueError("the vocabulary is empty: build it with CharTokenizer.from_text(text)")
        if any(not isinstance(c, str) or len(c) != 1 for c in characters):
            raise ValueError("every vocabulary entry must be a single character")
        if len(set(characters)) != len(characters):
            raise ValueError("the vocabulary has repeated characters")
        self.vocabulary: tuple[str, ...] = tuple(characters)
        self._ids = {character: index for index, character in enumerate(characters)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; a character outside the vocabulary is an error that names it."""
        try:
            return [self._ids[character] for character in text]
        except KeyError as error:
            unknown = sorted({c for c in text if c not in self._ids})
            raise ValueError(
                f"characters {unknown!r} are not in this tokenizer's vocabulary of "
                f"{self.vocab_size}; use only characters from the training text"
            ) from error

    def decode(self, ids: Iterable[int]) -> str:
        """The text of token ids (a list, or a 1-D tensor)."""
        out = []
        for token in ids:
            index = int(token)
            if not 0 <= index < self.vocab_size:
                raise ValueError(f"token id {index} is outside [0, {self.vocab_size})")
            out.append(self.vocabulary[index])
        return "".join(out)

    def to_dict(self) -> dict:
        return {"type": "char", "vocabulary": "".join(self.vocabulary)}

    @classmethod
    def from_dict(cls, state: dict) -> CharTokenizer:
        if state.get("type") != "char" or not isinstance(state.get("vocabulary"), str):
            raise ValueError(
                "not a saved CharTokenizer: expected {'type': 'char', 'vocabulary': str}"
            )
        return cls(state["vocabulary"])

    def save(self, path: str | Path) -> Path:
        """Write the tokenizer as JSON, atomically (a temporary file, then a rename)."""
        return files.write_text(path, json.dumps(self.to_dict(), ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharTokenizer) and self.vocabulary == other.vocabulary

    def __hash__(self) -> int:
        return hash(self.vocabulary)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def train_val_ids(
    text: str, tokenizer: CharTokenizer, train_fraction: float = 0.9
) -> tuple[list[int], list[int]]:
    """Encode ``text`` and split it into a first part for training and the rest for validation.

    The split is contiguous (the first 90% of the text trains, the last 10% validates), so no
    validation character is ever seen inside a training context: the language-model lessons
    (02, 08, 09) all use this split.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be strictly between 0 and 1, got {train_fraction}")
    ids = tokenizer.encode(text)
    cut = int(train_fraction * len(ids))
    return ids[:cut], ids[cut:]
