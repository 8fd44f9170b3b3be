"""The package's layers (docs/ARCHITECTURE.md): no module imports from a layer above its own.

The layer list is read from docs/ARCHITECTURE.md, so the page and this test cannot disagree. Every
``import`` in every module is read with ``ast``, those inside functions included.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGE = ROOT / "aigc_course"
ROOT_MODULE = "aigc_course"  # the package's own __init__: its constants
MATHEMATICS = {"divergences", "elbo", "gan_theory", "attention", "watermark"}
PURE = MATHEMATICS | {"models"}  # computation only: no data, no checkpoint files
CHECKS_MAY_IMPORT = {"runtime", "settings", "i18n", "metrics", "models", "checks", *MATHEMATICS}


def read_layers() -> dict[str, int]:
    """Room name -> layer number, from the numbered list under "## The layers"."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split("## The layers", 1)[1].split("\n## ", 1)[0]
    layers: dict[str, int] = {ROOT_MODULE: 1}
    for number, line in re.findall(r"^(\d+)\. (.+)$", section, flags=re.MULTILINE):
        names = re.findall(r"`([a-z_0-9]+)`", line.split(" — ")[0])
        for name in names:
            layers[name] = int(number)
    return layers


LAYERS = read_layers()


def room_of(module_path: Path) -> str:
    """The room of a file of the package: its top-level module or sub-package name."""
    parts = module_path.relative_to(PACKAGE).with_suffix("").parts
    return ROOT_MODULE if parts == ("__init__",) else parts[0]


def imported_rooms(source: str, importer_parts: tuple[str, ...] = ()) -> set[str]:
    """The rooms of the package that ``source`` imports (``from aigc_course import x`` names room
    x when x is a module, else the package root)."""
    rooms: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == ROOT_MODULE:
                    rooms.add(parts[1] if len(parts) > 1 else ROOT_MODULE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importer's package
                base = list(importer_parts[: len(importer_parts) - node.level])
                parts = [ROOT_MODULE, *base, *(node.module or "").split(".")]
                parts = [p for p in parts if p]
            else:
                parts = (node.module or "").split(".")
            if parts[0] != ROOT_MODULE:
                continue
            if len(parts) > 1:
                rooms.add(parts[1])
            else:
                for alias in node.names:
                    rooms.add(alias.name if alias.name in LAYERS else ROOT_MODULE)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # A module named in a string is imported later (importlib.import_module, a table of
            # trainer modules): "aigc_course.trainers.gpt" counts as an import of trainers.
            match = re.fullmatch(r"aigc_course\.([a-z_]+)(\.[a-z_.]+)?", node.value)
            room = match.group(1) if match else None
            if room and any((PACKAGE / name).exists() for name in (room, f"{room}.py")):
                rooms.add(room)
    return rooms


def violations(importer: str, rooms: set[str]) -> list[str]:
    """What is wrong with ``importer`` importing ``rooms``: an empty list when nothing is."""
    problems = []
    for room in sorted(rooms - {importer}):
        if room not in LAYERS:
            problems.append(f"{room} is on no layer of docs/ARCHITECTURE.md")
        elif LAYERS[room] > LAYERS[importer]:
            problems.append(
                f"{room} (layer {LAYERS[room]}) is above {importer} (layer {LAYERS[importer]})"
            )
        elif importer in PURE and room in {"data", "checkpoints"}:
            problems.append(f"{importer} is pure computation and must not import {room}")
        elif importer == "checks" and room not in CHECKS_MAY_IMPORT:
            problems.append(f"checks may import only {sorted(CHECKS_MAY_IMPORT)}, not {room}")
    return problems


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_room_of_the_package_is_on_a_layer():
    rooms = {room_of(path) for path in MODULES}
    assert rooms - set(LAYERS) == set(), "add these to docs/ARCHITECTURE.md's layer list"
    assert set(LAYERS) - rooms - {ROOT_MODULE} == set(), (
        "the layer list names rooms that do not exist"
    )


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_imports_only_from_its_own_layer_or_below(path):
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    rooms = imported_rooms(path.read_text(encoding="utf-8"), parts)
    assert violations(room_of(path), rooms) == []


@pytest.mark.parametrize(
    ("importer", "source"),
    [
        ("models", "def baseline():\n    from aigc_course.data import load_tiny_shakespeare\n"),
        ("checks", "def check():\n    from aigc_course.trainers.gan import gan_step\n"),
        ("runtime", "def describe():\n    from aigc_course import data\n"),
        ("attention", "from aigc_course import checkpoints\n"),
        ("checks", "import aigc_course.cli\n"),
        ("data", "from .. import training\n"),
    ],
)
def test_the_rule_catches_crossing_imports(importer, source):
    """The three imports the layer rule was written against (and three more) are caught."""
    parts = (
        (importer, "module")
        if importer in {"models", "checks", "attention", "data"}
        else (importer,)
    )
    assert violations(importer, imported_rooms(source, parts)) != []


def test_layer_list_is_in_the_expected_order():
    order = ["runtime", "data", "checkpoints", "divergences", "models", "training", "metrics"]
    order += ["trainers", "checks", "cli"]
    assert [LAYERS[name] for name in order] == sorted(LAYERS[name] for name in order)
    assert len({LAYERS[name] for name in order}) == len(order)


def test_a_module_named_in_a_string_counts_as_an_import():
    """``importlib.import_module("aigc_course.trainers.gpt")`` and tables of module names."""
    source = 'TABLE = {"gpt": "aigc_course.trainers.gpt"}\n'
    assert imported_rooms(source) == {"trainers"}
    assert violations("checks", imported_rooms(source, ("checks", "x"))) != []
    assert imported_rooms('print("aigc_course.no_such_room")\n') == set()


BENCHMARKS = sorted((ROOT / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda p: p.name)
def test_benchmarks_use_the_package_below_its_command(path):
    """``benchmarks/`` stand above the package and run its trainers as the CLI does, without the
    CLI itself (its option checks come from ``validators``, as the CLI's do)."""
    rooms = imported_rooms(path.read_text(encoding="utf-8"))
    assert rooms <= set(LAYERS), f"{path.name} imports rooms on no layer: {rooms - set(LAYERS)}"
    assert "cli" not in rooms, f"{path.name} imports the CLI"
