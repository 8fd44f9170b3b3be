"""Settings for the whole test run, notebooks included (their kernels inherit this environment).

- ``AIGC_PROFILE=smoke``: notebooks run their smallest configuration.
- ``AIGC_CHECKS_STRICT=1``: a failed exercise check raises, so a broken solution fails its test.
- ``AIGC_OFFLINE=1``: nothing is downloaded; the download tests use a local HTTP server and
  switch this off themselves.

Notebooks that use ipywidgets get the ``widgets`` marker, so ``pytest -m widgets`` runs them (and
tests/test_widgets.py) again under another ipywidgets version.

Lessons that a browser test runs top to bottom in JupyterLab (tests/test_browser.py, marked
``runs_lesson``) are not run again by nbval when the browser tests can run
(:class:`LessonsRunInTheBrowser`).

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
    config.pluginmanager.register(LessonsRunInTheBrowser(), "aigc-lessons-run-in-the-browser")
    if os.name == "posix":  # Windows has no Unix sockets: nbval's own kernels there
        import nbval.kernel

        from tests.kernels import kernel_manager, share_kernel_parent

        # nbval's kernels on Unix sockets, forked on Linux from a process that imported torch
        # (tests/kernels.py says why): nbval makes its kernel manager with this.
        nbval.kernel.KernelManager = kernel_manager
        if not os.environ.get("PYTEST_XDIST_WORKER"):
            share_kernel_parent()  # one kernel parent for the run, its workers' and servers'


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


# The files whose tests take longest, in seconds of one worker (summed over their tests, measured with
# ``pytest --durations=0`` on 2026-12-05: 1,141 s of tests over three workers on a 2-core machine).
# pytest-xdist hands out whole files (``--dist loadfile``) in collection order
# (``--no-loadscope-reorder``): these go first, so that no worker is left running one of them alone
# at the end while the others have finished. The other files follow in their usual order.
SLOWEST_FILES = (
    "tests/test_distributed.py",  # 131 s: torchrun launches
    "tests/test_browser.py",  # 118 s: JupyterLab in Chromium
    "tests/test_check_mutants.py",  # 56 s
    "notebooks/08_gpt.ipynb",  # 53 s (nbval runs it only where the browser tests cannot)
    "tests/test_interrupts.py",  # 49 s: Ctrl-C at many moments
    "notebooks/10_diffusion.ipynb",  # 47 s
    "notebooks/11_evaluation.ipynb",  # 46 s
    "notebooks/07_gan.ipynb",  # 43 s
    "tests/test_notebooks.py",  # 42 s
    "notebooks/09_prompting_finetuning.ipynb",  # 41 s
    "tests/test_bad_input.py",  # 37 s
    "tests/test_fuzz.py",  # 36 s
    "notebooks/06_vae.ipynb",  # 33 s
    "tests/test_finetune.py",  # 32 s
    "tests/test_gan.py",  # 30 s
)


def _run_order(item: pytest.Item) -> int:
    """The position of the item's file in SLOWEST_FILES; every other file after them."""
    path = item.nodeid.split("::")[0]  # relative to the project's root
    return SLOWEST_FILES.index(path) if path in SLOWEST_FILES else len(SLOWEST_FILES)


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.fspath))
        if path.suffix == ".ipynb" and _uses_widgets(path):
            item.add_marker(pytest.mark.widgets)
    items.sort(key=_run_order)  # stable: a file's tests keep their order


def _browser_can_run() -> bool:
    """Chromium and Playwright are here, so tests/test_browser.py runs rather than skips (under
    ``CI=true`` it fails instead of skipping: nothing goes untested there)."""
    from tests.helpers import CHROMIUM

    try:
        import playwright.sync_api  # noqa: F401  (what the browser tests import)
    except ImportError:
        return False
    return CHROMIUM.is_file()


class LessonsRunInTheBrowser:
    """A lesson that a browser test of this session runs top to bottom (``@pytest.mark.runs_lesson``)
    is not run again by nbval: JupyterLab's Run All executes the same cells, in a kernel with the
    test run's environment (but for ``MPLBACKEND``: plots inline, as a learner sees them), and the
    test fails on any error output and on a cell marked ``NBVAL_CHECK_OUTPUT`` that shows otherwise
    than the committed lesson, as nbval would. Only when the browser tests can run here: on a
    machine without Chromium they skip, and nbval runs the lesson. (Under ``pytest -m widgets`` no
    browser test is chosen: nbval runs them all.)"""

    @pytest.hookimpl(trylast=True)  # after -m and -k have chosen the session's items
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]):
        lessons = {
            f"notebooks/{marker.args[0]}"
            for item in items
            for marker in item.iter_markers("runs_lesson")
        }
        if not lessons or not _browser_can_run():
            return
        run_in_the_browser = [item for item in items if item.nodeid.split("::")[0] in lessons]
        if run_in_the_browser:
            config.hook.pytest_deselected(items=run_in_the_browser)
            items[:] = [item for item in items if item.nodeid.split("::")[0] not in lessons]
