"""Mechanical mutants of the reference solutions, and how the exercise checks treat them.

A catalogue of wrong answers proves only the mistakes its author thought of. Here the wrong
answers are made by a machine instead: every exercise's reference solution (the code between
``### BEGIN SOLUTION`` and ``### END SOLUTION`` in ``solutions/NN_*.ipynb``) is changed one
place at a time, the way ``mutmut`` does it:

- an arithmetic operator swapped (``+`` and ``-``, ``*`` and ``/``, ``**`` to ``*``, ``@`` to ``*``),
  or one operand of it dropped (a term, a factor);
- a minus sign dropped; a comparison flipped (``<`` and ``<=``, ``>`` and ``>=``, ``==`` and ``!=``);
- a constant changed (``c`` to ``c + 1``, to ``-c``, to ``2c``; ``True`` and ``False``);
- the first two arguments of a call swapped; a reduction or a mask swapped for its twin
  (``sum``/``mean``, ``amax``/``amin``, ``max``/``min``, ``tril``/``triu``, ``log`` to ``log2``);
- a tensor argument detached (``x`` to ``x.detach()``);
- a size read off the input (``x.size(i)``, ``x.shape[i]``, ``len(x)``) hard-coded to the value it
  has on the check's first input.

A mutant *survives* when the check passes it. A survivor is harmless only when it is equivalent
to the solution: it gives the same values and gradients on every valid input. The probe for
that is the check's own input generator (``check.draws``) run with other seeds; a survivor that
differs from the solution on a probe is a hole in the check. ``python -m tests.mutants`` prints
the mutation score of every check; ``tests/test_check_mutants.py`` fails on a hole.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import functools
import io
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import nbformat
import torch

from aigc_course import checks
from aigc_course.checks._core import compare_tensor, gradient_problem
from tests.helpers import ROOT, check_call

SWAPS = {
    ast.Add: [ast.Sub],
    ast.Sub: [ast.Add],
    ast.Mult: [ast.Div],
    ast.Div: [ast.Mult],
    ast.Pow: [ast.Mult],
    ast.FloorDiv: [ast.Div],
    ast.MatMult: [ast.Mult],
}
FLIPS = {
    ast.Lt: [ast.LtE, ast.Gt],
    ast.LtE: [ast.Lt],
    ast.Gt: [ast.GtE, ast.Lt],
    ast.GtE: [ast.Gt],
    ast.Eq: [ast.NotEq],
    ast.NotEq: [ast.Eq],
}
TWINS = {
    "sum": "mean",
    "mean": "sum",
    "amax": "amin",
    "amin": "amax",
    "max": "min",
    "min": "max",
    "tril": "triu",
    "triu": "tril",
    "log": "log2",
    "softmax": "log_softmax",
    "log_softmax": "softmax",
}
#: A mutant's run is stopped (a mutated loop that never ends: killed) after this many times the CPU
#: time of the check of the solution, and never before MIN_TIME_LIMIT_S: a fast check's solution
#: needs a few milliseconds, the slowest (a training step) under a second.
CPU_TIME_FACTOR = 20
MIN_TIME_LIMIT_S = 1.0


#: (check, operator, a piece of the mutated code) -> why the mutant computes the same thing.
EQUIVALENT_BY_HAND: dict[tuple[str, str, str], str] = {
    ("gan_training_step", "detach `z`", "fake = generator(z)"): "z is data; no gradient is taken",
    ("gan_training_step", "detach `real`", "discriminator(real)"): "the images are data",
    ("training_step", "detach `x`", "model(x, y)"): "token ids carry no gradient",
    ("training_step", "detach `y`", "model(x, y)"): "token ids carry no gradient",
    ("causal_self_attention", "detach `x`", "= x.shape"): "only the shape is read",
    ("causal_self_attention", "swap two arguments", "transpose(2, 1)"): "the same transpose",
    ("causal_self_attention", "negate a constant", "`-2`"): "dim -2 is dim 2 of a 4-D tensor",
    ("lora_linear", "constant + 1", "a=math.sqrt(5)"): "A's init: any small random start is right",
    ("lora_linear", "double a constant", "a=math.sqrt(5)"): "A's init: any small random start",
    ("continuation_loss", "drop a minus sign", "log_softmax(-1)"): "dim 1 is the last of 2",
    ("continuation_loss", "negate a constant", "log_softmax(-1)"): "dim -1 is dim 1 of 2",
    ("continuation_loss", "negate a constant", ".gather(1,"): "dim -1 is dim 1 of a 2-D tensor",
    ("continuation_loss", "detach `prompt`", "torch.cat"): "token ids carry no gradient",
    ("continuation_loss", "detach `continuation`", "continuation"): "token ids carry no gradient",
}


def reasoned(check: str, operator: str, source: str) -> bool:
    """True when a surviving mutant is one a person reasoned equivalent (``EQUIVALENT_BY_HAND``)."""
    return any(
        check == c and operator == o and piece in source for c, o, piece in EQUIVALENT_BY_HAND
    )


@dataclass
class Mutant:
    operator: str
    line: int
    source: str  # the mutated line(s), for the report


@dataclass
class Outcome:
    check: str
    killed: list[Mutant] = field(default_factory=list)
    equivalent: list[Mutant] = field(default_factory=list)
    holes: list[Mutant] = field(default_factory=list)

    @property
    def score(self) -> float:
        relevant = len(self.killed) + len(self.holes)
        return len(self.killed) / relevant if relevant else 1.0


# --- the solutions -------------------------------------------------------------------------------


def _check_call(source: str) -> tuple[str, str] | None:
    """(check name, argument source) of a ``check.NAME(argument)`` cell, else None."""
    call = check_call(source)
    return None if call is None else (call.func.attr, ast.unparse(call.args[0]))


@dataclass
class Exercise:
    notebook: str
    check: str
    argument: str  # the expression the check cell passes (a function or class name)
    cell: str  # the source of the solution cell that defines it
    prelude: list[str]  # every other code cell before it, run first


@functools.cache
def exercises() -> list[Exercise]:
    """Every check cell of the solutions with the solution cell it checks."""
    found = []
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        cells = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        for index, source in enumerate(cells):
            call = _check_call(source)
            if call is None:
                continue
            check, argument = call
            name = argument.split("(")[0].split(".")[0]
            defining = [
                i
                for i in range(index)
                if "### BEGIN SOLUTION" in cells[i]
                and any(
                    isinstance(n, ast.FunctionDef | ast.ClassDef) and n.name == name
                    for n in ast.parse(cells[i]).body
                )
            ]
            if not defining:
                continue
            cell = defining[-1]
            prelude = [
                c for i, c in enumerate(cells[:index]) if i != cell and _check_call(c) is None
            ]
            found.append(Exercise(path.name, check, argument, cells[cell], prelude))
    return found


@functools.cache
def _prelude_namespace(notebook: str, check: str) -> dict:
    exercise = next(e for e in exercises() if e.notebook == notebook and e.check == check)
    namespace: dict = {"__name__": "__solution__"}
    with contextlib.redirect_stdout(io.StringIO()):
        for source in exercise.prelude:
            exec(compile(source, notebook, "exec"), namespace)
    return namespace


def _namespace(exercise: Exercise) -> dict:
    return dict(_prelude_namespace(exercise.notebook, exercise.check))


def _solution_lines(cell: str) -> range:
    lines = cell.splitlines()
    begin = next(i for i, line in enumerate(lines) if "### BEGIN SOLUTION" in line)
    end = next(i for i, line in enumerate(lines) if "### END SOLUTION" in line)
    return range(begin + 2, end + 1)  # 1-based line numbers strictly between the markers


# --- the mutation operators ----------------------------------------------------------------------


def _is_size_read(node: ast.AST) -> bool:
    """``x.size(i)``, ``len(x)`` or ``x.shape[i]``."""
    if isinstance(node, ast.Call):
        function = node.func
        return (isinstance(function, ast.Attribute) and function.attr == "size") or (
            isinstance(function, ast.Name) and function.id == "len"
        )
    return (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "shape"
    )


def _size_positions(tree: ast.Module, lines: range) -> list[tuple[int, int]]:
    """The source positions of the solution's size reads, in order."""
    return sorted(
        (n.lineno, n.col_offset)
        for n in ast.walk(tree)
        if getattr(n, "lineno", 0) in lines and _is_size_read(n)
    )


