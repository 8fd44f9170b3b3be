"""Ctrl-C at any moment of a run: exit status 130, one message, nothing half-written.

A real process is interrupted at many moments of a short training run, from start-up (the heavy
imports) through training and the final evaluation to the save; each run must end with status 130
and the one "interrupted" message (no traceback, no "Exception ignored"), and leave in its output
folder either nothing or a complete checkpoint (no temporary file, no lock). In-process tests pin
the two cases that a timed signal hits only by chance: Ctrl-C during the final evaluation keeps the
trained weights, and one inside a save lets the save finish.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aigc_course import checkpoints, cli, interrupts
from aigc_course.trainers import gpt as gpt_trainer
from tests.helpers import ROOT, require_data

RUN = ["train", "gpt", "--profile", "smoke", "--steps", "30", "--quiet"]


def start(out: Path, cache: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "aigc_course.cli", *RUN, "--out", str(out)],
        cwd=out.parent,
        env={**os.environ, "AIGC_DATA_DIR": str(cache), "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell's background job (or a pytest worker) inherits SIGINT ignored; a user's
        # terminal does not. Give the command the default, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def seconds_to_handler() -> float:
    """How long a new process takes to reach the course's first instruction (the handler is
    installed as soon as ``aigc_course.cli`` starts to run): Python's start-up and the loading of
    ``aigc_course.cli``'s code (the second of two runs: the first compiles it if need be)."""
    for _ in range(2):
        began = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import aigc_course.interrupts, aigc_course.cli"],
            check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    return time.perf_counter() - began


def in_python_alone(stderr: str) -> bool:
    """A KeyboardInterrupt whose traceback runs through Python's own frozen modules only (runpy,
    importlib): ``-m`` was still finding or compiling the module, none of whose code had run."""
    frames = [line.strip() for line in stderr.splitlines() if line.strip().startswith('File "')]
    ends = stderr.rstrip().endswith("KeyboardInterrupt")
    return ends and bool(frames) and all(frame.startswith('File "<frozen ') for frame in frames)


def assert_nothing_half_written(out: Path) -> list[Path]:
    """The output folder holds nothing, or complete checkpoints that load; returns them."""
    found = sorted(out.iterdir()) if out.exists() else []
    leftovers = [path.name for path in found if path.suffix != ".safetensors"]
    assert not leftovers, f"left behind: {leftovers}"
    for path in found:
        checkpoints.load(path)  # a half-written file would not read back
    return found


def test_ctrl_c_at_any_moment_ends_the_run_cleanly(tmp_path):
    require_data("tinyshakespeare")
    cache = tmp_path / "cache"
    cache.mkdir()
    began = time.perf_counter()
    whole = start(tmp_path / "whole", cache)
    stdout, stderr = whole.communicate(timeout=300)
    duration = time.perf_counter() - began
    assert whole.returncode == 0, stderr
    # Geometric moments from the handler's installation to the end of the run: dense where the
    # imports are, then through training, the evaluation and the save. The start-up is timed on a
    # busy machine too (CI's other workers): a margin keeps the first moment after it.
    # On a fast machine that start-up is a few hundredths of a second, less than the jitter of
    # starting a process beside busy workers: the absolute part of the margin is for that.
    earliest = 1.5 * seconds_to_handler() + 0.1
    moments = [earliest * (duration / earliest) ** (i / 7) for i in range(8)]
    outcomes = []
    for index, moment in enumerate(moments):
        out = tmp_path / f"run{index}"
        process = start(out, cache)
        time.sleep(moment)
        if process.poll() is not None:  # already finished: nothing to interrupt
            process.communicate()
            outcomes.append((moment, "finished first"))
            continue
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
        context = f"SIGINT at {moment:.2f} s: status {process.returncode}\n{stderr}"
        if "Fatal Python error: init_import_site" in stderr or in_python_alone(stderr):
            # Still inside Python's own start-up (its `site` module, or `-m` finding and compiling
            # the module to run), before any code of the course, or of any program, runs: the
            # interpreter's answer, not the course's.
            outcomes.append((moment, "during Python's start-up"))
            continue
        if process.returncode == 0:  # it came as the finished command was exiting
            assert "sha256" in stdout and not stderr, context
            assert_nothing_half_written(out)
            outcomes.append((moment, "finished first"))
            continue
        assert process.returncode == 130, context
        assert "Traceback" not in stderr and "Exception ignored" not in stderr, context
        message = [line for line in stderr.splitlines() if line.strip()]
        assert len(message) == 1 and message[0].startswith("interrupted"), context
        saved = assert_nothing_half_written(out)
        if saved:
            assert str(saved[0]) in message[0], context  # the message says where the model is
        outcomes.append((moment, message[0][:40]))
    interrupted = [outcome for outcome in outcomes if outcome[1].startswith("interrupted")]
    assert len(interrupted) >= 5, outcomes  # most moments fell inside the run


