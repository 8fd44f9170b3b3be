"""Tools for the course's notebooks: the Colab set-up cell, badges, exercises, execution.

- :func:`colab_setup_source` is the first code cell of every notebook (checked by the tests).
- :func:`build_exercises` makes ``exercises/NN_*.ipynb`` from ``solutions/NN_*.ipynb``: code between
  ``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes ``raise NotImplementedError(...)``
  (the signature and docstring above it stay), outputs are cleared, and the Colab badge is
  pointed at the exercise's own path.
- :func:`execute_notebook` runs a lesson top to bottom in a fresh kernel and saves its outputs.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from aigc_course import GITHUB_BRANCH, GITHUB_REPOSITORY, REPOSITORY_URL, files
from aigc_course.errors import CourseError

BEGIN_SOLUTION = "### BEGIN SOLUTION"
END_SOLUTION = "### END SOLUTION"
EXERCISE_PLACEHOLDER = 'raise NotImplementedError("Exercise: replace this line with your code.")'
COLAB_BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
COLAB_PREFIX = "https://colab.research.google.com/github/"
_BADGE_LINK = re.compile(r"https://colab\.research\.google\.com/github/([^)\s]+?\.ipynb)")


def colab_badge(path: str) -> str:
    """The "Open in Colab" badge (markdown) of the notebook at ``path`` (relative to the repo)."""
    url = f"{COLAB_PREFIX}{GITHUB_REPOSITORY}/blob/{GITHUB_BRANCH}/{path}"
    return f"[![Open In Colab]({COLAB_BADGE_IMAGE})]({url})"


def badge_targets(markdown: str) -> list[str]:
    """The ``owner/repo/blob/branch/path.ipynb`` part of every Colab link in ``markdown``."""
    return _BADGE_LINK.findall(markdown)


LANGUAGE_COMMENTS = {
    "en": "en or zh: the language of feedback and messages",
    "zh": "zh 或 en：反馈与提示信息的语言",
}


def colab_setup_source(language: str = "en") -> str:
    """The first code cell of every notebook: installs the course in Colab, does nothing elsewhere.

    It is safe to run twice (the clone is skipped when present), and it keeps Colab's own torch
    and ipywidgets: the course's requirements (``torch>=2.3``, ``ipywidgets>=7.7``) accept them.
    Its language line (``AIGC_LANG``) is the one line of code in which the editions differ.
    """
    return f"""# Set-up: the language of messages; in Google Colab, also installs the course (safe to run again).
import os
import sys

os.environ["AIGC_LANG"] = "{language}"  # {LANGUAGE_COMMENTS[language]}
if "google.colab" in sys.modules:
    import subprocess

    REPOSITORY = "{REPOSITORY_URL}"
    CLONE = "/content/aigc-course"
    if not os.path.isdir(os.path.join(CLONE, ".git")):
        clone = ["git", "clone", "--depth", "1", "--branch", "{GITHUB_BRANCH}", REPOSITORY, CLONE]
        subprocess.run(clone, check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", CLONE], check=True)
    if CLONE not in sys.path:  # new kernels see the editable install; this one needs the path
        sys.path.insert(0, CLONE)"""


# --------------------------------------------------------------------------------------------
# Exercises from solutions
# --------------------------------------------------------------------------------------------


class SolutionMarkerError(CourseError, ValueError):
    """``### BEGIN SOLUTION`` / ``### END SOLUTION`` markers that do not pair up."""


def strip_solutions(source: str, where: str = "cell") -> str:
    """Replace every marked solution block of ``source`` with ``raise NotImplementedError(...)``.

    The placeholder takes the indentation of the ``### BEGIN SOLUTION`` line, so it sits in the
    function body whose signature and docstring come before the marker.
    """
    out: list[str] = []
    inside_from: int | None = None
    for number, line in enumerate(source.splitlines(), start=1):
        marker = line.strip()
        if marker.startswith(BEGIN_SOLUTION):
            if inside_from is not None:
                raise SolutionMarkerError(
                    f"{where}, line {number}: {BEGIN_SOLUTION} inside the block opened at line "
                    f"{inside_from}; close it with {END_SOLUTION} first"
                )
            inside_from = number
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}{EXERCISE_PLACEHOLDER}")
        elif marker.startswith(END_SOLUTION):
            if inside_from is None:
                raise SolutionMarkerError(
                    f"{where}, line {number}: {END_SOLUTION} without {BEGIN_SOLUTION}"
                )
            inside_from = None
        elif inside_from is None:
            out.append(line)
    if inside_from is not None:
        raise SolutionMarkerError(
            f"{where}: {BEGIN_SOLUTION} at line {inside_from} is never closed with {END_SOLUTION}"
        )
    return "\n".join(out)


