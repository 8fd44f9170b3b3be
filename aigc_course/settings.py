"""The environment variables the course reads, in one place: name, kind, allowed values, default, help.

Every ``AIGC_*`` variable is declared in :data:`VARIABLES` and read through the functions below,
which check it as the command line checks an option: a value the variable cannot take stops with
one line that names the variable, the value and what it accepts (:class:`RuntimeConfigError`).
Switches accept ``1``/``true``/``yes``/``on`` and ``0``/``false``/``no``/``off`` in any case; an
empty value is the same as an unset one. ``aigc-course doctor`` prints them all (:func:`report`).
The variables ``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...) are torchrun's and
are read by :mod:`aigc_course.distributed`.

No PyTorch here: the command reads these before it loads it.
"""

from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass
from pathlib import Path

from aigc_course import PROFILE_NAMES
from aigc_course.errors import SettingError
from aigc_course.i18n import N_, _


class RuntimeConfigError(SettingError):
    """A setting (usually an environment variable) asks for something this machine cannot do."""


ON = ("1", "true", "yes", "on")
OFF = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Variable:
    """One environment variable: its ``kind`` (``switch``, ``choice``, ``seconds``, ``path``,
    ``paths`` or ``device``), what it does, and what happens when it is unset."""

    name: str
    kind: str
    help: str
    unset: str
    choices: tuple[str, ...] = ()


#: The longest wait a collective may be given: a week (an infinite one would hang a run forever).
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600
DEFAULT_TIMEOUT_SECONDS = 300

VARIABLES: dict[str, Variable] = {
    v.name: v
    for v in (
        Variable(
            "AIGC_DEVICE",
            "device",
            N_("the device to compute on: cpu, cuda, cuda:N or mps"),
            N_("CUDA if present, else the CPU"),
        ),
        Variable(
            "AIGC_PROFILE",
            "choice",
            N_("the run profile of the lessons and commands"),
            N_("gpu on a CUDA GPU, cpu otherwise"),
            PROFILE_NAMES,
        ),
        Variable(
            "AIGC_COMPILE",
            "switch",
            N_("0 switches torch.compile off"),
            N_("compiled where it pays off (CUDA with Triton)"),
        ),
        Variable(
            "AIGC_COMPILE_MODE",
            "choice",
            N_(
                "torch.compile's mode where the course compiles: reduce-overhead replays CUDA graphs "
                "(fewer kernel launches: a small model's steps), max-autotune also tunes the kernels"
            ),
            N_("the recipe's mode (the gpu GPT's: reduce-overhead), else PyTorch's default"),
            ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
        ),
        Variable(
            "AIGC_LANG",
            "choice",
            N_(
                "the language of the checks' feedback, the course's errors and lesson 00's report "
                "(every notebook's set-up cell sets it: the Chinese edition's to zh)"
            ),
            N_("en"),
            ("en", "zh"),
        ),
        Variable(
            "AIGC_DATA_DIR",
            "path",
            N_("the data and checkpoint cache"),
            N_("the clone's data/ folder, else ~/.cache/aigc-course"),
        ),
        Variable(
            "AIGC_DATA_PATH",
            "paths",
            N_("more read-only data folders, separated by the system's path separator (: or ;)"),
            N_("none"),
        ),
        Variable("AIGC_OFFLINE", "switch", N_("1: never download"), N_("downloads allowed")),
        Variable(
            "AIGC_IGNORE_SYSTEM_DATA",
            "switch",
            N_("1: do not use system copies of the data (Debian's packages)"),
            N_("system copies used"),
        ),
        Variable(
            "AIGC_DIST_TIMEOUT",
            "seconds",
            N_("seconds a process of a data-parallel run waits for the others"),
            f"{DEFAULT_TIMEOUT_SECONDS}",
        ),
        Variable(
            "AIGC_DEBUG",
            "switch",
            N_("1: full tracebacks of the course's errors"),
            N_("one-line errors"),
        ),
        Variable(
            "AIGC_CHECKS_STRICT",
            "switch",
            N_("1: an exercise check also raises on a wrong answer (the test suite)"),
            N_("a check prints its verdict"),
        ),
    )
}


def raw(name: str) -> str | None:
    """The variable's value, stripped; None when it is unset or empty."""
    _declared(name)
    value = os.environ.get(name, "").strip()
    return value or None