class _Recorder(ast.NodeTransformer):
    """Wraps each size read to record the value it has the first time it runs."""

    def __init__(self, positions: list[tuple[int, int]]):
        self.index = {position: i for i, position in enumerate(positions)}

    def generic_visit(self, node: ast.AST) -> ast.AST:
        position = (getattr(node, "lineno", 0), getattr(node, "col_offset", 0))
        node = super().generic_visit(node)
        if isinstance(node, ast.expr) and _is_size_read(node) and position in self.index:
            return ast.Call(
                ast.Name("__record_size__", ast.Load()),
                [ast.Constant(self.index[position]), node],
                [],
            )
        return node


def _sizes(exercise: Exercise) -> dict[tuple[int, int], int]:
    """Source position of each size read -> its value the first time the check calls it."""
    tree = ast.parse(exercise.cell)
    positions = _size_positions(tree, _solution_lines(exercise.cell))
    tree = ast.fix_missing_locations(_Recorder(positions).visit(tree))
    seen: dict[int, object] = {}

    def record(index: int, value):
        seen.setdefault(index, value)
        return value

    namespace = _namespace(exercise)
    namespace["__record_size__"] = record
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(tree, exercise.notebook, "exec"), namespace)
            with _time_limit(60):  # the solution itself: a safety net only
                getattr(checks, exercise.check)(eval(exercise.argument, namespace), strict=False)
    except Exception:
        return {}
    return {p: seen[i] for i, p in enumerate(positions) if isinstance(seen.get(i), int)}


