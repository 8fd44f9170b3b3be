"""Tiny Shakespeare, 唐诗三百首, and the character tokenizer of the language-model lessons."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aigc_course import files
from aigc_course.data.sources import TANG_POEMS, TINY_SHAKESPEARE, locate


def load_tiny_shakespeare() -> str:
    """The Tiny Shakespeare corpus (1,115,394 characters), verified by its sha256."""
    return locate(TINY_SHAKESPEARE, "input.txt").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Poem:
    """One poem of a fortune file: its title (《…》), its author, and its lines."""

    title: str
    author: str
    text: str

    def __str__(self) -> str:
        return f"{self.title}\n作者：{self.author}\n{self.text}"


_TERMINAL_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def parse_poems(raw: str) -> list[Poem]:
    """The poems of a ``fortunes-zh`` file: entries separated by ``%`` lines, each a title line
    (``《感遇・其一》``), an author line (``作者：张九龄``) and the poem; terminal colour codes
    are removed. An entry without a title and an author line is skipped."""
    poems = []
    for entry in re.split(r"^%$", _TERMINAL_ESCAPE.sub("", raw), flags=re.MULTILINE):
        lines = entry.strip("\n").split("\n")
        if len(lines) < 3 or not lines[0].startswith("《") or not lines[1].startswith("作者："):
            continue
        text = "\n".join(line.rstrip() for line in lines[2:]).strip("\n")
        poems.append(Poem(lines[0].strip(), lines[1][len("作者：") :].strip(), text))
    return poems


def load_tang_poems() -> list[Poem]:
    """唐诗三百首 from Debian's ``fortunes-zh`` (313 poems), verified by its sha256.

    An optional data set (GPL-3.0+): found on the system (``apt-get install fortunes-zh``) or in
    the cache, else downloaded; when neither works, :class:`~aigc_course.data.DataError` says how
    to get it."""
    raw = locate(TANG_POEMS, "tang300").read_text(encoding="utf-8")
    return parse_poems(raw)


def poems_corpus(poems: Iterable[Poem]) -> str:
    """One training text: each poem (title, author, lines), separated by blank lines."""
    return "\n\n".join(str(poem) for poem in poems) + "\n"


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


# --------------------------------------------------------------------------------------------
# Speeches: the play script's structure (lesson 09 fine-tunes on one speaker)
# --------------------------------------------------------------------------------------------

#: A speaker line: a name of letters, spaces, apostrophes, dots or hyphens, then a colon, alone on
#: its line ("ROMEO:", "First Citizen:", "KING RICHARD III:").
_SPEAKER_LINE = re.compile(r"[A-Za-z][A-Za-z .'-]{0,39}:")


@dataclass(frozen=True)
class Speech:
    """One speech of the script: who speaks, what they say, and where it is in the corpus.

    ``start`` is the index of the speaker line's first character and ``end`` the index just past
    the speech's last character, so ``corpus[start:end] == f"{speaker}:\\n{text}"``.
    """

    speaker: str
    text: str
    start: int
    end: int


def parse_speeches(corpus: str) -> list[Speech]:
    """The speeches of a play script, in order.

    Tiny Shakespeare is blocks of lines separated by blank lines; a block whose first line is a
    speaker line (``NAME:``) and that has at least one more line is a speech. Anything else (a
    block without a speaker line) is not a speech and is skipped.
    """
    speeches = []
    for block in re.finditer(r"[^\n](?:.|\n(?=[^\n]))*", corpus):
        first, _, rest = block.group().partition("\n")
        if rest and _SPEAKER_LINE.fullmatch(first):
            speeches.append(Speech(first[:-1], rest, block.start(), block.end()))
    return speeches


def speaker_counts(speeches: Iterable[Speech]) -> Counter[str]:
    """How many speeches each speaker has, most first (``.most_common()``)."""
    return Counter(speech.speaker for speech in speeches)


def split_speeches(speeches: Iterable[Speech], boundary: int) -> tuple[list[Speech], list[Speech]]:
    """The speeches wholly before character ``boundary`` and those wholly after it.

    With ``boundary`` the cut of :func:`train_val_ids` (``int(0.9 * len(corpus))``: one token per
    character), the first list is inside the text a model was trained on and the second inside
    the text it never saw. A speech that straddles the cut belongs to neither, so no held-out
    speech ever shares characters with training text.
    """
    speeches = list(speeches)
    before = [speech for speech in speeches if speech.end <= boundary]
    after = [speech for speech in speeches if speech.start >= boundary]
    return before, after
