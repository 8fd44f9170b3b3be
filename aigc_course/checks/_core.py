"""The machinery of the exercise checks: cases, comparison, verdicts.

See the package docstring for what a learner sees.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from aigc_course.i18n import _


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
    rtol: float | None = None
    atol: float | None = None
    mistakes: Mapping[str, Any] = field(default_factory=dict)
    reference: Callable | None = None
    gradients: bool | str = False


def draw_int(generator: torch.Generator, low: int, high: int) -> int:
    """A whole number in ``[low, high]``, both ends included."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def draw_choice(generator: torch.Generator, options: Sequence) -> Any:
    """One of ``options``."""
    return options[draw_int(generator, 0, len(options) - 1)]


def draw_dtype(generator: torch.Generator) -> torch.dtype:
    """float32 or float64: a check accepts either, each with its own tolerance."""
    return draw_choice(generator, (torch.float32, torch.float64))


def draw_shape(
    generator: torch.Generator, min_dims: int, max_dims: int, low: int = 1, high: int = 5
) -> tuple[int, ...]:
    """A shape of ``min_dims`` to ``max_dims`` dimensions, each of size ``low`` to ``high``."""
    return tuple(
        draw_int(generator, low, high) for _ in range(draw_int(generator, min_dims, max_dims))
    )


