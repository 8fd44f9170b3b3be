"""What a user types, checked in one place: the command's options and the benchmarks' options.

Each function takes the text of an option and returns its value, or raises
``argparse.ArgumentTypeError`` with what was expected (argparse turns it into the course's one-line
``error: argument --NAME: expected ..., got ...``). Numbers must be finite. No PyTorch here: the
command checks its options before it loads it. The environment variables are checked by
:mod:`aigc_course.settings`.

A recipe setting that ``aigc-course train MODEL`` may change is declared where the setting lives, with
:func:`setting` (its default, help and check as field metadata); the command reads its options from
the recipe (:func:`aigc_course.training.command_options`), so there is no second table to keep in step.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
from collections.abc import Callable
from typing import Any

from aigc_course.errors import SettingError
from aigc_course.i18n import _


def _number(text: str, kind: type, lowest: float, inclusive: bool, expected: str):
    """``text`` as a ``kind`` of at least (or, not ``inclusive``, above) ``lowest``; otherwise the
    message ``expected`` (a translated ``"expected ..., got {given}"``)."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(expected.format(given=repr(text))) from None
    too_low = value < lowest if inclusive else value <= lowest
    if too_low or not math.isfinite(value):
        raise argparse.ArgumentTypeError(expected.format(given=repr(text)))
    return value


def count(text: str) -> int:
    """An option that counts something (steps, tokens, images): a whole number of at least 1."""
    return _number(text, int, 1, True, _("expected a whole number of at least 1, got {given}"))


def seed(text: str) -> int:
    """A random seed: a whole number PyTorch's generators take, 0 to 2**64 - 1."""
    value = _number(
        text, int, 0, True, _("expected a whole number from 0 to 2**64 - 1, got {given}")
    )
    if value >= 2**64:
        raise argparse.ArgumentTypeError(
            _("expected a whole number from 0 to 2**64 - 1 (a 64-bit seed), got {given}").format(
                given=repr(text)
            )
        )
    return value


def non_negative_float(text: str) -> float:
    return _number(text, float, 0.0, True, _("expected a number of 0 or more, got {given}"))


def positive_float(text: str) -> float:
    return _number(text, float, 0.0, False, _("expected a number above 0, got {given}"))


def probability_mass(text: str) -> float:
    """A top-p nucleus: a number in (0, 1]."""
    expected = _("expected a number in (0, 1], got {given}")
    value = _number(text, float, 0.0, False, expected)
    if value > 1:
        raise argparse.ArgumentTypeError(expected.format(given=repr(text)))
    return value


def speaker_name(text: str) -> str:
    """A speaker of the play script as it writes them: letters first, then letters, spaces,
    apostrophes, dots or hyphens ("PETRUCHIO", "First Citizen")."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z .'-]{0,39}", text.strip()):
        raise argparse.ArgumentTypeError(
            _(
                "expected a speaker's name as the script writes it (e.g. PETRUCHIO), got {given}"
            ).format(given=repr(text))
        )
    return text.strip()


@dataclasses.dataclass(frozen=True)
class CommandOption:
    """How ``aigc-course train MODEL`` exposes one recipe setting: ``--flag`` (default: the field's
    name with dashes) checked by ``parse`` (one of the functions above), or one of ``choices``, or a
    switch that sets the field to ``switch``. ``names_checkpoint``: the option picks which shipped
    checkpoint a run makes (the cGAN's), rather than changing the recipe of one. ``help`` is marked
    with ``N_`` where the setting is declared and shown translated (``_(option.help)``)."""

    help: str
    parse: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    flag: str | None = None
    switch: Any = None
    names_checkpoint: bool = False

    def flag_for(self, name: str) -> str:
        return self.flag or "--" + name.replace("_", "-")

    def sizes_the_run(self) -> bool:
        """A number that sizes the model, the batch or the schedule (named when memory runs out)."""
        return self.parse in (count, positive_float)


def setting(default: Any, help: str, parse: Callable[[str], Any] | None = None, **how: Any) -> Any:
    """A dataclass field that ``aigc-course train`` offers as an option: ``latent_dim: int =
    setting(16, N_("size of z"), count)`` gives ``--latent-dim N`` (checked by :func:`count`)."""
    return dataclasses.field(
        default=default, metadata={"option": CommandOption(help, parse, **how)}
    )


def check_choices(config: Any) -> None:
    """Raise :class:`~aigc_course.errors.SettingError` where a field of the dataclass ``config``
    declared with ``setting(..., choices=...)`` holds a value outside them. The command line checks
    these itself; a recipe calls this in ``__post_init__`` for the same settings given in Python
    (which ``dataclasses.replace`` runs too)."""
    for setting_field in dataclasses.fields(config):
        option = setting_field.metadata.get("option")
        value = getattr(config, setting_field.name)
        if option is not None and option.choices is not None and value not in option.choices:
            raise SettingError(
                _("{name} must be one of {choices}, got {value}").format(
                    name=setting_field.name, choices=", ".join(option.choices), value=repr(value)
                )
            )
