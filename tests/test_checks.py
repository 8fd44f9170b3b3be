"""Every path of an exercise check: passed, not implemented, wrong, exception, strict mode."""

from __future__ import annotations

import pytest
import torch

from aigc_course import checks


def reference(logits, dim=-1):
    shifted = logits - logits.amax(dim=dim, keepdim=True)
    return shifted.exp() / shifted.exp().sum(dim=dim, keepdim=True)


def literal(logits, dim=-1):
    return logits.exp() / logits.exp().sum(dim=dim, keepdim=True)


def not_implemented(logits, dim=-1):
    raise NotImplementedError("Exercise: replace this line with your code.")


def crashes(logits, dim=-1):
    raise IndexError("dimension out of range")


def wrong_dim(logits, dim=-1):
    return reference(logits, dim=0) if logits.ndim > 1 else reference(logits)


def in_place(logits, dim=-1):
    logits -= logits.amax(dim=dim, keepdim=True)
    return logits.exp() / logits.exp().sum(dim=dim, keepdim=True)


def as_list(logits, dim=-1):
    return reference(logits, dim).tolist()


def reduces(logits, dim=-1):
    return reference(logits, dim).sum(dim)


def off_by_a_bit(logits, dim=-1):
    return reference(logits, dim) * 0.9


@pytest.mark.parametrize(
    "function, verdict, words",
    [
        (reference, "✅", ["passed (13 cases)"]),
        (not_implemented, "⏳", ["not implemented yet", "raise NotImplementedError"]),
        (literal, "❌", ["NaN or inf", "large logits", "hint:", "subtract"]),
        (crashes, "❌", ["raised IndexError: dimension out of range"]),
        (wrong_dim, "❌", ["the softmax runs along the wrong dimension", "expected:", "got:"]),
        (off_by_a_bit, "❌", ["wrong value", "expected:", "got:", "largest difference"]),
        (in_place, "❌", ["changed its input in place"]),
        (as_list, "❌", ["expected a torch.Tensor, got list"]),
        (reduces, "❌", ["wrong shape: expected (3,), got ()"]),
        ("softmax", "❌", ["expected a function, got str"]),
    ],
)
def test_verdicts(capsys, function, verdict, words):
    passed = checks.stable_softmax(function, strict=False)
    out = capsys.readouterr().out
    assert passed is (verdict == "✅")
    assert out.startswith(f"{verdict} stable_softmax: ")
    for word in words:
        assert word in out, (word, out)
    assert "Traceback" not in out


def test_strict_mode_raises_on_wrong_answers_only(capsys, monkeypatch):
    with pytest.raises(checks.CheckFailed, match="NaN or inf"):
        checks.stable_softmax(literal, strict=True)
    assert "❌" in capsys.readouterr().out
    assert checks.stable_softmax(not_implemented, strict=True) is False
    monkeypatch.setenv("AIGC_CHECKS_STRICT", "1")
    with pytest.raises(checks.CheckFailed):
        checks.stable_softmax(crashes)
    monkeypatch.setenv("AIGC_CHECKS_STRICT", "0")
    assert checks.stable_softmax(crashes) is False


def test_compare_tensor_tolerances_and_dtypes():
    expected = torch.tensor([1.0, 2.0])
    assert checks.compare_tensor(expected + 1e-7, expected, 1e-5, 1e-6) is None
    assert "wrong value" in checks.compare_tensor(expected + 1e-2, expected, 1e-5, 1e-6)
    assert "wrong dtype" in checks.compare_tensor(torch.tensor([1, 2]), expected, 1e-5, 1e-6)


def test_a_result_the_check_cannot_compare_is_reported_not_raised(capsys):
    def expected(got):
        return got.no_such_attribute  # the comparison itself fails on this result

    case = checks.Case("anything", (1,), expected)
    assert checks.run_check("demo", lambda x: x, [case], "hint", strict=False) is False
    out = capsys.readouterr().out
    assert "returned something the check cannot compare (AttributeError" in out
    assert "Traceback" not in out


def test_boolean_results_are_compared_exactly():
    mask = torch.ones(3, 3, dtype=torch.bool).tril()
    assert checks.compare_tensor(mask.clone(), mask, 0, 0) is None
    wrong = mask.clone()
    wrong[0, 1] = True
    assert "1 of 9 entries differ" in checks.compare_tensor(wrong, mask, 0, 0)


def test_a_known_mistake_is_named_instead_of_a_bare_wrong_value(capsys):
    x = torch.tensor([1.0, -2.0])
    case = checks.Case("x", (x,), x.abs(), mistakes={"the sign: take the absolute value": x})
    assert checks.run_check("demo", lambda t: t.clone(), [case], "hint", strict=False) is False
    out = capsys.readouterr().out
    assert out.startswith("❌ demo: the sign: take the absolute value (on x)")
    assert "expected:" in out and "got:" in out and "wrong value" not in out
    assert checks.run_check("demo", lambda t: -t, [case], "hint", strict=False) is False
    assert "wrong value" in capsys.readouterr().out  # not a known mistake: the plain verdict


def test_recognise_mistake_matches_tensors_numbers_tuples_lists_and_nan():
    from aigc_course.checks._core import recognise_mistake

    nan = torch.tensor([float("nan"), 1.0])
    mistakes = {
        "a tensor with a NaN": nan,
        "a number": 2.5,
        "a tuple": (torch.tensor(1.0), torch.tensor(2.0)),
        "one of a list": [torch.zeros(2), torch.ones(3)],
    }
    assert recognise_mistake(nan.clone(), mistakes) == "a tensor with a NaN"
    assert recognise_mistake(torch.tensor(2.5), mistakes) == "a number"
    assert recognise_mistake(2.5, mistakes) == "a number"
    assert recognise_mistake((torch.tensor(1.0), torch.tensor(2.0)), mistakes) == "a tuple"
    assert recognise_mistake(torch.ones(3), mistakes) == "one of a list"
    assert recognise_mistake(torch.ones(2), mistakes) is None  # shape (2,) is not the list's (3,)
    assert recognise_mistake(torch.tensor([1, 1]), {"floats only": torch.ones(2)}) is None
    both = {"first": torch.ones(2), "second": torch.ones(2)}
    assert recognise_mistake(torch.ones(2), both) == "either first; or second"
