"""Messages in Chinese (aigc_course/i18n.py): every marked message has its Chinese entry, the
compiled catalogue is the one its source says, and each kind of message a learner meets (a check's
feedback, an error, lesson 00's report) comes out in Chinese when the Chinese notebooks ask for it."""

from __future__ import annotations

import gettext
import os
import re
import string
import subprocess
import sys

import pytest
import torch
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from aigc_course import cli, i18n
from aigc_course.notebook_tools import colab_setup_source
from aigc_course.translations import has_chinese
from tests.helpers import ROOT

PO_FILE = i18n.LOCALE_DIR / "zh" / "LC_MESSAGES" / f"{i18n.DOMAIN}.po"
MO_FILE = PO_FILE.with_suffix(".mo")
KEYWORDS = {"_": None, "N_": None}


def marked_messages() -> set[str]:
    """Every message the package marks with ``_("...")`` or ``N_("...")``."""
    found = extract_from_dir(
        str(ROOT), method_map=[("aigc_course/**.py", "python")], keywords=KEYWORDS
    )
    return {message for _file, _line, message, _comments, _context in found}


def catalogue():
    with PO_FILE.open("rb") as handle:
        return read_po(handle)


def fields(text: str) -> list[str]:
    return sorted(name for _lit, name, _spec, _conv in string.Formatter().parse(text) if name)


def test_every_marked_message_has_a_chinese_entry():
    entries = {message.id: message for message in catalogue() if message.id}
    missing = sorted(marked_messages() - set(entries))
    assert missing == [], f"{len(missing)} messages without an entry, e.g. {missing[:5]}"
    empty = sorted(m for m in marked_messages() if not entries[m].string or entries[m].fuzzy)
    assert empty == [], f"{len(empty)} messages without Chinese, e.g. {empty[:5]}"


def test_no_entry_outlives_its_message():
    obsolete = sorted({m.id for m in catalogue() if m.id} - marked_messages())
    assert obsolete == [], f"entries no message uses any more (remove them): {obsolete[:5]}"


def test_translations_keep_the_placeholders_and_speak_chinese():
    for message in catalogue():
        if not message.id:
            continue
        assert fields(message.string) == fields(message.id), (message.id, message.string)
        if re.search(r"[A-Za-z]{4,} [A-Za-z]{2,}", message.id):  # a phrase, not a symbol
            assert has_chinese(message.string), (message.id, message.string)


def test_the_compiled_catalogue_is_its_source(tmp_path):
    """The ``.mo`` gettext reads is what compiling the ``.po`` gives (``pybabel compile``)."""
    compiled = tmp_path / "compiled.mo"
    with compiled.open("wb") as handle:
        write_mo(handle, catalogue())
    with compiled.open("rb") as fresh, MO_FILE.open("rb") as shipped:
        fresh_table = gettext.GNUTranslations(fresh)._catalog
        shipped_table = gettext.GNUTranslations(shipped)._catalog
    assert shipped_table == fresh_table, "run: pybabel compile -d aigc_course/locale -D aigc_course"


def test_english_is_the_message_itself_and_chinese_its_entry(monkeypatch):
    monkeypatch.setenv("AIGC_LANG", "en")
    assert i18n._("wrong shape: expected {expected}, got {got}").startswith("wrong shape")
    monkeypatch.setenv("AIGC_LANG", "zh")
    assert i18n._("wrong shape: expected {expected}, got {got}") == (
        "形状不对：应为 {expected}，得到的是 {got}"
    )
    assert i18n._("a message the catalogue has never seen") == (
        "a message the catalogue has never seen"
    )


def test_the_chinese_set_up_cell_selects_chinese(monkeypatch):
    monkeypatch.setenv("AIGC_LANG", "en")
    exec(colab_setup_source("zh"), {})  # what the first cell of a Chinese notebook runs
    assert os.environ["AIGC_LANG"] == "zh" and i18n.language() == "zh"
    exec(colab_setup_source("en"), {})
    assert i18n.language() == "en"


