"""The Chinese edition: notebooks built from the English ones and one translation file each.

Code is never translated by hand. ``translations/zh/notebooks/08_gpt.md`` holds the Chinese text of
every markdown cell of ``notebooks/08_gpt.ipynb``, each under a header line that names the cell and
the English text it was translated from::

    <!-- cell cell-03 · en 1a2b3c4d5e6f -->
    ## 1. 数据，以及要超越的基线
    ...

(``1a2b3c4d5e6f``: the first 12 hex digits of the SHA-256 of the English cell's source.) The
builder copies the English notebook (code, outputs, metadata), puts each Chinese text in place of
its English cell, points links and Colab badges at the Chinese notebooks, and writes the set-up
cell with the Chinese language line (:func:`notebook_tools.colab_setup_source`): the one line of
code in which the editions differ. ``exercises/zh/`` is made from ``solutions/zh/`` exactly as
``exercises/`` is made from ``solutions/``.

A translation is *stale* when its English cell changed after it was written (the hash), *missing*
when a cell has no entry, *untranslated* when an entry holds no Chinese, and *orphaned* when its
cell is gone. ``aigc-course build-translations --check`` lists each (the tests run it);
``--sync`` rewrites a translation file in the English cell order with the English text of every
missing cell under its header, ready to be translated.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from aigc_course.errors import CourseError
from aigc_course.notebook_tools import (
    ExerciseReport,
    colab_setup_source,
    make_exercise,
    notebook_text,
)

LANGUAGES = ("zh",)
TRANSLATED_FOLDERS = ("notebooks", "solutions")  # exercises/zh is built from solutions/zh
HASH_DIGITS = 12
_HEADER = re.compile(r"^<!-- cell (\S+) · en ([0-9a-f]+) -->$")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


class TranslationFormatError(CourseError, ValueError):
    """A translation file that cannot be read: text before the first header, a cell named twice."""


def source_hash(source: str) -> str:
    """The first 12 hex digits of the SHA-256 of an English cell's source (what a translation keeps)."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:HASH_DIGITS]


def has_chinese(text: str) -> bool:
    """True when ``text`` holds at least one CJK ideograph."""
    return bool(_CJK.search(text))


@dataclass
class Entry:
    """One translated cell: the hash of the English source it was made from, and the Chinese text."""

    english_hash: str
    text: str


def parse_translation(text: str, where: str) -> dict[str, Entry]:
    """Read a translation file: cell id -> :class:`Entry`, in file order."""
    entries: dict[str, Entry] = {}
    current: str | None = None
    lines: list[str] = []

    def close() -> None:
        if current is not None:
            entries[current].text = "\n".join(lines).strip("\n")

    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line.strip())
        if header:
            close()
            current, lines = header.group(1), []
            if current in entries:
                raise TranslationFormatError(
                    f"{where}, line {number}: cell {current} is translated twice; keep one entry"
                )
            entries[current] = Entry(header.group(2), "")
        elif current is None:
            if line.strip() and not line.lstrip().startswith("<!--"):
                raise TranslationFormatError(
                    f"{where}, line {number}: text before the first "
                    "'<!-- cell ID · en HASH -->' header; put it under its cell's header"
                )
        else:
            lines.append(line)
    close()
    return entries


def render_translation(entries: dict[str, Entry], english_path: str) -> str:
    """The text of a translation file (the inverse of :func:`parse_translation`)."""
    parts = [
        f"<!-- The Chinese text of {english_path}'s markdown cells; built into the Chinese edition by "
        "`aigc-course build-translations`. Each header names the cell and the English it was "
        "translated from. -->"
    ]
    for cell_id, entry in entries.items():
        parts.append(f"<!-- cell {cell_id} · en {entry.english_hash} -->\n{entry.text}")
    return "\n\n".join(parts) + "\n"


def translation_path(root: Path, english: Path, language: str) -> Path:
    """``translations/zh/notebooks/08_gpt.md`` for ``notebooks/08_gpt.ipynb``."""
    folder = english.parent.name
    return root / "translations" / language / folder / english.with_suffix(".md").name


def edition_path(english: Path, language: str) -> Path:
    """``notebooks/zh/08_gpt.ipynb`` for ``notebooks/08_gpt.ipynb``."""
    return english.parent / language / english.name


_RELATIVE_NOTEBOOK = re.compile(r"\]\(\.\./(notebooks|exercises|solutions)/([\w.-]+\.ipynb)\)")
_RELATIVE_OTHER = re.compile(r"\]\(\.\./(?!\.\./)")
_COLAB_NOTEBOOK = re.compile(
    r"(https://colab\.research\.google\.com/github/[^)\s]+?/blob/[^/)\s]+/)"
    r"(notebooks|exercises|solutions)/([\w.-]+\.ipynb)"
)