@pytest.fixture
def gpt_run(tmp_path, monkeypatch, capsys):
    require_data("tinyshakespeare")
    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path / "cache"))
    interrupts.reset()
    yield tmp_path / "out"
    interrupts.reset()


def test_ctrl_c_during_the_final_evaluation_keeps_the_trained_model(gpt_run, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(gpt_trainer, "bigram_baseline", interrupted)  # part of the final figures
    assert cli.main([*RUN, "--out", str(gpt_run)]) == 130
    message = capsys.readouterr().err.strip()
    path = gpt_run / "gpt.safetensors"
    assert message.startswith("interrupted during the final evaluation"), message
    assert f"saved at {path}" in message
    saved = checkpoints.load(path)
    assert saved.extra["steps"] == 30
    assert "tokens_per_second" in saved.metrics and "val_loss" not in saved.metrics
    assert f"sha256 {checkpoints.sha256_file(path)}" in message


def test_ctrl_c_inside_a_save_lets_the_save_finish(gpt_run, monkeypatch, capsys):
    """The signal arrives while the checkpoint is being written: the write completes, then the run
    stops, and the message says the (complete) checkpoint is there."""
    write = checkpoints.save
    calls = []

    def save_with_a_signal(*args, **kwargs):
        calls.append(args[0])
        interrupts.handler(signal.SIGINT, None)  # as if Ctrl-C came now
        return write(*args, **kwargs)

    monkeypatch.setattr(checkpoints, "save", save_with_a_signal)
    assert cli.main([*RUN, "--out", str(gpt_run)]) == 130
    message = capsys.readouterr().err.strip()
    assert len(calls) == 1, "the run stopped after the first save"
    assert message.startswith("interrupted during the final evaluation"), message
    assert_nothing_half_written(gpt_run)
    assert checkpoints.load(gpt_run / "gpt.safetensors").extra["steps"] == 30


def test_without_the_handler_python_behaves_as_usual():
    interrupts.reset()
    assert not interrupts.received()
    assert not interrupts.is_interrupt(ValueError("x"))
    with pytest.raises(KeyboardInterrupt):
        with interrupts.deferred():
            interrupts.handler(signal.SIGINT, None)
            done = True  # the section itself ran to its end
    assert done and interrupts.received()
    assert interrupts.is_interrupt(RecursionError("an import cut short"))
    interrupts.reset()


def test_ctrl_c_inside_an_import_waits_until_the_import_is_done(tmp_path, monkeypatch):
    """An exception raised inside an import can land in C++ code that called back into Python
    (PyTorch's modules do, as they load), where it aborts the process: inside an import the
    handler does not raise; it sends the signal again, and the interrupt comes just after."""
    (tmp_path / "slow_module.py").write_text(
        "import signal, sys, time\n"
        "from aigc_course import interrupts\n"
        "interrupts.handler(signal.SIGINT, sys._getframe())  # Ctrl-C while this module loads\n"
        "LOADED = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    interrupts.reset()
    previous = signal.signal(signal.SIGINT, interrupts.handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            import slow_module  # noqa: F401

            time.sleep(5)  # the interrupt arrives here, after the import
        assert sys.modules["slow_module"].LOADED, "the import ran to its end"
        assert interrupts.received()
    finally:
        signal.signal(signal.SIGINT, previous)
        interrupts.reset()
        sys.modules.pop("slow_module", None)


def test_ctrl_c_while_the_output_is_claimed_leaves_no_lock(gpt_run, monkeypatch, capsys):
    """The signal arrives just after the lock file is made: the run stops, and the lock is gone."""
    take_lock = checkpoints.OutputClaim._take_lock

    def take_lock_then_signal(self):
        take_lock(self)
        assert self.lock.exists()
        interrupts.handler(signal.SIGINT, None)  # as if Ctrl-C came now

    monkeypatch.setattr(checkpoints.OutputClaim, "_take_lock", take_lock_then_signal)
    assert cli.main([*RUN, "--out", str(gpt_run)]) == 130
    assert capsys.readouterr().err.strip().startswith("interrupted")
    assert assert_nothing_half_written(gpt_run) == []
