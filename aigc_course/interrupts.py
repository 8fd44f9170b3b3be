"""Ctrl-C, answered the same way from a command's first instruction to its last.

Python's own SIGINT handler raises ``KeyboardInterrupt`` wherever the program happens to be. Inside
an import (PyTorch loads many modules lazily) that can surface as another exception, such as a
``RecursionError``; inside a finaliser it is printed and dropped, and the run goes on as if nothing
had happened. The ``aigc-course`` command installs :func:`handler` first, before any heavy import:
it records that the user asked to stop, then raises ``KeyboardInterrupt`` as usual. Whatever
exception the interrupt turns into, :func:`is_interrupt` knows it for what it is, and a run that
swallowed it still ends as interrupted (status 130). :func:`deferred` marks a short section that
must not be cut (writing a checkpoint and recording it): Ctrl-C there takes effect at its end; inside
an import it takes effect just after (an exception raised there can abort the process).

Outside the command (a notebook, the tests) nothing is installed and nothing here changes how
Python behaves.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_state = {"received": False, "deferring": 0, "pending": False}


def install() -> bool:
    """Answer SIGINT with :func:`handler` (main thread only; returns whether it was installed)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGINT, handler)
    return True


def handler(signum: int, frame: object) -> None:
    """Remember the interrupt; raise ``KeyboardInterrupt`` now, at the end of a :func:`deferred`
    section, or, when it arrives inside an import, a moment later.

    An exception raised inside an import can land in C++ code that called back into Python
    (PyTorch's modules run such code as they load); it cannot pass through there, and the process
    aborts (SIGABRT, a page of C++ frames). So inside an import the signal is sent again shortly,
    until it arrives where Python can stop cleanly."""
    _state["received"] = True
    if _state["deferring"]:
        _state["pending"] = True
        return
    if _importing(frame):
        _send_again(signum)
        return
    raise KeyboardInterrupt


def _importing(frame) -> bool:
    """Whether ``frame`` runs inside an import (a frame of Python's import machinery above it)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _send_again(signum: int, seconds: float = 0.05) -> None:
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signum))
    timer.daemon = True
    timer.start()


def received() -> bool:
    """True once the user pressed Ctrl-C (with :func:`handler` installed)."""
    return _state["received"]


def is_interrupt(error: BaseException) -> bool:
    """Whether ``error`` ended a run because of Ctrl-C: a ``KeyboardInterrupt``, or any exception
    raised after one (an import cut short by the interrupt fails in its own way)."""
    return isinstance(error, KeyboardInterrupt) or received()


@contextmanager
def deferred() -> Iterator[None]:
    """A section that Ctrl-C does not cut: an interrupt inside it is raised when it ends."""
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1
        if not _state["deferring"] and _state["pending"]:
            _state["pending"] = False
            raise KeyboardInterrupt


def reset() -> None:
    """Forget any interrupt (for a caller that runs several commands in one process)."""
    _state.update(received=False, deferring=0, pending=False)