def _replacements(node: ast.AST, parents: dict) -> Iterator[tuple[str, ast.AST]]:
    """(operator, replacement node) for every mutation of ``node`` itself."""
    if isinstance(node, ast.BinOp):
        for new in SWAPS.get(type(node.op), []):
            yield (
                f"{type(node.op).__name__} -> {new.__name__}",
                ast.BinOp(node.left, new(), node.right),
            )
        if isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
            yield "drop the right operand", node.left
            yield "drop the left operand", node.right
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        yield "drop a minus sign", node.operand
    elif isinstance(node, ast.Compare) and len(node.ops) == 1:
        for new in FLIPS.get(type(node.ops[0]), []):
            yield (
                f"{type(node.ops[0]).__name__} -> {new.__name__}",
                ast.Compare(node.left, [new()], node.comparators),
            )
    elif isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool):
            yield "flip a boolean", ast.Constant(not value)
        elif isinstance(value, int | float) and not isinstance(
            parents.get(id(node)), ast.Subscript
        ):
            yield "constant + 1", ast.Constant(value + 1)
            if value:
                yield "negate a constant", ast.Constant(-value)
                yield "double a constant", ast.Constant(value * 2)
    elif isinstance(node, ast.Call):
        if len(node.args) >= 2 and not any(isinstance(a, ast.Starred) for a in node.args[:2]):
            swapped = [node.args[1], node.args[0], *node.args[2:]]
            yield "swap two arguments", ast.Call(node.func, swapped, node.keywords)
        function = node.func
        if isinstance(function, ast.Attribute) and function.attr in TWINS:
            twin = ast.Attribute(function.value, TWINS[function.attr], ast.Load())
            yield (
                f"{function.attr} -> {TWINS[function.attr]}",
                ast.Call(twin, node.args, node.keywords),
            )


