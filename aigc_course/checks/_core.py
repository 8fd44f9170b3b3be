"""The machinery of the exercise checks: cases, comparison, verdicts.

See the package docstring for what a learner sees.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


class CheckFailed(AssertionError):
    """Raised after a failed check when ``AIGC_CHECKS_STRICT=1``."""


@dataclass
class Case:
    """One known input and the answer it must give.

    ``expected`` is a tensor (compared with a tolerance) or a function of the learner's result
    that returns ``None`` when it is right and a description of the problem otherwise.

    ``mistakes`` names the classic wrong answers of the exercise: a description of the mistake
    (what is wrong and how to fix it) -> the result that mistake gives on this case (a tensor, a
    number, or a tuple of them; a list holds the results of variants of one mistake). A wrong
    result that matches one is reported with that description instead of a bare "wrong value",
    so that the learner reads *what* is wrong.
    """

    description: str
    args: tuple
    expected: Any
    hint: str | None = None
    kwargs: dict = field(default_factory=dict)
    rtol: float = 1e-5
    atol: float = 1e-6
    mistakes: Mapping[str, Any] = field(default_factory=dict)


def _short(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        with torch.no_grad():
            text = repr(value.detach().cpu())
    else:
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= 160 else text[:157] + "..."


def _non_finite(got: torch.Tensor, expected: torch.Tensor) -> str:
    """Where a result holds NaN or inf: how many entries, the first one, and what belongs there."""
    bad = ~torch.isfinite(got)
    first = tuple(bad.nonzero()[0].tolist())
    kinds = " and ".join(
        kind
        for kind, present in (("NaN", got.isnan().any()), ("inf", got.isinf().any()))
        if present
    )
    return (
        f"the result contains NaN or inf: {int(bad.sum())} of {got.numel()} entries are {kinds}, "
        f"the first at "
        f"index {first} ({got[first].item()}, expected {expected[first].item():.4g})\n"
        f"   expected: {_short(expected)}\n"
        f"   got:      {_short(got)}"
    )


def compare_tensor(got: Any, expected: torch.Tensor, rtol: float, atol: float) -> str | None:
    """``None`` when ``got`` equals ``expected`` within tolerance, else what differs."""
    if not isinstance(got, torch.Tensor):
        return f"expected a torch.Tensor, got {type(got).__name__}"
    if got.shape != expected.shape:
        return f"wrong shape: expected {tuple(expected.shape)}, got {tuple(got.shape)}"
    if got.is_floating_point() != expected.is_floating_point():
        return f"wrong dtype: expected {expected.dtype}, got {got.dtype}"
    if got.dtype == torch.float64 and expected.dtype in (
        torch.float32,
        torch.float16,
        torch.bfloat16,
    ):
        # A float64 constant or NumPy value in the computation promotes the result; the models run
        # in float32 (or lower), where float64 would double the memory and, on a GPU, be far slower.
        return (
            f"wrong dtype: expected {expected.dtype}, got float64; a float64 tensor or NumPy "
            "value in the computation promotes the result: keep it out"
        )
    got_cpu = got.detach().cpu().to(expected.dtype)
    if expected.is_floating_point() and not torch.isfinite(got_cpu).all():
        return _non_finite(got_cpu, expected)
    if not expected.is_floating_point():
        if not torch.equal(got_cpu, expected):
            wrong = (got_cpu != expected).sum().item()
            return (
                f"wrong value ({wrong} of {expected.numel()} entries differ)\n"
                f"   expected: {_short(expected)}\n"
                f"   got:      {_short(got_cpu)}"
            )
        return None
    if not torch.allclose(got_cpu, expected, rtol=rtol, atol=atol):
        difference = (got_cpu - expected).abs().max().item()
        return (
            f"wrong value (largest difference {difference:.3g})\n"
            f"   expected: {_short(expected)}\n"
            f"   got:      {_short(got_cpu)}"
        )
    return None


def _matches(got: Any, value: Any, rtol: float, atol: float) -> bool:
    """True when ``got`` is, within tolerance, the (wrong) result ``value``; NaN matches NaN.

    A tuple must match element by element; a list lists alternatives (any one may match)."""
    if isinstance(value, list):
        return any(_matches(got, alternative, rtol, atol) for alternative in value)
    if isinstance(value, tuple):
        return (
            isinstance(got, tuple)
            and len(got) == len(value)
            and all(_matches(g, v, rtol, atol) for g, v in zip(got, value, strict=True))
        )
    if isinstance(value, torch.Tensor):
        if not isinstance(got, torch.Tensor) or got.shape != value.shape:
            return False
        got = got.detach().cpu()
        if not value.is_floating_point():
            return got.dtype == value.dtype and torch.equal(got, value)
        if not got.is_floating_point():
            return False
        return torch.allclose(got.to(value.dtype), value, rtol=rtol, atol=atol, equal_nan=True)
    if isinstance(value, int | float):
        number = as_number(got)
        if number is None:
            return False
        if math.isnan(value) or math.isnan(number):
            return math.isnan(value) and math.isnan(number)
        return math.isclose(number, value, rel_tol=rtol, abs_tol=atol)
    return False


def recognise_mistake(
    got: Any, mistakes: Mapping[str, Any], rtol: float = 1e-5, atol: float = 1e-6
) -> str | None:
    """The description of the known mistake whose result ``got`` matches, else ``None``.

    Where a case cannot tell two mistakes apart (both give this result), both are named."""
    matching = [
        description for description, value in mistakes.items() if _matches(got, value, rtol, atol)
    ]
    if not matching:
        return None
    return matching[0] if len(matching) == 1 else "either " + "; or ".join(matching)


def _changed_inputs(before: Sequence, after: Sequence) -> bool:
    return any(
        isinstance(a, torch.Tensor) and not torch.equal(a, b)
        for a, b in zip(before, after, strict=True)
    )


def _not_implemented(name: str) -> bool:
    print(
        f"⏳ {name}: not implemented yet. Replace `raise NotImplementedError` in the "
        "exercise cell with your code, run that cell, then run this check again."
    )
    return False


def strict_by_default() -> bool:
    """True when ``AIGC_CHECKS_STRICT`` asks failed checks to raise (the test suite sets it)."""
    return os.environ.get("AIGC_CHECKS_STRICT", "").strip().lower() in {"1", "true", "yes"}


def run_check(
    name: str, function: Any, cases: Sequence[Case], hint: str, strict: bool | None = None
) -> bool:
    """Run ``function`` on every case; print one verdict; ``True`` when all passed.

    ``strict`` (default: ``$AIGC_CHECKS_STRICT``) raises :class:`CheckFailed` after a wrong answer.
    """
    strict = strict_by_default() if strict is None else strict

    def _report(message: str, hint: str | None) -> bool:
        print(f"❌ {name}: {message}")
        if hint:
            print(f"   hint: {hint}")
        if strict:
            raise CheckFailed(f"{name}: {message}")
        return False

    if not callable(function):
        return _report(f"expected a function, got {type(function).__name__}", hint)
    for case in cases:
        args = copy.deepcopy(case.args)
        try:
            got = function(*args, **case.kwargs)
        except NotImplementedError:
            return _not_implemented(name)
        except Exception as error:  # the learner's code may raise anything: report, never crash
            return _report(
                f"raised {type(error).__name__}: {error} (on {case.description})",
                case.hint or hint,
            )
        if _changed_inputs(case.args, args):
            return _report(
                f"changed its input in place (on {case.description}); return a new tensor",
                "avoid in-place operations such as `x -= ...` or `x.exp_()` on the arguments",
            )
        try:
            if callable(case.expected):
                problem = case.expected(got)
            else:
                problem = compare_tensor(got, case.expected, case.rtol, case.atol)
            mistake = (
                recognise_mistake(got, case.mistakes, case.rtol, case.atol)
                if problem is not None
                else None
            )
            if mistake is not None:  # name the mistake; keep the expected / got lines
                problem = mistake + "".join(f"\n{line}" for line in problem.split("\n")[1:])
        except NotImplementedError:  # e.g. a learner's class whose methods are still exercises
            return _not_implemented(name)
        except Exception as error:  # a result so unexpected that comparing it fails
            problem = (
                f"returned something the check cannot compare ({type(error).__name__}: {error})"
            )
        if problem is not None:
            headline, _, details = problem.partition("\n")
            message = f"{headline} (on {case.description})" + (f"\n{details}" if details else "")
            return _report(message, case.hint or hint)
    print(f"✅ {name}: passed ({len(cases)} case{'' if len(cases) == 1 else 's'})")
    return True


def as_number(value: Any) -> float | None:
    """A returned number (a float, an int or a one-element tensor) as a float; None if it is not."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def number_verdict(
    expected: float, mistakes: Mapping[str, Any], what: str, rtol: float = 1e-6
) -> Callable[[Any], str | None]:
    """A :class:`Case` ``expected`` for an exercise that returns one number: ``None`` when it is
    ``expected`` (within ``rtol``), else the named mistake it matches or the two values."""

    def verdict(got: Any) -> str | None:
        value = as_number(got)
        if value is None:
            return f"return {what} as one number (a float), got {type(got).__name__}"
        if math.isclose(value, expected, rel_tol=rtol, abs_tol=1e-9):
            return None
        mistake = recognise_mistake(value, mistakes, rtol, 1e-9)
        return mistake or f"wrong value: expected {expected:.6g}, got {value:.6g}"

    return verdict


def pair_verdict(
    expected: tuple[float, float], mistakes: Mapping[str, Any], names: str = "precision, recall"
) -> Callable[[Any], str | None]:
    """The same for an exercise that returns a pair of numbers, e.g. ``(precision, recall)``."""

    def verdict(got: Any) -> str | None:
        if not isinstance(got, tuple | list) or len(got) != 2:
            return f"return a pair ({names}), got {type(got).__name__}"
        values = tuple(as_number(v) for v in got)
        if None in values:
            return f"return {names} as two numbers (floats)"
        if all(math.isclose(v, e, abs_tol=1e-9) for v, e in zip(values, expected, strict=True)):
            return None
        mistake = recognise_mistake(values, mistakes, 1e-9, 1e-9)
        return mistake or (
            f"wrong value: expected ({names}) = ({expected[0]:.4f}, {expected[1]:.4f}), "
            f"got ({values[0]:.4f}, {values[1]:.4f})"
        )

    return verdict