def randn(
    generator: torch.Generator, *shape: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Standard normal numbers of ``shape`` and ``dtype`` from ``generator``."""
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float64).to(dtype)


def _input_dtypes(args: Sequence, kwargs: Mapping) -> list[torch.dtype]:
    """The dtypes of the floating-point tensors in the arguments and in their attributes."""
    found = []
    for value in (*args, *kwargs.values()):
        candidates = [value, *getattr(value, "__dict__", {}).values()]
        found += [
            c.dtype for c in candidates if isinstance(c, torch.Tensor) and c.is_floating_point()
        ]
    return found


@dataclass
class Draws:
    """Inputs drawn per call: the property half of a check (COURSE.md, rule 1).

    ``draw(generator)`` returns ``(description, args, kwargs)``: one valid input, drawn from the
    seeded generator (sizes, shapes, parameter values and dtypes vary from draw to draw).
    ``reference(*args, **kwargs)`` gives the answer; ``mistakes(*args, **kwargs)`` (optional) the
    named mistakes' results on that input, so that a failure on a drawn input still names the
    nearest known mistake. With ``gradients``, the gradient of the learner's result with respect
    to every floating-point tensor argument is compared with the reference's too; with
    ``gradients="simplex"`` (inputs that are probability vectors) only their components along the
    simplex are (a correct answer that normalises its input first differs off it).

    The tolerance is that of the least precise floating-point tensor in the inputs (a float32
    noise schedule limits a float64 image's step to float32's precision).
    """

    draw: Callable[[torch.Generator], tuple[str, tuple, dict]]
    reference: Callable
    count: int = 6
    gradients: bool | str = False
    mistakes: Callable[..., Mapping[str, Any]] | None = None
    seed: int = 2026

    def cases(self, seed: int | None = None) -> list[Case]:
        """``count`` cases drawn from a generator seeded with ``seed`` (default: the check's)."""
        generator = torch.Generator().manual_seed(self.seed if seed is None else seed)
        drawn = []
        for _draw in range(self.count):
            description, args, kwargs = self.draw(generator)
            with torch.no_grad():
                expected = self.reference(*copy.deepcopy(args), **kwargs)
                mistakes = self.mistakes(*args, **kwargs) if self.mistakes else {}
            rtol, atol = tolerance(*_input_dtypes(args, kwargs))
            drawn.append(
                Case(
                    _("a drawn input: {description}").format(description=description),
                    args,
                    expected,
                    kwargs=kwargs,
                    rtol=rtol,
                    atol=atol,
                    mistakes=mistakes,
                    reference=self.reference,
                    gradients=self.gradients,
                )
            )
        return drawn


#: (rtol, atol) for a result of each precision: the one rule every check compares with.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-7, 1e-9),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (2e-2, 1e-2),
}


def tolerance(*dtypes: Any) -> tuple[float, float]:
    """(rtol, atol) for comparing values of these dtypes: that of the least precise one.

    Accepts torch dtypes, NumPy dtypes and Python types; Python floats count as float64, anything
    that is not floating point as exact (float64's tolerance)."""
    found = []
    for dtype in dtypes:
        if isinstance(dtype, torch.dtype):
            found.append(dtype)
            continue
        name = getattr(dtype, "name", None) or getattr(dtype, "__name__", str(dtype))
        found.append({"float32": torch.float32, "float16": torch.float16}.get(name, torch.float64))
    floating = [d for d in found if d in TOLERANCES]
    if not floating:
        return TOLERANCES[torch.float64]
    return max((TOLERANCES[d] for d in floating), key=lambda pair: pair[0])


def describe_numbers(expected: float, got: float) -> tuple[str, str]:
    """The two numbers printed with enough digits to show that they differ."""
    for digits in (4, 6, 8, 10, 12, 14, 17):
        a, b = f"{expected:.{digits}g}", f"{got:.{digits}g}"
        if a != b:
            return a, b
    return repr(expected), repr(got)


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
    bad = ~(torch.isfinite(got) | (got == expected))
    first = tuple(bad.nonzero()[0].tolist())
    kinds = _(" and ").join(
        kind
        for kind, present in (("NaN", got[bad].isnan().any()), ("inf", got[bad].isinf().any()))
        if present
    )
    return _(
        "the result contains NaN or inf: {count} of {total} entries are {kinds}, the first at "
        "index {first} ({value}, expected {expected_value})"
    ).format(
        count=int(bad.sum()),
        total=got.numel(),
        kinds=kinds,
        first=first,
        value=got[first].item(),
        expected_value=f"{expected[first].item():.4g}",
    ) + _expected_got(expected, got)


def _expected_got(expected: Any, got: Any) -> str:
    """The two lines under a wrong value: what was expected, what came back."""
    return (
        "\n   "
        + _("expected: {value}").format(value=_short(expected))
        + "\n   "
        + _("got:      {value}").format(value=_short(got))
    )


def compare_tensor(
    got: Any, expected: torch.Tensor, rtol: float | None = None, atol: float | None = None
) -> str | None:
    """``None`` when ``got`` equals ``expected`` within tolerance, else what differs.

    Without ``rtol``/``atol`` the tolerance is that of the less precise of the two dtypes."""
    if not isinstance(got, torch.Tensor):
        return _("expected a torch.Tensor, got {type}").format(type=type(got).__name__)
    if rtol is None or atol is None:
        rtol, atol = tolerance(got.dtype, expected.dtype)
    if got.shape != expected.shape:
        return _("wrong shape: expected {expected}, got {got}").format(
            expected=tuple(expected.shape), got=tuple(got.shape)
        )
    if got.is_floating_point() != expected.is_floating_point():
        return _("wrong dtype: expected {expected}, got {got}").format(
            expected=expected.dtype, got=got.dtype
        )
    if got.dtype == torch.float64 and expected.dtype in (
        torch.float32,
        torch.float16,
        torch.bfloat16,
    ):
        # A float64 constant or NumPy value in the computation promotes the result; the models run
        # in float32 (or lower), where float64 would double the memory and, on a GPU, be far slower.
        return _(
            "wrong dtype: expected {expected}, got float64; a float64 tensor or NumPy "
            "value in the computation promotes the result: keep it out"
        ).format(expected=expected.dtype)
    got_cpu = got.detach().cpu().to(expected.dtype)
    if (
        expected.is_floating_point()
        and not (
            torch.isfinite(got_cpu)
            | (got_cpu == expected)  # an expected inf (a masked logit) is fine
        ).all()
    ):
        return _non_finite(got_cpu, expected)
    if not expected.is_floating_point():
        if not torch.equal(got_cpu, expected):
            wrong = (got_cpu != expected).sum().item()
            return _("wrong value ({wrong} of {total} entries differ)").format(
                wrong=wrong, total=expected.numel()
            ) + _expected_got(expected, got_cpu)
        return None
    if not torch.allclose(got_cpu, expected, rtol=rtol, atol=atol):
        difference = (got_cpu - expected).abs()
        worst = (
            tuple(int(i) for i in torch.unravel_index(difference.argmax(), difference.shape))
            if difference.ndim
            else ()
        )
        want, have = describe_numbers(expected[worst].item(), got_cpu[worst].item())
        where = _(" at index {index}").format(index=worst) if worst else ""
        return _(
            "wrong value (largest difference {difference}{where}: expected {want}, got {have})"
        ).format(
            difference=f"{difference.max().item():.3g}", where=where, want=want, have=have
        ) + _expected_got(expected, got_cpu)
    return None


def compare_result(got: Any, expected: Any, inputs: Any = torch.float32) -> str | None:
    """``None`` when ``got`` is ``expected``, else what differs: tensors with the tolerance of their
    dtypes, numbers with that of their precision (``inputs``: the inputs' dtype), tuples element by
    element, anything else (strings, ints in a list) exactly."""
    if isinstance(expected, torch.Tensor):
        return compare_tensor(got, expected)
    if isinstance(expected, tuple | list):
        if not isinstance(got, tuple | list) or len(got) != len(expected):
            return _("expected a {type} of {length}, got {got}").format(
                type=type(expected).__name__, length=len(expected), got=_short(got)
            )
        for index, (g, e) in enumerate(zip(got, expected, strict=True)):
            problem = compare_result(g, e, inputs)
            if problem is not None:
                return _("item {index} of the result: {problem}").format(
                    index=index, problem=problem
                )
        return None
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        return number_verdict(float(expected), {}, _("the result"), inputs)(got)
    if got != expected:
        return _("wrong value: expected {want}, got {have}").format(
            want=_short(expected), have=_short(got)
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
    return matching[0] if len(matching) == 1 else _("either ") + _("; or ").join(matching)


def _changed_inputs(before: Sequence, after: Sequence) -> bool:
    return any(
        isinstance(a, torch.Tensor) and not torch.equal(a, b)
        for a, b in zip(before, after, strict=True)
    )


def _not_implemented(name: str) -> bool:
    print(
        _(
            "⏳ {name}: not implemented yet. Replace `raise NotImplementedError` in the "
            "exercise cell with your code, run that cell, then run this check again."
        ).format(name=name)
    )
    return False


def strict_by_default() -> bool:
    """True when ``AIGC_CHECKS_STRICT`` asks failed checks to raise (the test suite sets it)."""
    from aigc_course import settings

    return settings.switch("AIGC_CHECKS_STRICT")


def _floating_tensors(args: Sequence) -> list[int]:
    return [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.is_floating_point()]


def _as_outputs(result: Any) -> list[torch.Tensor]:
    """The floating-point tensors of a result: a tensor, or a tuple / list of them."""
    items = result if isinstance(result, tuple | list) else (result,)
    return [r for r in items if isinstance(r, torch.Tensor) and r.is_floating_point()]


def _argument_names(function: Callable, count: int) -> list[str]:
    try:
        names = [
            p.name
            for p in inspect.signature(function).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        names = []
    named = [f"`{n}`" for n in names]
    return named + [_("argument {number}").format(number=i + 1) for i in range(len(names), count)]


def _gradients(
    function: Callable, args: Sequence, kwargs: Mapping, upstream_seed: int
) -> tuple[list[torch.Tensor | None], list[torch.Tensor]]:
    """d(sum(result * g))/d(each floating-point argument), with g drawn from ``upstream_seed``."""
    args = [copy.deepcopy(a) for a in args]
    leaves = []
    for i in _floating_tensors(args):
        args[i] = args[i].detach().clone().requires_grad_(True)
        leaves.append(args[i])
    with torch.enable_grad():
        outputs = _as_outputs(function(*args, **kwargs))
        generator = torch.Generator().manual_seed(upstream_seed)
        connected = [o for o in outputs if o.requires_grad]
        if not connected:
            return [None] * len(leaves), outputs
        total = sum(
            (o * torch.randn(o.shape, generator=generator, dtype=o.dtype)).sum() for o in connected
        )
        grads = torch.autograd.grad(total, leaves, allow_unused=True)
    return list(grads), outputs


def gradient_problem(
    function: Callable,
    reference: Callable,
    args: Sequence,
    kwargs: Mapping,
    on_simplex: bool = False,
    tolerances: tuple[float, float] | None = None,
) -> str | None:
    """``None`` when the gradients of ``function``'s result with respect to its floating-point
    tensor arguments equal ``reference``'s (for one random upstream gradient), else which one is
    missing or wrong. ``on_simplex``: the inputs are probability vectors along the last axis, and
    only the gradients' components along the simplex (their mean over that axis removed) must
    agree: an answer that normalises its input first is right and differs off the simplex."""
    want = _gradients(reference, args, kwargs, upstream_seed=7)[0]
    try:
        got, outputs = _gradients(function, args, kwargs, upstream_seed=7)
    except Exception as error:
        return _(
            "the values are right, but the function fails when its inputs require gradients "
            "({error}): NumPy, `.item()` or an in-place change cannot follow gradients; compute "
            "it with torch operations"
        ).format(error=f"{type(error).__name__}: {str(error).splitlines()[0]}")
    names = _argument_names(function, len(args))
    floating = _floating_tensors(args)
    if outputs and not any(o.requires_grad for o in outputs) and any(w is not None for w in want):
        return _(
            "the result is cut from the autograd graph: no gradient flows back to the inputs "
            "(a `.detach()`, `torch.no_grad()`, `.item()`, `.data` or a NumPy step in between); "
            "compute it with differentiable torch operations"
        )
    for index, g, w in zip(floating, got, want, strict=True):
        rtol, atol = tolerances or tolerance(*(t.dtype for t in (g, w) if t is not None))
        if w is None or not bool(w.abs().max() > atol):
            continue
        if g is None or not bool(g.abs().max() > 0 or on_simplex):
            return _(
                "no gradient reaches {name}: that input is cut from the autograd graph "
                "(a `.detach()`, `torch.no_grad()` or a constant in its place)"
            ).format(name=names[index])
        if on_simplex:  # only the gradient along the simplex is defined by the exercise
            g, w = g - g.mean(-1, keepdim=True), w - w.mean(-1, keepdim=True)
        if g.shape != w.shape or not torch.allclose(g.to(w.dtype), w, rtol=rtol, atol=atol):
            return _(
                "the values are right but the gradient with respect to {name} is "
                "wrong: part of the computation is detached, or done in a way autograd "
                "cannot follow"
            ).format(name=names[index])
    return None


def module_gradient_problem(
    layer: torch.nn.Module, reference: torch.nn.Module, x: torch.Tensor, parts: Sequence[str]
) -> str | None:
    """``None`` when ``layer`` (holding ``reference``'s weights) back-propagates like it: the
    gradients with respect to the input ``x`` and to the parameters of each sub-module named in
    ``parts`` (for one random upstream gradient); else which one is missing or wrong."""

    def gradients(module: torch.nn.Module) -> dict[str, torch.Tensor | None]:
        leaf = x.detach().clone().requires_grad_(True)
        named = {}
        for part in parts:
            found = getattr(module, part)
            pairs = [("", found)] if isinstance(found, torch.Tensor) else found.named_parameters()
            named.update({f"`{part}{'.' if n else ''}{n}`": p for n, p in pairs if p.requires_grad})
        with torch.enable_grad():
            out = module(leaf)
            if not isinstance(out, torch.Tensor) or not out.requires_grad:
                return {_("the input `x`"): None, **dict.fromkeys(named)}
            upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(11))
            found = torch.autograd.grad(
                (out * upstream.to(out.dtype)).sum(),
                [leaf, *named.values()],
                allow_unused=True,
            )
        return dict(zip([_("the input `x`"), *named], found, strict=True))

    want, got = gradients(reference), gradients(layer)
    for name, expected in want.items():
        found = got.get(name)
        if expected is None:
            continue
        if found is None or not bool(found.abs().sum() > 0):
            return _(
                "no gradient reaches {name}: part of the layer is cut from the autograd graph "
                "(a `.detach()`, `torch.no_grad()` or `.data`), so training would not update it"
            ).format(name=name)
        if not torch.allclose(found, expected, rtol=1e-4, atol=1e-5):
            return _(
                "the output is right but the gradient with respect to {name} is wrong: part of "
                "the computation is detached or done in place"
            ).format(name=name)
    return None


def run_check(
    name: str,
    function: Any,
    cases: Sequence[Case],
    hint: str,
    strict: bool | None = None,
    draws: Draws | None = None,
) -> bool:
    """Run ``function`` on every case, then on the inputs ``draws`` draws; print one verdict.

    ``True`` when all passed. ``strict`` (default: ``$AIGC_CHECKS_STRICT``) raises
    :class:`CheckFailed` after a wrong answer.
    """
    strict = strict_by_default() if strict is None else strict

    def _report(message: str, hint: str | None) -> bool:
        print(f"❌ {name}: {message}")
        if hint:
            print("   " + _("hint: {hint}").format(hint=hint))
        if strict:
            raise CheckFailed(f"{name}: {message}")
        return False

    if not callable(function):
        return _report(
            _("expected a function, got {type}").format(type=type(function).__name__), hint
        )
    cases = list(cases) + (draws.cases() if draws is not None else [])
    for case in cases:
        rtol, atol = case.rtol, case.atol
        if rtol is None or atol is None:
            rtol, atol = tolerance(
                *(v.dtype for v in (case.expected,) if isinstance(v, torch.Tensor))
            )
        args = copy.deepcopy(case.args)
        try:
            got = function(*args, **case.kwargs)
        except NotImplementedError:
            return _not_implemented(name)
        except Exception as error:  # the learner's code may raise anything: report, never crash
            return _report(
                _("raised {error} (on {case})").format(
                    error=f"{type(error).__name__}: {error}", case=case.description
                ),
                case.hint or hint,
            )
        if _changed_inputs(case.args, args):
            return _report(
                _("changed its input in place (on {case}); return a new tensor").format(
                    case=case.description
                ),
                _("avoid in-place operations such as `x -= ...` or `x.exp_()` on the arguments"),
            )
        try:
            if callable(case.expected):
                problem = case.expected(got)
            else:
                problem = (
                    compare_tensor(got, case.expected, case.rtol, case.atol)
                    if isinstance(case.expected, torch.Tensor)
                    else compare_result(got, case.expected)
                )
            mistake = (
                recognise_mistake(got, case.mistakes, rtol, atol) if problem is not None else None
            )
            if problem is None and case.gradients and case.reference is not None:
                problem = gradient_problem(
                    function,
                    case.reference,
                    case.args,
                    case.kwargs,
                    on_simplex=case.gradients == "simplex",
                    tolerances=(rtol, atol),
                )
            if mistake is not None:  # name the mistake; keep the expected / got lines
                problem = mistake + "".join(f"\n{line}" for line in problem.split("\n")[1:])
        except NotImplementedError:  # e.g. a learner's class whose methods are still exercises
            return _not_implemented(name)
        except Exception as error:  # a result so unexpected that comparing it fails
            problem = _("returned something the check cannot compare ({error})").format(
                error=f"{type(error).__name__}: {error}"
            )
        if problem is not None:
            headline, _newline, details = problem.partition("\n")
            message = _("{problem} (on {case})").format(problem=headline, case=case.description) + (
                f"\n{details}" if details else ""
            )
            return _report(message, case.hint or hint)
    passed = _("passed (1 case)") if len(cases) == 1 else _("passed ({count} cases)")
    print(f"✅ {name}: " + passed.format(count=len(cases)))
    return True


def as_number(value: Any) -> float | None:
    """A returned number as a float, None if it is not one.

    Python ints and floats, NumPy scalars and one-element arrays, and one-element tensors (0-dim
    or not) are all numbers; a bool is not."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.detach().cpu().item()
    elif hasattr(value, "dtype") and hasattr(value, "item") and getattr(value, "size", 0) == 1:
        value = value.item()  # a NumPy scalar or one-element array
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def number_dtype(value: Any) -> Any:
    """The precision a returned number was computed in (a Python float counts as float64)."""
    return getattr(value, "dtype", type(value))


def number_verdict(
    expected: float,
    mistakes: Mapping[str, Any],
    what: str,
    inputs: Any = torch.float32,
    scale: float = 1.0,
) -> Callable[[Any], str | None]:
    """A :class:`Case` ``expected`` for an exercise that returns one number: ``None`` when it is
    ``expected`` within the tolerance of its precision, else the named mistake it matches or the
    two values.

    ``inputs`` is the dtype of the exercise's inputs: an answer computed from float32 inputs and
    returned as a Python float still carries float32's rounding, so it gets float32's tolerance.
    ``scale`` is the size of the numbers the answer is computed from (the absolute tolerance
    grows with it: a difference of large numbers that should be 0 keeps their rounding)."""

    def verdict(got: Any) -> str | None:
        value = as_number(got)
        if value is None:
            return _("return {what} as one number (a float), got {type}").format(
                what=what, type=type(got).__name__
            )
        rtol, atol = tolerance(number_dtype(got), inputs)
        if math.isclose(value, expected, rel_tol=rtol, abs_tol=atol * scale):
            return None
        mistake = recognise_mistake(value, mistakes, rtol, atol * scale)
        want, have = describe_numbers(expected, value)
        return mistake or _("wrong value: expected {want}, got {have}").format(want=want, have=have)

    return verdict


def pair_verdict(
    expected: tuple[float, float], mistakes: Mapping[str, Any], names: str = "precision, recall"
) -> Callable[[Any], str | None]:
    """The same for an exercise that returns a pair of numbers, e.g. ``(precision, recall)``."""

    def verdict(got: Any) -> str | None:
        if not isinstance(got, tuple | list) or len(got) != 2:
            return _("return a pair ({names}), got {type}").format(
                names=names, type=type(got).__name__
            )
        values = tuple(as_number(v) for v in got)
        if None in values:
            return _("return {names} as two numbers (floats)").format(names=names)
        rtol, atol = tolerance(*(number_dtype(v) for v in got), torch.float32)
        if all(
            math.isclose(v, e, rel_tol=rtol, abs_tol=atol)
            for v, e in zip(values, expected, strict=True)
        ):
            return None
        mistake = recognise_mistake(values, mistakes, rtol, atol)
        shown = [describe_numbers(e, v) for e, v in zip(expected, values, strict=True)]
        return mistake or _(
            "wrong value: expected ({names}) = ({want_first}, {want_second}), "
            "got ({have_first}, {have_second})"
        ).format(
            names=names,
            want_first=shown[0][0],
            want_second=shown[1][0],
            have_first=shown[0][1],
            have_second=shown[1][1],
        )

    return verdict
