"""Every mechanical mutant of a reference solution that changes its answer is rejected by its check.

See ``tests/mutants.py`` for the mutation operators and the probe that tells an equivalent mutant
from a hole. ``python -m tests.mutants`` prints the score of every check.

The probe needs a check's input generator (``check.draws``). Checks whose exercise is a class or
changes a model's state (a training step) have none: their surviving mutants were read one by one
and each is equivalent to the solution for the reason given here. A new survivor fails the test
until it is killed or reasoned about in this table.
"""

from __future__ import annotations

import pytest

from tests.mutants import (
    EQUIVALENT_BY_HAND,
    Exercise,
    Outcome,
    exercises,
    mutation_outcome,
    reasoned,
)

_OUTCOMES: dict[tuple[str, str], Outcome] = {}


def outcome_of(exercise: Exercise) -> Outcome:
    """Each check's mutants are run once per process: both tests below read the same outcome (the
    file's tests share a worker, ``--dist loadfile``). Read-only: callers do not change it."""
    key = (exercise.notebook, exercise.check)  # an Exercise is not hashable
    if key not in _OUTCOMES:
        _OUTCOMES[key] = mutation_outcome(exercise)
    return _OUTCOMES[key]


@pytest.mark.parametrize(
    "exercise", exercises(), ids=[f"{e.notebook[:2]}-{e.check}" for e in exercises()]
)
def test_every_mutant_that_changes_the_answer_is_rejected(exercise):
    outcome = outcome_of(exercise)
    assert outcome.killed, "no mutant was made: the solution's markers were not found"
    holes = [
        f"{m.operator} on line {m.line}: {m.source}"
        for m in outcome.holes
        if not reasoned(exercise.check, m.operator, m.source)
    ]
    assert holes == [], f"{exercise.check} passes mutants that change its answer:\n" + "\n".join(
        holes
    )


def test_the_hand_list_names_only_mutants_that_exist():
    """A stale entry would hide nothing today but could hide a hole later: keep the list exact."""
    survivors = {
        (e.check, m.operator, m.source)
        for e in exercises()
        if e.check in {c for c, _, _ in EQUIVALENT_BY_HAND}
        for m in outcome_of(e).holes
    }
    unused = [
        key
        for key in EQUIVALENT_BY_HAND
        if not any(c == key[0] and o == key[1] and key[2] in s for c, o, s in survivors)
    ]
    assert unused == []