def switch(name: str) -> bool:
    """An on/off variable: False when unset."""
    return parse_switch(name, raw(name))


def parse_switch(name: str, value: str | None) -> bool:
    """``value`` of the switch ``name`` (None or empty: off)."""
    value = (value or "").strip() or None
    if value is None or value.lower() in OFF:
        return False
    if value.lower() in ON:
        return True
    raise RuntimeConfigError(
        _(
            "{setting} is not a switch: use 1 or 0 (also true/false, yes/no, on/off), or unset "
            "it ({help})"
        ).format(setting=f"{name}={value!r}", help=_(VARIABLES[name].help))
    )


def choice(name: str) -> str | None:
    """One of the variable's choices (lower case), or None when unset."""
    value = raw(name)
    if value is None:
        return None
    options = VARIABLES[name].choices
    if value.lower() not in options:
        raise RuntimeConfigError(
            _(
                "{setting} is not one of {choices}: use one of them, or unset it to get the "
                "default ({default})"
            ).format(
                setting=f"{name}={value!r}",
                choices=", ".join(options),
                default=_(VARIABLES[name].unset),
            )
        )
    return value.lower()


def seconds(name: str, default: float, maximum: float) -> float:
    """A duration above 0 and at most ``maximum`` seconds (``default`` when unset)."""
    value = raw(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0 < number <= maximum:  # also refuses inf and nan
        raise RuntimeConfigError(
            _(
                "{setting} must be a number of seconds above 0 and at most {maximum} "
                "(default {default})"
            ).format(setting=f"{name}={value!r}", maximum=f"{maximum:,.0f}", default=f"{default:g}")
        )
    return number


def path(name: str) -> Path | None:
    """A folder (``~`` expanded), or None when unset."""
    value = raw(name)
    return Path(value).expanduser() if value is not None else None


def paths(name: str) -> list[Path]:
    """Folders separated by the system's path separator (``:``, ``;`` on Windows)."""
    value = raw(name) or ""
    return [Path(part.strip()).expanduser() for part in value.split(os.pathsep) if part.strip()]


def dist_timeout() -> float:
    """How long a collective waits for the other ranks (``AIGC_DIST_TIMEOUT``, seconds)."""
    return seconds("AIGC_DIST_TIMEOUT", DEFAULT_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS)


def check(variable: Variable) -> None:
    """Read ``variable`` the way the course does: raises :class:`RuntimeConfigError` if invalid."""
    reader = {
        "switch": switch,
        "choice": choice,
        "seconds": lambda name: seconds(name, DEFAULT_TIMEOUT_SECONDS, MAX_TIMEOUT_SECONDS),
        "path": path,
        "paths": paths,
        "device": raw,  # a device name is checked by runtime.get_device (it needs PyTorch)
    }[variable.kind]
    reader(variable.name)


def report() -> list[str]:
    """One line per variable (its value, or what happens unset), invalid values marked, and a line
    for each ``AIGC_*`` variable the course does not read (a misspelling, probably)."""
    lines = []
    for variable in VARIABLES.values():
        value = raw(variable.name)
        try:
            check(variable)
            problem = ""
        except RuntimeConfigError as error:
            problem = "  " + _("INVALID: {error}").format(error=error)
        shown = (
            f"{value}"
            if value is not None
            else _("unset: {default}").format(default=_(variable.unset))
        )
        lines.append(f"{variable.name:<24} {shown}{problem}")
    for name in sorted(os.environ):
        if name.startswith("AIGC_") and name not in VARIABLES:
            close = difflib.get_close_matches(name, VARIABLES, n=1)
            hint = _(" (did you mean {name}?)").format(name=close[0]) if close else ""
            lines.append(f"{name:<24} " + _("not a variable the course reads") + hint)
    return lines


def invalid() -> list[str]:
    """The errors of the variables that are set to a value they cannot take."""
    problems = []
    for variable in VARIABLES.values():
        try:
            check(variable)
        except RuntimeConfigError as error:
            problems.append(str(error))
    return problems


def _declared(name: str) -> None:
    if name not in VARIABLES:
        raise KeyError(f"{name} is not declared in aigc_course.settings.VARIABLES")