def localise_links(markdown: str, language: str) -> str:
    """Point a translated cell's links one folder deeper, and its notebook links at the edition.

    ``](../exercises/08_gpt.ipynb)`` becomes ``](../../exercises/zh/08_gpt.ipynb)``, other
    ``](../x)`` links ``](../../x)``, and Colab badges open ``notebooks/zh/...``. Links to sibling
    notebooks (``](04_self_attention.ipynb)``) already resolve inside the edition's folder.
    """
    markdown = _RELATIVE_NOTEBOOK.sub(rf"](../../\1/{language}/\2)", markdown)
    markdown = _RELATIVE_OTHER.sub("](../../", markdown)
    return _COLAB_NOTEBOOK.sub(rf"\1\2/{language}/\3", markdown)


@dataclass
class NotebookProblems:
    """What keeps one notebook's translation from being complete and current."""

    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    untranslated: list[str] = field(default_factory=list)
    orphaned: list[str] = field(default_factory=list)

    def lines(self, where: str) -> list[str]:
        kinds = [
            ("has no translation", self.missing),
            (
                "changed in English after it was translated (rewrite it, then give its header "
                "the new hash after the arrow)",
                self.stale,
            ),
            ("holds no Chinese yet", self.untranslated),
            ("is no longer in the English notebook (remove its entry)", self.orphaned),
        ]
        return [f"{where}: cell {', '.join(ids)} {what}" for what, ids in kinds if ids]


def translate_notebook(
    english: nbformat.NotebookNode, entries: dict[str, Entry], language: str
) -> tuple[nbformat.NotebookNode, NotebookProblems]:
    """The edition of ``english`` with ``entries`` in place of its markdown (a new notebook)."""
    edition = nbformat.from_dict(english)
    problems = NotebookProblems()
    ids = set()
    first_code = True
    for cell in edition.cells:
        ids.add(cell.get("id"))
        if cell.cell_type == "code" and first_code:
            first_code = False
            if cell.source == colab_setup_source():
                cell.source = colab_setup_source(language)
        if cell.cell_type != "markdown":
            continue
        entry = entries.get(cell.id)
        if entry is None:
            problems.missing.append(cell.id)
            continue
        if entry.english_hash != source_hash(cell.source):
            problems.stale.append(
                f"{cell.id} (en {entry.english_hash} → {source_hash(cell.source)})"
            )
        if not has_chinese(entry.text):
            problems.untranslated.append(cell.id)
        cell.source = localise_links(entry.text, language)
    problems.orphaned = [cell_id for cell_id in entries if cell_id not in ids]
    edition.metadata["language"] = language
    return edition, problems


def synced_entries(english: nbformat.NotebookNode, entries: dict[str, Entry]) -> dict[str, Entry]:
    """``entries`` in the English cell order, with every missing cell's English text to translate.

    Orphaned entries are dropped; stale ones are kept with their old hash, so they stay flagged.
    """
    synced = {}
    for cell in english.cells:
        if cell.cell_type == "markdown":
            synced[cell.id] = entries.get(cell.id) or Entry(source_hash(cell.source), cell.source)
    return synced


@dataclass
class TranslationReport(ExerciseReport):
    """What :func:`build_translations` wrote, found out of date, or found wrong in a translation."""

    problems: list[str] = field(default_factory=list)


BUILT_DIFFERS = "differs from what its English notebook and translation build"


def build_translations(
    root: Path, language: str = "zh", check: bool = False, sync: bool = False
) -> TranslationReport:
    """Build ``notebooks/zh``, ``solutions/zh`` and ``exercises/zh`` from English and translations.

    With ``check`` nothing is written; with ``sync`` only the translation files are rewritten
    (English cell order; the English text of each missing cell under its header).
    """
    if language not in LANGUAGES:
        raise CourseError(f"no edition in {language!r}; the editions are: {', '.join(LANGUAGES)}")
    report = TranslationReport()
    for folder in TRANSLATED_FOLDERS:
        english_files = sorted((root / folder).glob("*.ipynb"))
        for english_file in english_files:
            relative = english_file.relative_to(root).as_posix()
            english = nbformat.read(english_file, as_version=4)
            source = translation_path(root, english_file, language)
            text = source.read_text(encoding="utf-8") if source.exists() else ""
            entries = parse_translation(text, str(source.relative_to(root)))
            if sync:
                rendered = render_translation(synced_entries(english, entries), relative)
                report.compare_or_write(source, rendered, root, check, BUILT_DIFFERS)
                continue
            edition, problems = translate_notebook(english, entries, language)
            report.problems += problems.lines(str(source.relative_to(root)))
            target = edition_path(english_file, language)
            report.compare_or_write(target, notebook_text(edition), root, check, BUILT_DIFFERS)
            if folder == "solutions":
                exercise_file = root / "exercises" / language / english_file.name
                exercise = make_exercise(
                    edition,
                    target.relative_to(root).as_posix(),
                    exercise_file.relative_to(root).as_posix(),
                )
                report.compare_or_write(
                    exercise_file, notebook_text(exercise), root, check, BUILT_DIFFERS
                )
        if not sync:
            names = {path.name for path in english_files}
            folders = [folder] + (["exercises"] if folder == "solutions" else [])
            for built_folder in folders:
                for stale in sorted((root / built_folder / language).glob("*.ipynb")):
                    if stale.name not in names:
                        report.out_of_date.append(
                            f"{stale.relative_to(root)}: has no English {folder}/{stale.name} (remove it)"
                        )
    return report