def make_exercise(
    solution: nbformat.NotebookNode, solution_path: str, exercise_path: str
) -> nbformat.NotebookNode:
    """The exercise notebook of ``solution`` (a new notebook; ``solution`` is not changed)."""
    exercise = nbformat.from_dict(solution)
    exercise.metadata.pop("widgets", None)
    solution_link = f"{GITHUB_REPOSITORY}/blob/{GITHUB_BRANCH}/{solution_path}"
    exercise_link = f"{GITHUB_REPOSITORY}/blob/{GITHUB_BRANCH}/{exercise_path}"
    for index, cell in enumerate(exercise.cells):
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source, where=f"{solution_path}, cell {index}")
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
        elif cell.cell_type == "markdown":
            cell.source = cell.source.replace(solution_link, exercise_link)
    return exercise


def notebook_text(notebook: nbformat.NotebookNode) -> str:
    """The exact text a notebook is saved as (so that files can be compared byte for byte)."""
    return nbformat.writes(notebook) + "\n"


@dataclass
class ExerciseReport:
    """What :func:`build_exercises` wrote, or (with ``check``) found out of date."""

    written: list[Path] = field(default_factory=list)
    out_of_date: list[str] = field(default_factory=list)
    up_to_date: list[Path] = field(default_factory=list)

    def compare_or_write(
        self, path: Path, text: str, root: Path, check: bool, differs: str
    ) -> None:
        """Write ``text`` to ``path`` unless it is there already; with ``check``, only note that it
        is missing or, in words (``differs``: "differs from its solution"), that it differs."""
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            self.up_to_date.append(path)
        elif check:
            state = "missing" if current is None else differs
            self.out_of_date.append(f"{path.relative_to(root)}: {state}")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            files.write_text(path, text)
            self.written.append(path)


def build_exercises(root: Path, check: bool = False) -> ExerciseReport:
    """Make ``root/exercises/*.ipynb`` from ``root/solutions/*.ipynb``.

    With ``check`` nothing is written: the report lists every exercise that differs from what
    its solution generates, is missing, or has no solution any more.
    """
    solutions_dir, exercises_dir = root / "solutions", root / "exercises"
    report = ExerciseReport()
    expected_names = set()
    for solution_file in sorted(solutions_dir.glob("*.ipynb")):
        expected_names.add(solution_file.name)
        exercise_file = exercises_dir / solution_file.name
        solution = nbformat.read(solution_file, as_version=4)
        text = notebook_text(
            make_exercise(
                solution,
                solution_file.relative_to(root).as_posix(),
                exercise_file.relative_to(root).as_posix(),
            )
        )
        report.compare_or_write(exercise_file, text, root, check, "differs from its solution")
    for stale in sorted(exercises_dir.glob("*.ipynb")):
        if stale.name not in expected_names:
            report.out_of_date.append(
                f"{stale.relative_to(root)}: has no solutions/{stale.name} (remove it)"
            )
    return report


# --------------------------------------------------------------------------------------------
# Running notebooks
# --------------------------------------------------------------------------------------------


def notebook_client(notebook, folder: Path, timeout: int, kernel_name: str = "python3"):
    """An nbclient client that runs ``notebook`` in a fresh kernel started in ``folder`` with this
    process's environment (so ``AIGC_PROFILE`` and friends apply)."""
    from nbclient import NotebookClient

    return NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(folder)}},
        record_timing=False,
    )


def execute_notebook(path: Path, timeout: int = 1800, kernel_name: str = "python3") -> None:
    """Run the notebook at ``path`` top to bottom in a fresh kernel and save it with its outputs.

    The kernel starts in the notebook's folder with this process's environment (so
    ``AIGC_PROFILE`` and friends apply). The file is replaced only after a run without errors.
    """
    notebook = nbformat.read(path, as_version=4)
    notebook_client(notebook, path.parent, timeout, kernel_name).execute()
    save_executed(notebook, path)


def save_executed(notebook: nbformat.NotebookNode, path: Path) -> None:
    """Save a notebook that has just run, its streams merged as Jupyter shows them (atomically)."""
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = coalesce_streams(cell.outputs)
    files.write_text(path, notebook_text(notebook))


def coalesce_streams(outputs: list) -> list:
    """Merge consecutive stream outputs of the same stream (text printed piece by piece, e.g. a
    streamed generation) into one, as Jupyter shows them; drops progress-bar carriage returns."""
    merged: list = []
    for output in outputs:
        if (
            output.get("output_type") == "stream"
            and merged
            and merged[-1].get("output_type") == "stream"
            and merged[-1].get("name") == output.get("name")
        ):
            merged[-1]["text"] += output["text"]
        else:
            merged.append(output)
    return merged


def find_repository_root() -> Path | None:
    """The course repository: the current folder or one above it holding solutions/."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "solutions").is_dir() and (folder / "pyproject.toml").is_file():
            return folder
    return None


def repository_root() -> Path:
    root = find_repository_root()
    if root is not None:
        return root
    here = Path.cwd().resolve()
    raise SystemExit(
        "error: run this inside the course repository (no folder with solutions/ and "
        f"pyproject.toml at or above {here})"
    )


@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Set environment variables (None: leave as is) for the block, then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is not None:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
