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

from tests.mutants import exercises, mutation_outcome

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


def _reasoned(check: str, operator: str, source: str) -> bool:
    return any(
        check == c and operator == o and piece in source for c, o, piece in EQUIVALENT_BY_HAND
    )


@pytest.mark.parametrize(
    "exercise", exercises(), ids=[f"{e.notebook[:2]}-{e.check}" for e in exercises()]
)
def test_every_mutant_that_changes_the_answer_is_rejected(exercise):
    outcome = mutation_outcome(exercise)
    assert outcome.killed, "no mutant was made: the solution's markers were not found"
    holes = [
        f"{m.operator} on line {m.line}: {m.source}"
        for m in outcome.holes
        if not _reasoned(exercise.check, m.operator, m.source)
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
        for m in mutation_outcome(e).holes
    }
    unused = [
        key
        for key in EQUIVALENT_BY_HAND
        if not any(c == key[0] and o == key[1] and key[2] in s for c, o, s in survivors)
    ]
    assert unused == []