# --------------------------------------------------------------------------------------------
# A test per kind of message
# --------------------------------------------------------------------------------------------


def test_check_feedback_is_in_chinese(monkeypatch, capsys):
    from aigc_course import checks as check

    monkeypatch.setenv("AIGC_LANG", "zh")

    def literal_softmax(logits, dim=-1):
        return logits.exp() / logits.exp().sum(dim=dim, keepdim=True)

    def not_yet(logits, dim=-1):
        raise NotImplementedError

    assert check.stable_softmax(literal_softmax, strict=False) is False
    assert check.stable_softmax(not_yet, strict=False) is False
    assert check.stable_softmax(lambda x, dim=-1: torch.softmax(x, dim), strict=False) is True
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[0].startswith("❌ stable_softmax: 结果中含有 NaN 或 inf")
    assert all(has_chinese(line) for line in printed), printed
    assert printed[-1].startswith("✅ stable_softmax: 通过（")


def test_every_check_mistake_is_named_in_chinese(monkeypatch, capsys):
    """The catalogue of wrong answers of every check (tests/test_check_catalogues.py), run in
    Chinese: each verdict and hint line a learner reads holds Chinese."""
    from aigc_course import checks
    from tests.test_check_catalogues import CATALOGUE

    monkeypatch.setenv("AIGC_LANG", "zh")
    for check, entries in CATALOGUE.items():
        for name, wrong, _words in entries:
            assert getattr(checks, check)(wrong, strict=False) is False
            for line in capsys.readouterr().out.strip().splitlines():
                assert has_chinese(line), (check, name, line)


def _command(*argv: str, language: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "AIGC_LANG": language}
    return subprocess.run(
        [sys.executable, "-m", "aigc_course.cli", *argv],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )


def test_an_error_is_one_line_in_chinese(monkeypatch, capsys):
    """In a real process (Chinese on a real stderr, a pipe); the English one, in this process."""
    chinese = _command("train", "vae", "--latent-dim", "0", language="zh")
    monkeypatch.setenv("AIGC_LANG", "en")
    with pytest.raises(SystemExit) as exit_:  # argparse's usage error, as in a process
        cli.main(["train", "vae", "--latent-dim", "0"])
    english = capsys.readouterr().err
    assert exit_.value.code == chinese.returncode == 2
    assert "Traceback" not in chinese.stderr
    line = chinese.stderr.strip().splitlines()[-1]
    assert has_chinese(line) and "--latent-dim" in line, chinese.stderr
    assert "--latent-dim" in english and not has_chinese(english), english


def test_lesson_00s_report_is_in_chinese(monkeypatch):
    from aigc_course import doctor

    monkeypatch.setenv("AIGC_LANG", "zh")
    report = doctor.environment_report().splitlines()
    labels = [line.split()[0] for line in report if not line.startswith(" ")]
    assert {"设备", "运行配置", "精度", "数据缓存", "数据", "环境变量"} <= set(labels), labels
    unset = [
        line
        for line in report
        if line.startswith("  AIGC_") and not os.environ.get(line.split()[0])
    ]
    assert unset and all(has_chinese(line) for line in unset), unset  # "未设置：" and what happens
    monkeypatch.setenv("AIGC_LANG", "en")
    assert not any(has_chinese(line) for line in doctor.environment_report().splitlines()[:8])


@pytest.mark.parametrize("module", ["aigc_course.i18n", "aigc_course.checks"])
def test_babel_is_not_needed_at_run_time(module):
    """gettext (the standard library) reads the catalogue; Babel only edits it."""
    code = f"import sys, {module}; print('babel' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_an_invalid_language_is_reported_in_english_not_a_crash():
    result = _command("doctor", language="xx")
    assert "RecursionError" not in result.stderr and "Traceback" not in result.stderr
    assert "AIGC_LANG='xx' is not one of en, zh" in result.stdout, result.stdout[-500:]
