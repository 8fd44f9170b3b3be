"""The language of what the course says: checks' feedback, its errors, lesson 00's report.

Messages are written in English in the code, marked for translation with :func:`_`::

    from aigc_course.i18n import _

    raise SettingError(_("{name} must be positive (got {value})").format(name=name, value=value))

and looked up, when they are shown, in the catalogue of the language that ``AIGC_LANG`` names
(``en`` or ``zh``; every notebook's set-up cell sets it, the Chinese edition's to ``zh``). The
catalogues are standard gettext files, kept with Babel:

    pybabel extract -F babel.cfg -k N_ -o aigc_course/locale/aigc_course.pot .
    pybabel update -i aigc_course/locale/aigc_course.pot -d aigc_course/locale -D aigc_course
    pybabel compile -d aigc_course/locale -D aigc_course

(``tests/test_i18n.py`` fails when a marked message has no Chinese entry or the compiled ``.mo``
is older than its ``.po``.) Python's own ``gettext`` reads the ``.mo`` at run time: Babel is
needed only to edit the catalogues. A message that has no entry is shown in English.
"""

from __future__ import annotations

import gettext
from functools import cache
from pathlib import Path

DOMAIN = "aigc_course"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("en", "zh")


def language() -> str:
    """The language messages are shown in: ``AIGC_LANG`` (``en`` or ``zh``), ``en`` when unset."""
    from aigc_course import settings  # its own messages are marked with N_ from here

    # Read raw, not through settings.choice: its error message is itself translated. An invalid
    # value shows messages in English; the commands' check of the settings reports it.
    value = (settings.raw("AIGC_LANG") or "en").lower()
    return value if value in LANGUAGES else "en"


@cache
def catalogue(language: str) -> gettext.NullTranslations:
    """The compiled catalogue of ``language`` (English: messages as written)."""
    if language == "en":
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[language], fallback=True)


def _(message: str) -> str:
    """``message`` in the current language (:func:`language`); English when it has no entry."""
    return catalogue(language()).gettext(message)


def N_(message: str) -> str:
    """Mark ``message`` for translation where it is defined (a table built at import time);
    :func:`_` translates it where it is shown: ``_(variable.help)``."""
    return message


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal: a CJK character (or a full-width sign) takes two."""
    return sum(
        2 if "\u2e80" <= character <= "\u9fff" or "\uff00" <= character else 1 for character in text
    )


def padded(text: str, columns: int) -> str:
    """``text`` followed by spaces up to ``columns`` display columns (none when it is wider): the
    labels of aligned reports, in English or Chinese."""
    return text + " " * max(0, columns - display_width(text))
