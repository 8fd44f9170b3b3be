"""Making exercise notebooks from solution notebooks, and keeping them in sync."""

from __future__ import annotations

import shutil

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from aigc_course import cli
from aigc_course.notebook_tools import (
    EXERCISE_PLACEHOLDER,
    SolutionMarkerError,
    build_exercises,
    colab_badge,
    make_exercise,
    strip_solutions,
)
from tests.helpers import ROOT

SOLVED = '''def square(x: float) -> float:
    """The square of ``x``."""
    ### BEGIN SOLUTION
    result = x * x
    return result
    ### END SOLUTION


def cube(x):
    ### BEGIN SOLUTION
    return x**3
    ### END SOLUTION'''


def test_strip_keeps_signature_and_docstring_and_indents_placeholder():
    exercise = strip_solutions(SOLVED)
    assert exercise == (
        "def square(x: float) -> float:\n"
        '    """The square of ``x``."""\n'
        f"    {EXERCISE_PLACEHOLDER}\n"
        "\n\n"
        "def cube(x):\n"
        f"    {EXERCISE_PLACEHOLDER}"
    )
    namespace: dict = {}
    exec(exercise, namespace)
    with pytest.raises(NotImplementedError):
        namespace["square"](2.0)
    assert namespace["square"].__doc__ == "The square of ``x``."


@pytest.mark.parametrize(
    "source, message",
    [
        ("### BEGIN SOLUTION\nx = 1", "never closed"),
        ("x = 1\n### END SOLUTION", "without ### BEGIN SOLUTION"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside the block"),
    ],
)
def test_unbalanced_markers_are_errors(source, message):
    with pytest.raises(SolutionMarkerError, match=message):
        strip_solutions(source, where="solutions/99_x.ipynb, cell 3")


def test_make_exercise_clears_outputs_and_points_badge_at_itself():
    solution = new_notebook(
        cells=[
            new_markdown_cell(f"# Exercises\n\n{colab_badge('solutions/05_x.ipynb')}"),
            new_code_cell(SOLVED, execution_count=3, outputs=[new_output("stream", text="hi")]),
        ]
    )
    exercise = make_exercise(solution, "solutions/05_x.ipynb", "exercises/05_x.ipynb")
    assert colab_badge("exercises/05_x.ipynb") in exercise.cells[0].source
    assert "solutions/05_x.ipynb" not in exercise.cells[0].source
    code = exercise.cells[1]
    assert code.outputs == [] and code.execution_count is None
    assert "### BEGIN SOLUTION" not in code.source and "x * x" not in code.source
    assert solution.cells[1].outputs, "the solution notebook itself is not changed"


def test_repository_exercises_are_in_sync_with_solutions():
    report = build_exercises(ROOT, check=True)
    assert report.out_of_date == [], "run `aigc-course build-exercises`"
    assert {path.name for path in report.up_to_date} == {
        path.name for path in (ROOT / "solutions").glob("*.ipynb")
    }


def test_cli_check_passes_then_fails_after_a_solution_is_edited(tmp_path, monkeypatch, capsys):
    for folder in ("solutions", "exercises"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["build-exercises", "--check"]) == 0

    path = tmp_path / "solutions" / "00_setup.ipynb"
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(new_markdown_cell("A new paragraph in the solution."))
    nbformat.write(notebook, path)
    assert cli.main(["build-exercises", "--check"]) == 1
    assert (
        "OUT OF SYNC exercises/00_setup.ipynb: differs from its solution" in capsys.readouterr().err
    )

    assert cli.main(["build-exercises"]) == 0  # regenerate
    assert cli.main(["build-exercises", "--check"]) == 0

    (tmp_path / "exercises" / "77_orphan.ipynb").write_text("{}")
    assert cli.main(["build-exercises", "--check"]) == 1
    assert "has no solutions/77_orphan.ipynb" in capsys.readouterr().err
