"""Settings for the whole test run, notebooks included (their kernels inherit this environment).

- ``AIGC_PROFILE=smoke``: notebooks run their smallest configuration.
- ``AIGC_CHECKS_STRICT=1``: a failed exercise check raises, so a broken solution fails its test.
- ``AIGC_OFFLINE=1``: nothing is downloaded; the download tests use a local HTTP server and
  switch this off themselves.

Notebooks that use ipywidgets get the ``widgets`` marker, so ``pytest -m widgets`` runs them (and
tests/test_widgets.py) again under another ipywidgets version.

The Chinese edition's code is the English code (tests/test_translations.py compares every cell),
so nbval runs of it only need to prove what differs: its exercise notebooks (``solutions/zh``:
the checks' feedback in Chinese) and lesson 00 (its report in Chinese). The other Chinese lessons
are not run again.
"""

import os
from functools import cache
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Parallel workers (pytest -n): one thread each, for the worker and the kernels and commands
    # it starts, so that two workers on two cores do not fight over four threads.
    os.environ["OMP_NUM_THREADS"] = "1"
os.environ["AIGC_PROFILE"] = "smoke"
os.environ["AIGC_CHECKS_STRICT"] = "1"
os.environ["AIGC_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_xdist_auto_num_workers(config) -> int | None:
    """``-n auto``: one worker more than the cores this process may use (capped by ``--maxprocesses``;
    ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still sets the count).
    A worker often waits on a process it started (a kernel, torchrun's ranks, Chromium, a command
    under test); the extra worker uses that time. On 2 cores, measured once each on the same
    machine: 564 s with three workers, 633 s with two (benchmarks/RESULTS.md)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS") or config.option.numprocesses == "logical":
        return None  # the user's count, or xdist's own for -n logical
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cores or 1) + 1


def pytest_configure(config):
    if os.name == "posix":  # Windows has no Unix sockets: nbval's own kernels there
        import nbval.kernel

        from tests.kernels import kernel_manager

        # nbval's kernels on Unix sockets, forked on Linux from a process that imported torch
        # (tests/kernels.py says why): nbval makes its kernel manager with this.
        nbval.kernel.KernelManager = kernel_manager


@cache
def _uses_widgets(path: Path) -> bool:
    """Builds widgets: itself (ipywidgets) or through the course's (aigc_course.widgets)."""
    text = path.read_text(encoding="utf-8")
    return "ipywidgets" in text or "aigc_course.widgets" in text


CHINESE_LESSONS_RUN = {"00_setup.ipynb"}


def pytest_ignore_collect(collection_path, config):
    path = Path(collection_path)
    if (
        path.suffix == ".ipynb"
        and path.parent.name == "zh"
        and path.parent.parent.name == "notebooks"
    ):
        return path.name not in CHINESE_LESSONS_RUN
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.fspath))
        if path.suffix == ".ipynb" and _uses_widgets(path):
            item.add_marker(pytest.mark.widgets)
