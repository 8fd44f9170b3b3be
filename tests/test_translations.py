"""The Chinese edition (aigc_course/translations.py): complete, current, built, and code-identical.

A changed English markdown cell makes its translation stale (the hash), a new cell has no entry,
a deleted one leaves an orphan, and a built notebook that differs from what the builder makes is
out of date: ``aigc-course build-translations --check`` lists each, and the first test runs it.
"""

from __future__ import annotations

import json
import re
import shutil

import mistune
import nbformat
import pytest

from aigc_course import translations
from aigc_course.notebook_tools import colab_setup_source, notebook_text
from aigc_course.translations import (
    Entry,
    TranslationFormatError,
    build_translations,
    localise_links,
    parse_translation,
    render_translation,
    source_hash,
)
from tests.helpers import ROOT

EDITION_FOLDERS = ("notebooks", "solutions", "exercises")


def test_the_chinese_edition_is_complete_current_and_built():
    report = build_translations(ROOT, "zh", check=True)
    assert report.problems == [], "\n".join(report.problems)
    assert report.out_of_date == [], (
        "\n".join(report.out_of_date) + "\nRun `aigc-course build-translations`."
    )
    assert len(report.up_to_date) == 3 * 13  # lessons, solutions, exercises


@pytest.mark.parametrize("folder", EDITION_FOLDERS)
def test_every_english_notebook_has_its_chinese_one(folder):
    english = sorted(path.name for path in (ROOT / folder).glob("*.ipynb"))
    chinese = sorted(path.name for path in (ROOT / folder / "zh").glob("*.ipynb"))
    assert chinese == english


@pytest.mark.parametrize("folder", EDITION_FOLDERS)
def test_code_is_the_english_code_but_for_the_language_line(folder):
    """Code is never translated: every code cell is the English one, outputs included; the set-up
    cell differs in its language line alone (the line that selects Chinese feedback)."""
    for english_path in sorted((ROOT / folder).glob("*.ipynb")):
        english = nbformat.read(english_path, as_version=4)
        chinese = nbformat.read(ROOT / folder / "zh" / english_path.name, as_version=4)
        pairs = list(zip(english.cells, chinese.cells, strict=True))
        code = [(e, c) for e, c in pairs if e.cell_type == "code"]
        assert code[0][0].source == colab_setup_source("en")
        assert code[0][1].source == colab_setup_source("zh")
        differing = [
            line
            for line in colab_setup_source("zh").splitlines()
            if line not in colab_setup_source("en").splitlines()
        ]
        assert differing == ['os.environ["AIGC_LANG"] = "zh"  # ' + translations_comment()]
        for e, c in code[1:]:
            assert (e.source, e.get("outputs")) == (c.source, c.get("outputs")), english_path.name
        assert [e.cell_type for e, _c in pairs] == [c.cell_type for _e, c in pairs]


def translations_comment() -> str:
    from aigc_course.notebook_tools import LANGUAGE_COMMENTS

    return LANGUAGE_COMMENTS["zh"]