def _mutants(exercise: Exercise) -> Iterator[tuple[Mutant, ast.Module]]:
    lines = _solution_lines(exercise.cell)
    tree = ast.parse(exercise.cell)
    function_args = {
        a.arg
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef)
        for a in n.args.args + n.args.kwonlyargs
    } - {"self"}
    parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    targets = [n for n in ast.walk(tree) if getattr(n, "lineno", 0) in lines]
    source_lines = exercise.cell.splitlines()
    sizes = _sizes(exercise)
    for index, target in enumerate(targets):
        replacements = list(_replacements(target, parents))
        if (
            isinstance(target, ast.Name)
            and isinstance(target.ctx, ast.Load)
            and target.id in function_args
        ):
            detached = ast.Call(ast.Attribute(target, "detach", ast.Load()), [], [])
            replacements.append((f"detach `{target.id}`", detached))
        position = (getattr(target, "lineno", 0), getattr(target, "col_offset", 0))
        if _is_size_read(target) and position in sizes:
            value = sizes[position]
            replacements.append(
                (f"hard-code `{ast.unparse(target)}` = {value}", ast.Constant(value))
            )
        for operator, replacement in replacements:
            change = f"`{ast.unparse(target)}` -> `{ast.unparse(replacement)}`"
            mutant = Mutant(
                operator, target.lineno, f"{change} in: {source_lines[target.lineno - 1].strip()}"
            )
            yield mutant, _replace(tree, index, targets, replacement)


def _replace(tree: ast.Module, index: int, targets: list, replacement: ast.AST) -> ast.Module:
    """A copy of ``tree`` with its ``index``-th target node replaced."""
    clone = copy.deepcopy(tree)
    lines = {getattr(t, "lineno", 0) for t in targets}
    clone_targets = [n for n in ast.walk(clone) if getattr(n, "lineno", 0) in lines]
    old = clone_targets[index]
    new = copy.deepcopy(replacement)
    for parent in ast.walk(clone):
        for name, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, name, ast.copy_location(new, old))
                return ast.fix_missing_locations(clone)
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if item is old:
                        value[i] = ast.copy_location(new, old)
                        return ast.fix_missing_locations(clone)
    raise AssertionError("target not found")


# --- running them --------------------------------------------------------------------------------


class _TimeUp(Exception):
    pass


def _limit_for(check: Callable, solution: Callable) -> float:
    """Seconds of CPU time a mutant may take for one check: see :data:`CPU_TIME_FACTOR`."""
    started = time.process_time()
    with _time_limit(60), contextlib.redirect_stdout(io.StringIO()):  # a safety net only
        assert check(solution, strict=False), f"{check.__name__} rejects its own solution"
    return max(MIN_TIME_LIMIT_S, CPU_TIME_FACTOR * (time.process_time() - started))


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Stop a mutant that runs for ``seconds`` of this process's CPU time (a mutated loop that
    never ends). CPU time, not wall time: on a busy machine (the test run's other workers, CI's
    two cores) a check that needs two seconds of CPU can take more than five of wall, and a
    wall-clock limit then called a surviving mutant killed."""

    def stop(*_):
        raise _TimeUp

    previous = signal.signal(signal.SIGPROF, stop)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def _load(exercise: Exercise, tree: ast.Module) -> Callable | None:
    namespace = _namespace(exercise)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(tree, exercise.notebook, "exec"), namespace)
        return eval(exercise.argument, namespace)
    except Exception:
        return None


def _differs_on_probes(
    check: Callable, solution: Callable, mutant: Callable, seconds: float
) -> bool:
    """True when ``mutant`` gives other values or gradients than ``solution`` on some input the
    check's generator draws with seeds the check itself does not use."""
    draws = getattr(check, "draws", None)
    if draws is None:
        return True  # no probe: every survivor counts as a hole until a person says otherwise
    solution, mutant = _seeded(solution), _seeded(mutant)
    for seed in (101, 202, 303):
        for case in draws.cases(seed=seed):
            try:
                with _time_limit(seconds), contextlib.redirect_stdout(io.StringIO()):
                    got = mutant(*copy.deepcopy(case.args), **case.kwargs)
                    if callable(case.expected):  # the exercise accepts several answers: ask it
                        if case.expected(got) is not None:
                            return True
                        continue
                    want = solution(*copy.deepcopy(case.args), **case.kwargs)
                    if _different(got, want):
                        return True
                    if draws.gradients and gradient_problem(
                        mutant,
                        solution,
                        case.args,
                        case.kwargs,
                        on_simplex=draws.gradients == "simplex",
                    ):
                        return True
            except Exception:
                return True
    return False


