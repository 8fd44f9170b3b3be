"""Notebook conventions, the Colab set-up cell, and the exercise notebooks run top to bottom.

(The lessons in notebooks/ and the solutions in solutions/ are run by nbval: ``pytest`` collects
them directly, see ``[tool.pytest.ini_options]`` in pyproject.toml.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import types

import nbformat
import pytest

from aigc_course import GITHUB_BRANCH, GITHUB_REPOSITORY
from aigc_course.files import process_is_running
from aigc_course.notebook_tools import badge_targets, colab_setup_source
from tests.helpers import ROOT, execute_notebook, printed_text

FOLDERS = ("notebooks", "solutions", "exercises")
NOTEBOOKS = sorted(path for folder in FOLDERS for path in (ROOT / folder).glob("*.ipynb"))
IDS = [path.relative_to(ROOT).as_posix() for path in NOTEBOOKS]
NAME = re.compile(r"^\d\d_[a-z0-9_]+\.ipynb$")


def read(path):
    return nbformat.read(path, as_version=4)


def code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_every_lesson_has_a_solution_and_an_exercise():
    lessons = {path.name for path in (ROOT / "notebooks").glob("*.ipynb")}
    assert lessons, "no lessons found"
    assert {p.name for p in (ROOT / "solutions").glob("*.ipynb")} == lessons
    assert {p.name for p in (ROOT / "exercises").glob("*.ipynb")} == lessons


def test_the_files_the_test_run_starts_with_exist_and_come_first(request):
    """conftest.py hands pytest-xdist the slowest files first: a renamed or removed file would
    silently fall back to the usual order, so each name must still be a file, and the session's
    items (when this test is collected with them) begin with those files."""
    import conftest

    if getattr(request.config.option, "dist", "no") != "no":  # under pytest-xdist
        assert request.config.option.loadscopereorder is False, "files by test count, not time"
    missing = [name for name in conftest.SLOWEST_FILES if not (ROOT / name).is_file()]
    assert not missing, f"conftest.SLOWEST_FILES names files that do not exist: {missing}"
    files = list(dict.fromkeys(item.nodeid.split("::")[0] for item in request.session.items))
    first = [name for name in files if name in conftest.SLOWEST_FILES]
    assert files[: len(first)] == first == sorted(first, key=conftest.SLOWEST_FILES.index)


KERNEL_REPORT = """import os, random, sys
print("torch" in sys.modules, os.getcwd(), sys.path.index("") > 0, os.getppid())
import torch
print(torch.initial_seed(), random.random())"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kernels are forked on Linux")
def test_test_kernels_are_reseeded_forks_on_unix_sockets(tmp_path):
    """The test run's kernels (tests/kernels.py), nbval's and nbclient's: forks of the run's
    kernel parent, which imported torch, each in the notebook's folder with its own random state
    and a kernel's sys.path, talking over Unix sockets in a private folder; each answers, and
    leaves neither a process nor a socket when it stops."""
    import nbval.kernel

    from tests.kernels import kernel_parent

    printed = []
    for _ in range(2):
        kernel = nbval.kernel.RunningKernel(nbval.kernel.CURRENT_ENV_KERNEL_NAME, str(tmp_path))
        manager = kernel.km
        ports = ("shell_port", "iopub_port", "stdin_port", "hb_port", "control_port")
        sockets = [f"{manager.ip}-{getattr(manager, port)}" for port in ports]
        try:
            assert manager.transport == "ipc" and manager.provisioner.forked
            assert all(os.path.exists(path) for path in sockets), sockets
            messages = []
            kernel.kc.execute_interactive(KERNEL_REPORT, timeout=30, output_hook=messages.append)
            stdout = [m["content"] for m in messages if m["content"].get("name") == "stdout"]
            printed.append("".join(content["text"] for content in stdout).splitlines())
        finally:
            pid = manager.provisioner.pid
            kernel.stop()
        assert not any(os.path.exists(path) for path in sockets)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    parent = kernel_parent().pid
    assert [lines[0] for lines in printed] == [f"True {tmp_path} True {parent}"] * 2
    assert printed[0][1] != printed[1][1], "two kernels drew the same seeds"

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(KERNEL_REPORT)])
    execute_notebook(notebook, tmp_path)  # nbclient's kernel
    assert printed_text(notebook).splitlines()[0] == f"True {tmp_path} True {parent}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kernels are forked on Linux")
def test_a_test_kernel_writes_its_stderr_where_its_starter_does(tmp_path, capfd):
    """A kernel started without its stderr redirected (JupyterLab's are) writes it to the stderr
    of the process that asked for it, as a kernel started as a child would; the kernel parent is
    the run's, owned by pytest's main process (tests/kernels.py), and a second connection of this
    process (a JupyterLab server's would be one) reaches the same parent."""
    from tests import kernels

    assert os.environ[kernels.ADDRESS_VARIABLE] and os.environ[kernels.OWNER_VARIABLE]
    if os.environ.get("PYTEST_XDIST_WORKER"):
        assert int(os.environ[kernels.OWNER_VARIABLE]) == os.getppid(), "owned by pytest's main"
    manager = kernels.kernel_manager("python3")
    manager.start_kernel(cwd=str(tmp_path))
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=30)
        client.execute_interactive("import os; os.write(2, b'written to fd 2\\n')", timeout=30)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert manager.provisioner.forked
    assert "written to fd 2" in capfd.readouterr().err
    another = kernels.KernelParent(
        os.environ[kernels.ADDRESS_VARIABLE], int(os.environ[kernels.OWNER_VARIABLE])
    )
    assert another.pid == kernels.kernel_parent().pid
    another.connection.close()


