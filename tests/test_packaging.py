"""Packaging: pyproject, environment.yml, README and .ci/run agree with each other."""

from __future__ import annotations

import re
import subprocess
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from aigc_course import GITHUB_BRANCH, GITHUB_REPOSITORY, REPOSITORY_URL
from aigc_course.notebook_tools import badge_targets, colab_badge
from tests.helpers import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
README = (ROOT / "README.md").read_text()


def environment_yml() -> tuple[list[str], list[str]]:
    """The conda dependencies and the pip dependencies of environment.yml (a simple YAML list)."""
    conda, pip, section = [], [], None
    for line in (ROOT / "environment.yml").read_text().splitlines():
        stripped = line.split("#")[0].rstrip()
        if stripped == "dependencies:":
            section = "conda"
        elif stripped.strip() == "- pip:":
            section = "pip"
        elif stripped.startswith("      - ") and section == "pip":
            pip.append(stripped.strip()[2:])
        elif stripped.startswith("  - ") and section in ("conda", "pip"):
            section = "conda"
            conda.append(stripped.strip()[2:])
        elif stripped and not stripped.startswith(" "):
            section = None
    return conda, pip


def requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement, maxsplit=1)[0].lower()


def test_pyproject_declares_the_course_package():
    project = PYPROJECT["project"]
    assert project["requires-python"] == ">=3.10"
    assert project["scripts"] == {"aigc-course": "aigc_course.cli:program"}
    runtime = {requirement_name(r): r for r in project["dependencies"]}
    assert set(runtime) == {
        "torch",
        "numpy",
        "matplotlib",
        "ipywidgets",
        "tqdm",
        "safetensors",
        "pooch",
    }
    assert runtime["torch"] == "torch>=2.3", "a range, so users get the right build"
    assert runtime["ipywidgets"] == "ipywidgets>=7.7", "Colab ships ipywidgets 7.7.1"
    dev = {requirement_name(r) for r in project["optional-dependencies"]["dev"]}
    assert {"pytest", "nbval", "nbformat", "ipykernel", "jupyterlab", "ruff"} <= dev


def test_environment_yml_installs_the_same_thing():
    conda, pip = environment_yml()
    assert f"python{PYPROJECT['project']['requires-python']}" in conda
    assert "pip" in conda
    assert pip == ["-e .[dev]"], "conda installs the project itself, with its dev extra"
    declared = {requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
    others = {requirement_name(c) for c in conda} - {"python", "pip"}
    assert others <= declared, (
        f"environment.yml lists packages pyproject.toml lacks: {others - declared}"
    )


def test_readme_quick_start_has_exactly_two_commands_and_the_test_command():
    quick_start = README.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    assert quick_start.strip().splitlines() == ['pip install -e ".[dev]"', "jupyter lab"]
    assert "notebooks/00_setup.ipynb" in README
    tests = README.split("**Tests**", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    assert tests.strip() == "pytest"
    assert REPOSITORY_URL in README


def test_ci_runs_exactly_the_readme_test_command():
    tests = README.split("**Tests**", 1)[1].split("```bash", 1)[1].split("```", 1)[0].strip()
    script = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line.strip() for line in script if line.strip() and not line.startswith("#")]
    assert tests in commands
    assert "python -m pip install -q torch==2.13.0" in commands
    install_torch = commands.index("python -m pip install -q torch==2.13.0")
    assert install_torch < commands.index('python -m pip install -q -e ".[dev]"')


def test_readme_lesson_map_lists_exactly_the_lessons_with_their_badges():
    lessons = sorted(
        path.relative_to(ROOT).as_posix() for path in (ROOT / "notebooks").glob("*.ipynb")
    )
    linked = sorted(set(re.findall(r"\]\((notebooks/\d\d_[a-z0-9_]+\.ipynb)\)", README)))
    assert linked == lessons
    for lesson in lessons:
        assert colab_badge(lesson) in README


def test_importing_the_package_does_nothing_visible(tmp_path):
    code = (
        "import aigc_course, aigc_course.runtime, aigc_course.data, aigc_course.checks, "
        "aigc_course.notebook_tools, aigc_course.cli"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AIGC_DATA_DIR": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert list(tmp_path.iterdir()) == [], "no files written at import time"


def test_data_folder_is_ignored_but_for_its_readme():
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "data/*" in ignored and "!data/README.md" in ignored
    assert (ROOT / "data" / "README.md").is_file()


def test_ci_installs_chromium_and_reruns_the_widget_tests_with_colabs_ipywidgets():
    script = (ROOT / ".ci" / "run").read_text()
    assert "apt_packages+=(chromium)" in script and "playwright install" not in script
    commands = [line.strip() for line in script.splitlines() if line.strip()]
    readme_tests = commands.index("pytest")
    pin = commands.index('python -m pip install -q "ipywidgets==7.7.1"')
    rerun = commands.index("AIGC_EXPECT_IPYWIDGETS=7.7.1 pytest -m widgets")
    assert readme_tests < pin < rerun


def test_every_colab_link_points_at_the_configured_repository_and_an_existing_notebook():
    assert PYPROJECT["project"]["urls"]["Repository"] == REPOSITORY_URL
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    documents += sorted(ROOT.glob("*/*.ipynb"))
    links = 0
    for document in documents:
        for target in badge_targets(document.read_text(encoding="utf-8")):
            prefix = f"{GITHUB_REPOSITORY}/blob/{GITHUB_BRANCH}/"
            assert target.startswith(prefix), f"{document.name}: {target}"
            assert (ROOT / target[len(prefix) :]).is_file(), f"{document.name}: {target}"
            links += 1
    assert links >= 3 * len(list((ROOT / "notebooks").glob("*.ipynb")))