def _seeded(function: Callable) -> Callable:
    """``function`` run under one fixed seed each call, so that two random answers compare."""

    def seeded(*args, **kwargs):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return function(*args, **kwargs)

    return seeded


def _different(got, want) -> bool:
    if isinstance(want, tuple | list):
        return (
            not isinstance(got, tuple | list)
            or len(got) != len(want)
            or any(_different(g, w) for g, w in zip(got, want, strict=True))
        )
    if isinstance(want, torch.Tensor):
        return compare_tensor(got, want) is not None
    if isinstance(want, int | float):
        try:
            return abs(float(got) - float(want)) > 1e-6 * max(1.0, abs(float(want)))
        except (TypeError, ValueError):
            return True
    return got != want


def mutation_outcome(exercise: Exercise) -> Outcome:
    check = getattr(checks, exercise.check)
    solution = _load(exercise, ast.parse(exercise.cell))
    outcome = Outcome(exercise.check)
    seconds = _limit_for(check, solution)
    for mutant, tree in _mutants(exercise):
        function = _load(exercise, tree)
        if function is None:
            outcome.killed.append(mutant)  # the cell itself fails to run: the learner sees that
            continue
        try:
            with _time_limit(seconds), contextlib.redirect_stdout(io.StringIO()):
                passed = check(function, strict=False)
        except _TimeUp:
            passed = False
        if not passed:
            outcome.killed.append(mutant)
        elif _differs_on_probes(check, solution, function, seconds):
            outcome.holes.append(mutant)
        else:
            outcome.equivalent.append(mutant)
    return outcome


def main() -> None:
    torch.set_num_threads(1)
    rows = []
    wanted = [a for a in sys.argv[1:] if not a.startswith("-")]
    for exercise in exercises():
        if wanted and not any(w in (exercise.check, exercise.notebook[:2]) for w in wanted):
            continue
        outcome = mutation_outcome(exercise)
        by_hand = [m for m in outcome.holes if reasoned(exercise.check, m.operator, m.source)]
        outcome.holes = [m for m in outcome.holes if m not in by_hand]
        outcome.equivalent += by_hand
        rows.append(outcome)
        total = len(outcome.killed) + len(outcome.holes) + len(outcome.equivalent)
        print(
            f"{exercise.notebook[:2]} {exercise.check:32s} mutants {total:3d}  killed "
            f"{len(outcome.killed):3d}  equivalent {len(outcome.equivalent):2d}"
            f"{f' ({len(by_hand)} by hand)' if by_hand else '':13s}  holes "
            f"{len(outcome.holes):2d}  score {outcome.score:.0%}",
            flush=True,
        )
        for mutant in outcome.holes:
            print(f"      hole: {mutant.operator} on line {mutant.line}: {mutant.source}")
        if "-v" in sys.argv:
            for mutant in outcome.equivalent:
                print(f"      equivalent: {mutant.operator}: {mutant.source}")
    killed = sum(len(o.killed) for o in rows)
    holes = sum(len(o.holes) for o in rows)
    print(f"overall: {killed} killed, {holes} holes, score {killed / max(1, killed + holes):.1%}")


if __name__ == "__main__":
    main()