def _markdown_of(folder: str):
    for path in sorted((ROOT / folder / "zh").glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "markdown":
                yield path.name, cell


@pytest.mark.parametrize("folder", EDITION_FOLDERS)
def test_chinese_markdown_renders_its_emphasis(folder):
    """CommonMark does not close ``**`` between full-width punctuation and a CJK character
    (``**时间：**约``): such a cell would show its asterisks. Every ``**`` must render."""
    for name, cell in _markdown_of(folder):
        text = re.sub(r"\$\$.*?\$\$|\$[^$\n]+\$|`[^`\n]+`", "", cell.source, flags=re.DOTALL)
        html = mistune.html(text)
        html = re.sub(r"<code>.*?</code>|<pre>.*?</pre>", "", html, flags=re.DOTALL)
        assert "**" not in html, f"{name}, cell {cell.id}: {html[:300]}"


@pytest.mark.parametrize("folder", EDITION_FOLDERS)
def test_chinese_links_point_inside_the_edition(folder):
    for name, cell in _markdown_of(folder):
        for target in re.findall(r"\]\(([^)\s]+)\)", cell.source):
            if target.startswith("https://colab.research.google.com/github/"):
                assert f"/{folder}/zh/" in target, (name, target)
            elif not target.startswith(("http", "#")):
                resolved = (ROOT / folder / "zh" / target.split("#")[0]).resolve()
                assert resolved.exists(), (name, target)


# --------------------------------------------------------------------------------------------
# The builder on a small repository of its own
# --------------------------------------------------------------------------------------------


def _tiny_repository(tmp_path):
    """A repository with one lesson and one exercise notebook, each with a markdown cell."""
    for folder, title in (("notebooks", "# 01 · A lesson"), ("solutions", "# Exercises 01")):
        (tmp_path / folder).mkdir()
        notebook = nbformat.v4.new_notebook()
        notebook.cells = [
            nbformat.v4.new_markdown_cell(title, id="title"),
            nbformat.v4.new_code_cell(colab_setup_source(), id="setup"),
            nbformat.v4.new_markdown_cell("See [lesson 02](../notebooks/02_x.ipynb).", id="prose"),
            nbformat.v4.new_code_cell("x = 1\n### BEGIN SOLUTION\ny = 2\n### END SOLUTION", id="c"),
        ]
        (tmp_path / folder / "01_a.ipynb").write_text(notebook_text(notebook), encoding="utf-8")
    return tmp_path


def _translate_all(root):
    """Sync, then put Chinese under every header (what a translator does)."""
    build_translations(root, "zh", sync=True)
    for path in (root / "translations" / "zh").rglob("*.md"):
        entries = parse_translation(path.read_text(encoding="utf-8"), path.name)
        for entry in entries.values():
            entry.text = "中文：" + entry.text
        path.write_text(render_translation(entries, path.name), encoding="utf-8")


def test_the_builder_builds_then_finds_nothing_to_do(tmp_path):
    root = _tiny_repository(tmp_path)
    _translate_all(root)
    report = build_translations(root, "zh")
    assert report.problems == []
    assert sorted(p.relative_to(root).as_posix() for p in report.written) == [
        "exercises/zh/01_a.ipynb",
        "notebooks/zh/01_a.ipynb",
        "solutions/zh/01_a.ipynb",
    ]
    assert build_translations(root, "zh", check=True).out_of_date == []
    exercise = json.loads((root / "exercises/zh/01_a.ipynb").read_text(encoding="utf-8"))
    code = "".join(exercise["cells"][3]["source"])
    assert "NotImplementedError" in code and "y = 2" not in code  # made like exercises/
    prose = "".join(exercise["cells"][2]["source"])
    assert prose == "中文：See [lesson 02](../../notebooks/zh/02_x.ipynb)."


def test_a_changed_english_cell_makes_its_translation_stale(tmp_path):
    root = _tiny_repository(tmp_path)
    _translate_all(root)
    build_translations(root, "zh")
    path = root / "notebooks" / "01_a.ipynb"
    notebook = nbformat.read(path, as_version=4)
    notebook.cells[2].source += " And more."
    path.write_text(notebook_text(notebook), encoding="utf-8")
    report = build_translations(root, "zh", check=True)
    before = source_hash("See [lesson 02](../notebooks/02_x.ipynb).")
    after = source_hash(notebook.cells[2].source)
    assert report.problems == [
        f"translations/zh/notebooks/01_a.md: cell prose (en {before} → {after}) changed in "
        "English after it was translated (rewrite it, then give its header the new hash after "
        "the arrow)"
    ]
    assert report.out_of_date == []  # the Chinese text itself did not change


def test_new_deleted_and_untranslated_cells_are_named(tmp_path):
    root = _tiny_repository(tmp_path)
    _translate_all(root)
    path = root / "notebooks" / "01_a.ipynb"
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(nbformat.v4.new_markdown_cell("A new cell.", id="new"))
    del notebook.cells[2]  # "prose" is gone
    path.write_text(notebook_text(notebook), encoding="utf-8")
    solution = root / "translations/zh/solutions/01_a.md"
    solution.write_text(solution.read_text(encoding="utf-8").replace("中文：", ""), "utf-8")
    problems = build_translations(root, "zh", check=True).problems
    assert "translations/zh/notebooks/01_a.md: cell new has no translation" in problems
    assert (
        "translations/zh/notebooks/01_a.md: cell prose is no longer in the English notebook "
        "(remove its entry)" in problems
    )
    assert "translations/zh/solutions/01_a.md: cell title, prose holds no Chinese yet" in problems
    # --sync adds the new cell's English under its header and drops the orphan
    build_translations(root, "zh", sync=True)
    entries = parse_translation((root / "translations/zh/notebooks/01_a.md").read_text("utf-8"), "")
    assert list(entries) == ["title", "new"]
    assert entries["new"] == Entry(source_hash("A new cell."), "A new cell.")


def test_a_built_notebook_edited_by_hand_is_out_of_date(tmp_path):
    root = _tiny_repository(tmp_path)
    _translate_all(root)
    build_translations(root, "zh")
    built = root / "notebooks/zh/01_a.ipynb"
    built.write_text(built.read_text(encoding="utf-8").replace("x = 1", "x = 2"), "utf-8")
    assert build_translations(root, "zh", check=True).out_of_date == [
        "notebooks/zh/01_a.ipynb: differs from what its English notebook and translation build"
    ]
    stray = root / "solutions/zh/99_gone.ipynb"
    shutil.copy(built, stray)
    assert any("99_gone" in line for line in build_translations(root, "zh", check=True).out_of_date)


@pytest.mark.parametrize(
    "text, message",
    [
        ("stray text\n<!-- cell a · en 0123 -->\n中文", "text before the first"),
        ("<!-- cell a · en 0123 -->\n中文\n<!-- cell a · en 0123 -->\n又", "translated twice"),
    ],
)
def test_a_malformed_translation_file_is_refused_with_its_line(text, message):
    with pytest.raises(TranslationFormatError, match=message):
        parse_translation(text, "x.md")


def test_links_move_one_folder_down_and_badges_open_the_edition():
    badge = (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        "(https://colab.research.google.com/github/aigc-course/aigc-course/blob/main/notebooks/08_gpt.ipynb)"
    )
    assert localise_links(badge, "zh").endswith("/blob/main/notebooks/zh/08_gpt.ipynb)")
    assert localise_links("[x](../docs/SCALING.md)", "zh") == "[x](../../docs/SCALING.md)"
    assert localise_links("[x](../exercises/08_gpt.ipynb)", "zh") == (
        "[x](../../exercises/zh/08_gpt.ipynb)"
    )
    assert localise_links("[x](04_self_attention.ipynb)", "zh") == "[x](04_self_attention.ipynb)"


def test_every_edition_is_a_language_the_messages_speak():
    from aigc_course import i18n

    assert set(translations.LANGUAGES) <= set(i18n.LANGUAGES)


_FIGURE_TEXT = re.compile(r"set_title|set_xlabel|set_ylabel|suptitle|\.text\(|annotate\(|label=")


def test_figures_draw_no_chinese_characters():
    """The Chinese notebooks run the English code, so their figures are the English figures: text
    in symbols and English labels, never a CJK character that a font without CJK glyphs (Colab's
    default) would draw as a box. Checked on the code that writes figure text, and on every
    committed output (matplotlib warns "Glyph ... missing from font" where it draws a box)."""
    sources = [
        (path.name, "".join(cell["source"]), cell.get("outputs", []))
        for folder in ("notebooks", "solutions")
        for path in sorted((ROOT / folder).glob("*.ipynb"))
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]
        if cell["cell_type"] == "code"
    ]
    sources += [
        (path.name, path.read_text(encoding="utf-8"), [])
        for path in (ROOT / "aigc_course" / "plots.py", ROOT / "aigc_course" / "widgets.py")
    ]
    for name, source, outputs in sources:
        for line in source.splitlines():
            if _FIGURE_TEXT.search(line):
                assert not translations.has_chinese(line), (name, line)
        for output in outputs:
            assert "missing from font" not in "".join(output.get("text", "")), name


