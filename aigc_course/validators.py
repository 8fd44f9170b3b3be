"""What a user types, checked in one place: the command's options and the benchmarks' options.

Each function takes the text of an option and returns its value, or raises
``argparse.ArgumentTypeError`` with what was expected (argparse turns it into the course's one-line
``error: argument --NAME: expected ..., got ...``). Numbers must be finite. No PyTorch here: the
command checks its options before it loads it. The environment variables are checked by
:mod:`aigc_course.settings`.
"""

from __future__ import annotations

import argparse
import math
import re


def _number(text: str, kind: type, lowest: float, inclusive: bool, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    too_low = value < lowest if inclusive else value <= lowest
    if too_low or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def count(text: str) -> int:
    """An option that counts something (steps, tokens, images): a whole number of at least 1."""
    return _number(text, int, 1, True, "a whole number of at least 1")


def seed(text: str) -> int:
    """A random seed: a whole number PyTorch's generators take, 0 to 2**64 - 1."""
    value = _number(text, int, 0, True, "a whole number from 0 to 2**64 - 1")
    if value >= 2**64:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 0 to 2**64 - 1 (a 64-bit seed), got {text!r}"
        )
    return value


def non_negative_float(text: str) -> float:
    return _number(text, float, 0.0, True, "a number of 0 or more")


def positive_float(text: str) -> float:
    return _number(text, float, 0.0, False, "a number above 0")


def probability_mass(text: str) -> float:
    """A top-p nucleus: a number in (0, 1]."""
    value = _number(text, float, 0.0, False, "a number in (0, 1]")
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def speaker_name(text: str) -> str:
    """A speaker of the play script as it writes them: letters first, then letters, spaces,
    apostrophes, dots or hyphens ("PETRUCHIO", "First Citizen")."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z .'-]{0,39}", text.strip()):
        raise argparse.ArgumentTypeError(
            f"expected a speaker's name as the script writes it (e.g. PETRUCHIO), got {text!r}"
        )
    return text.strip()
