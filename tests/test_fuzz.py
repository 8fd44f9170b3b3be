"""Past parsing: every command with extreme but valid values, under a memory limit and a clock.

Option parsing is tested on its own (tests/test_bad_input.py); here the values pass it, and the
run must then either work or stop with the course's one-line ``error:``, never a traceback, a hang,
or a failure without a word. Each case runs ``aigc_course.cli.main`` in this process (no 3-second
``import torch`` per case) with the address space capped a few GiB above what the process already
uses (``resource.setrlimit``: an allocation beyond it fails as it would on a small machine) and a
wall-clock alarm. The cases are derived from the parser: every numeric option of every ``train``
model at its smallest and at an extreme, plus ``generate``'s sampling extremes.
"""

from __future__ import annotations

import resource
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from aigc_course import cli
from tests.helpers import require_data

SECONDS_PER_CASE = 30
EXTRA_ADDRESS_SPACE = 3 * 2**30  # a small machine's worth, above what pytest already holds

#: ``train`` cases: what must happen ("ok": it trains; "error": a one-line refusal), the model and
#: its extreme options (each runs one step of the smoke profile, or a budget of a nanosecond).
TRAIN_CASES = [
    ("ok", "vae", "--latent-dim", "1"),
    ("error", "vae", "--latent-dim", "1000000000000"),  # the allocator refuses: what to lower
    ("ok", "vae", "--beta", "1e-300"),
    ("error", "vae", "--beta", "1e300"),  # the loss overflows: says so, names --beta
    ("ok", "vae", "--batch-size", "1"),
    ("error", "vae", "--batch-size", "60000"),  # more than the training images
    ("error", "gpt", "--batch-size", "100000000"),  # memory
    ("ok", "gpt", "--minutes", "1e-9"),  # one step, whatever the budget
    ("ok", "gan", "--batch-size", "2"),
    ("ok", "gan", "--conditional", "--minutes", "1e-9"),
    ("error", "diffusion", "--diffusion-steps", "1"),  # a diffusion needs two
    ("ok", "diffusion", "--schedule", "cosine", "--diffusion-steps", "2"),
    ("error", "diffusion", "--diffusion-steps", "1000000000000"),  # memory
    ("error", "diffusion", "--sampling-steps", "1000000000"),  # more than the diffusion's steps
    ("error", "finetune", "--rank", "1000000000"),  # not a low-rank update
    ("ok", "finetune", "--rank", "1", "--targets", "mlp"),
    ("error", "finetune", "--alpha", "1e300"),  # the loss overflows
    ("ok", "classifier", "--batch-size", "1"),
]

GENERATE_CASES = [
    ("--temperature", "1e-300"),
    ("--temperature", "1e300"),
    ("--top-p", "1e-300"),
    ("--top-k", "1000000000"),
    ("--seed", str(2**64 - 1)),
    ("--tokens", "1"),
]


class Hang(Exception):
    pass


@contextmanager
def limits(seconds: int, extra_bytes: int):
    """Cap this process's address space at its current size plus ``extra_bytes`` and raise
    :class:`Hang` after ``seconds``; both are restored afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    used = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    cap = used + extra_bytes if hard == resource.RLIM_INFINITY else min(used + extra_bytes, hard)

    def alarm(signum, frame):
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.signal(signal.SIGALRM, previous)


def run_limited(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    with limits(SECONDS_PER_CASE, EXTRA_ADDRESS_SPACE):
        status = cli.main(argv)  # a traceback or a Hang fails the test here
    return status, capsys.readouterr().err


def assert_worked_or_said_why(status: int, err: str) -> None:
    assert "Traceback" not in err, err
    if status != 0:
        lines = err.strip().splitlines()
        assert lines and lines[-1].startswith("error: "), (status, err)


@pytest.fixture
def shell(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("AIGC_DEBUG", raising=False)
    if sys.platform != "linux":
        pytest.skip("the address-space limit is Linux's")
    return tmp_path


@pytest.mark.parametrize("case", TRAIN_CASES, ids=[" ".join(c) for c in TRAIN_CASES])
def test_train_with_extreme_values_works_or_says_why(case, shell, capsys):
    expected, model, *options = case
    require_data("tinyshakespeare" if model in ("gpt", "finetune") else "fashion-mnist")
    argv = ["train", model, "--profile", "smoke", "--quiet", "--out", str(shell / "out")]
    if "--minutes" not in options:
        argv += ["--steps", "1"]
    status, err = run_limited(argv + options, capsys)
    assert_worked_or_said_why(status, err)
    assert (status == 0) == (expected == "ok"), err
    assert "Traceback" not in err and (status != 2 or len(err.strip().splitlines()) == 1), err


@pytest.mark.parametrize("case", GENERATE_CASES, ids=[" ".join(c) for c in GENERATE_CASES])
def test_generate_with_extreme_values_works_or_says_why(case, shell, capsys):
    status, err = run_limited(["generate", "gpt", "ROMEO:", "--tokens", "20", *case], capsys)
    assert_worked_or_said_why(status, err)
    assert status == 0, err  # every one of these is a valid request