def test_the_chinese_readme_lists_every_chinese_lesson_with_its_badge():
    from aigc_course.notebook_tools import colab_badge

    readme = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
    for path in sorted((ROOT / "notebooks" / "zh").glob("*.ipynb")):
        assert f"](notebooks/zh/{path.name})" in readme, path.name
        assert f"](exercises/zh/{path.name})" in readme, path.name
        assert colab_badge(f"notebooks/zh/{path.name}") in readme, path.name
    assert "](README.zh-CN.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "](docs/INSTRUCTOR.zh-CN.md)" in readme


def _duration_in_chinese(english: str) -> str:
    """README's "3 min 28 s" as README.zh-CN's "3分28秒" (and "57 s" as "57秒")."""
    return english.replace(" min ", "分").replace(" s", "秒").replace("**", "")


def test_the_chinese_readme_time_table_is_readmes():
    """README.zh-CN copies README's cpu time table: a lesson re-timed there must be re-timed here."""
    english = (ROOT / "README.md").read_text(encoding="utf-8").split("time-table:cpu:begin")[1]
    chinese = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
    rows = re.findall(r"\| `notebooks/(\d\d_\w+\.ipynb)` \| cpu \| [^|]+ \| ([^|]+) \|", english)
    assert len(rows) == 13
    total = re.search(r"\| \*\*all 13\*\* \|  \|  \| \*\*([^*]+)\*\*", english).group(1)
    assert f"**{_duration_in_chinese(total)}**" in chinese, total
    for name, duration in rows:
        wanted = _duration_in_chinese(duration.strip())
        assert re.search(rf"`notebooks/zh/{name}` \| cpu \| [^|]+ \| {wanted} \|", chinese), (
            f"README.zh-CN.md: {name} should take {wanted} (README.md: {duration.strip()})"
        )


def test_the_chinese_instructor_guide_has_the_guides_times():
    """docs/INSTRUCTOR.zh-CN.md copies INSTRUCTOR.md's per-lesson times (teaching, exercises, Run All)."""
    row = r"\| \[{name}[^\]]*\]\(\.\./notebooks/{folder}(\d\d)_\w+\.ipynb\) \| ([^|]+) \| ([^|]+) \| ([^|]+) \|"
    english = (ROOT / "docs" / "INSTRUCTOR.md").read_text(encoding="utf-8")
    chinese = (ROOT / "docs" / "INSTRUCTOR.zh-CN.md").read_text(encoding="utf-8")
    wanted = {
        number: (teach.strip().replace(" min", "分钟"), exercises.strip().replace(" min", "分钟"),
                 _duration_in_chinese(run.strip()))
        for number, teach, exercises, run in re.findall(row.format(name="", folder=""), english)
    }  # fmt: skip
    found = {
        number: (teach.strip(), exercises.strip(), run.strip())
        for number, teach, exercises, run in re.findall(row.format(name="", folder="zh/"), chinese)
    }
    assert len(wanted) == 13 and found == wanted
