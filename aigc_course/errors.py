"""The course's own errors: each says what is wrong and how to fix it, so a user never needs a traceback.

Every error the course raises on purpose (a setting out of range, data not found, a checkpoint of the
wrong model, a loss that became NaN) is a :class:`CourseError`. The ``aigc-course`` command prints one
as ``error: <message>`` and exits with status 2; in a notebook, :func:`install_notebook_handler` shows it
as that one message instead of a page of traceback. An error that is *not* a ``CourseError`` is a bug
of the course and keeps its traceback. ``AIGC_DEBUG=1`` shows the traceback of every error.

The subclasses also derive from the built-in exception they used to be (``ValueError``,
``RuntimeError``), so code that catches those keeps working.
"""

from __future__ import annotations

import sys

from aigc_course.i18n import _


class CourseError(Exception):
    """An error the course raises on purpose; its message says what is wrong and how to fix it."""


class SettingError(CourseError, ValueError):
    """A setting (a command-line option, a recipe or config field, an argument) is out of range,
    or is not one the course knows."""


def debug_enabled() -> bool:
    """True when ``AIGC_DEBUG`` asks for full tracebacks (a switch: see :mod:`aigc_course.settings`)."""
    from aigc_course import settings  # it builds on this module's errors

    return settings.switch("AIGC_DEBUG")


def one_line(error: BaseException) -> str:
    """How the course shows its own error: ``error: <message>``."""
    return _("error: {message}").format(message=error)


_WARNED: set[str] = set()


def warn(message: str) -> None:
    """Tell the user about something that worked around a problem, as one line on stderr:
    ``warning: <message>``, once per message in a process (not Python's two-line ``UserWarning``
    with a source line, repeated for every file a command opens)."""
    if message in _WARNED:
        return
    _WARNED.add(message)
    print(_("warning: {message}").format(message=message), file=sys.stderr, flush=True)


def install_notebook_handler() -> bool:
    """In IPython/Jupyter, show a :class:`CourseError` as its message alone (no traceback).

    The cell still fails (execution stops, as with any error; nbval and "Run All" see the failure);
    only the display changes. Does nothing outside IPython or when ``AIGC_DEBUG`` is set. Returns
    whether the handler is installed.
    """
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return False
    try:
        if debug_enabled():
            return False
    except SettingError as error:  # importing the package must not fail over it: say so, go on
        warn(_("{error}; the course's errors show as one line").format(error=error))

    def show(shell, error_type, error, traceback, tb_offset=None):
        lines = [
            f"{error_type.__name__}: {error}",
            _(
                "(the course's own error: its message says the fix; AIGC_DEBUG=1 shows the "
                "traceback)"
            ),
        ]
        shell._showtraceback(error_type, error, lines)  # IPython's display of an error (a kernel's
        return lines  # "error" message); the cell still counts as failed

    shell.set_custom_exc((CourseError,), show)
    return True
