"""Environment variables: declared once (aigc_course/settings.py), read only through it, validated
like options, and shown by ``doctor``."""

from __future__ import annotations

import re

import pytest

from aigc_course import cli, doctor, runtime, settings
from aigc_course.settings import RuntimeConfigError
from tests.helpers import ROOT


def test_every_aigc_variable_the_package_reads_is_declared_and_read_through_settings():
    """No module reads an ``AIGC_*`` variable from ``os.environ`` itself (one place validates
    them), and every name the package mentions is declared."""
    for path in sorted((ROOT / "aigc_course").rglob("*.py")):
        if path.name == "settings.py":
            continue
        text = path.read_text(encoding="utf-8")
        # (an assignment, as in the notebooks' set-up cell that notebook_tools writes, is no read)
        direct = re.findall(r"environ(?:\.get)?[\[(]\s*[\"'](AIGC_\w+)[\"'][\])](?!\s*=[^=])", text)
        assert not direct, f"{path.name} reads {direct} itself"
        for name in set(re.findall(r"\bAIGC_[A-Z_]+\b", text)) - {"AIGC_TIMING"}:  # a print tag
            assert name in settings.VARIABLES, f"{path.name} mentions {name}, not declared"


@pytest.mark.parametrize("value, expected", [("1", True), ("TRUE", True), ("On", True),
                                             ("yes", True), ("0", False), ("OFF", False),
                                             ("False", False), ("", False), ("  no ", False)])  # fmt: skip
def test_switches_read_any_case(monkeypatch, value, expected):
    monkeypatch.setenv("AIGC_OFFLINE", value)
    assert settings.switch("AIGC_OFFLINE") is expected


@pytest.mark.parametrize("name", [n for n, v in settings.VARIABLES.items() if v.kind == "switch"])
def test_a_switch_with_another_value_is_refused_naming_it(monkeypatch, name):
    monkeypatch.setenv(name, "maybe")
    with pytest.raises(RuntimeConfigError, match=f"{name}='maybe' is not a switch: use 1 or 0"):
        settings.switch(name)


def test_compile_is_switched_off_in_any_case_and_a_bad_value_is_an_error(monkeypatch):
    assert runtime.compile_support("cuda", "Linux", True, "OFF") == (
        False,
        "switched off by AIGC_COMPILE",
    )
    assert runtime.compile_support("cuda", "Linux", True, "1")[0] is True
    with pytest.raises(RuntimeConfigError, match="AIGC_COMPILE='sometimes'"):
        runtime.compile_support("cuda", "Linux", True, "sometimes")


def test_profile_choice_and_timeout_are_validated(monkeypatch):
    monkeypatch.setenv("AIGC_PROFILE", "GPU")
    assert settings.choice("AIGC_PROFILE") == "gpu"
    monkeypatch.setenv("AIGC_PROFILE", "fast")
    with pytest.raises(
        RuntimeConfigError, match="AIGC_PROFILE='fast' is not one of smoke, cpu, gpu"
    ):
        runtime.get_profile()
    monkeypatch.setenv("AIGC_DIST_TIMEOUT", "1e9")
    with pytest.raises(RuntimeConfigError, match="at most 604,800"):
        settings.dist_timeout()


def test_doctor_prints_every_variable_and_flags_bad_and_unknown_ones(monkeypatch, capsys):
    monkeypatch.setenv("AIGC_COMPILE", "maybe")
    monkeypatch.setenv("AIGC_PROFLE", "cpu")  # a misspelling
    assert cli.main(["doctor"]) == 2
    out = capsys.readouterr().out
    for name in settings.VARIABLES:
        assert re.search(rf"^  {name} +", out, flags=re.MULTILINE), name
    assert "AIGC_COMPILE             maybe  INVALID" in out
    assert (
        "AIGC_PROFLE              not a variable the course reads (did you mean AIGC_PROFILE?)"
        in out
    )
    assert "NOT READY:\n  - AIGC_COMPILE='maybe' is not a switch" in out


def test_doctor_checks_that_the_cache_can_be_written(monkeypatch, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv(
        "AIGC_DATA_DIR", str(tmp_path / "a-file" / "cache")
    )  # no folder can be there
    assert cli.main(["doctor"]) == 2
    out = capsys.readouterr().out
    assert "NOT WRITABLE" in out and "READY: everything" not in out
    assert doctor.cache_problem().startswith(f"{tmp_path / 'a-file'} is a file, not a folder")
    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path / "fresh"))
    assert doctor.cache_problem() is None
    assert not any(tmp_path.joinpath("fresh").iterdir()), "the probe file is removed"


def test_a_command_refuses_a_bad_variable_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AIGC_OFFLINE", "perhaps")
    assert cli.main(["data", "fetch", "tinyshakespeare"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: AIGC_OFFLINE='perhaps' is not a switch") and "\n" not in err