LEAVES_A_KERNEL = """import os, sys
from tests import kernels
manager = kernels.kernel_manager("python3")
manager.start_kernel(cwd=sys.argv[1])
print(manager.provisioner.pid, flush=True)
os._exit(0)  # gone without shutting its kernel down, as a crashed test worker would be"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kernels are forked on Linux")
def test_a_test_kernel_ends_when_the_process_that_asked_for_it_has_gone(tmp_path):
    """The run's kernel parent outlives the test workers; the kernels a worker asked for must not
    (a kernel started as a worker's child would end with it)."""
    started = subprocess.run(
        [sys.executable, "-c", LEAVES_A_KERNEL, str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    kernel = int(started.stdout.split()[-1])
    deadline = time.monotonic() + 20
    while process_is_running(kernel) and time.monotonic() < deadline:
        time.sleep(0.1)
    if process_is_running(kernel):
        os.kill(kernel, 9)
        raise AssertionError(f"the kernel {kernel} outlived the process that asked for it")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_conventions(path):
    notebook = read(path)
    own_path = path.relative_to(ROOT).as_posix()
    nbformat.validate(notebook)
    assert NAME.match(path.name), "notebooks are named NN_topic.ipynb"
    assert notebook.metadata.kernelspec.name == "python3", "a kernelspec avoids JupyterLab's dialog"
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert badge_targets(first.source) == [f"{GITHUB_REPOSITORY}/blob/{GITHUB_BRANCH}/{own_path}"]
    assert "**Time:**" in first.source
    assert code_cells(notebook)[0].source == colab_setup_source()


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_lessons_are_committed_with_the_outputs_of_a_full_run(path):
    cells = code_cells(read(path))
    counts = [cell.execution_count for cell in cells]
    assert counts == list(range(1, len(cells) + 1)), "run it with `aigc-course execute-notebooks`"
    errors = [o for cell in cells for o in cell.outputs if o.output_type == "error"]
    assert errors == []


@pytest.mark.parametrize("path", sorted((ROOT / "exercises").glob("*.ipynb")), ids=lambda p: p.name)
def test_exercises_are_committed_without_outputs(path):
    assert all(not cell.outputs and cell.execution_count is None for cell in code_cells(read(path)))


def run_setup_cell(monkeypatch, clone_exists: bool) -> list[list[str]]:
    """Execute the set-up cell with ``subprocess.run`` recorded instead of run."""
    commands: list[list[str]] = []
    monkeypatch.setattr(subprocess, "run", lambda command, check: commands.append(command))
    real_isdir = os.path.isdir
    monkeypatch.setattr(
        os.path, "isdir", lambda p: clone_exists if p.startswith("/content/") else real_isdir(p)
    )
    exec(colab_setup_source(), {})
    return commands


def test_setup_cell_does_nothing_outside_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    path_before = list(sys.path)
    assert run_setup_cell(monkeypatch, clone_exists=False) == []
    assert sys.path == path_before


def test_setup_cell_in_simulated_colab_clones_once_and_installs(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    first = run_setup_cell(monkeypatch, clone_exists=False)
    assert (
        first[0][:2] == ["git", "clone"] and f"https://github.com/{GITHUB_REPOSITORY}" in first[0]
    )
    assert first[1] == [sys.executable, "-m", "pip", "install", "-q", "-e", "/content/aigc-course"]
    assert "/content/aigc-course" in sys.path
    again = run_setup_cell(monkeypatch, clone_exists=True)
    assert [command[:2] for command in again] == [[sys.executable, "-m"]], "no second clone"
    assert sys.path.count("/content/aigc-course") == 1


@pytest.mark.parametrize("path", sorted((ROOT / "exercises").glob("*.ipynb")), ids=lambda p: p.name)
def test_exercise_notebook_runs_and_every_check_says_not_implemented(path):
    notebook = read(path)
    execute_notebook(notebook, path.parent)
    check_cells = [
        cell for cell in code_cells(notebook) if re.search(r"^check\.\w+\(", cell.source, re.M)
    ]
    assert check_cells, "an exercise notebook has at least one check"
    for cell in check_cells:
        text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        assert "⏳" in text and "not implemented yet" in text, cell.source
    errors = [o for cell in code_cells(notebook) for o in cell.outputs if o.output_type == "error"]
    assert errors == [], "an unfinished exercise must not crash the notebook"


def trailing_claims(source: str) -> int:
    """How many lines of assertions end a cell after other code (0 if none, or if the cell is all
    assertions): top-level ``assert`` statements, or ``if`` blocks of them (a profile branch)."""
    import ast

    def claims(node) -> bool:
        if isinstance(node, ast.Assert):
            return True
        return isinstance(node, ast.If) and all(claims(n) for n in node.body + node.orelse)

    try:
        body = ast.parse(source).body
    except SyntaxError:
        return 0
    k = len(body)
    while k and claims(body[k - 1]):
        k -= 1
    if k in (0, len(body)):
        return 0
    return body[-1].end_lineno - body[k].lineno + 1


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_claim_assertions_sit_in_collapsed_cells_after_the_output_they_back(path):
    """COURSE.md rule 5: a learner reads prose, code, output. Assertions of the prose's claims
    that end a longer cell go into a collapsed cell of their own (JupyterLab's ``source_hidden``),
    right after it, where nbval still runs them; a one-line claim after a short cell may stay."""
    for cell in code_cells(read(path))[1:]:
        if cell.metadata.get("jupyter", {}).get("source_hidden"):
            continue
        lines = len([line for line in cell.source.splitlines() if line.strip()])
        tail = trailing_claims(cell.source)
        assert not (tail >= 2 or (tail and lines > 12)), cell.source[:300]
    assert trailing_claims("x = 1\nassert x == 1\nassert x > 0\n") == 2
