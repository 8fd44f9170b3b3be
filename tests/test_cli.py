"""The ``aigc-course`` command: doctor, data status and fetch (exercises: see test_exercises.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aigc_course import __version__, cli
from aigc_course.data import sources
from tests.helpers import FileServer, fixture_spec, make_idx_dataset


def test_console_script_is_installed():
    result = subprocess.run(
        [sys.executable, "-m", "aigc_course.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.strip() == f"aigc-course {__version__}"


def test_doctor_with_data_present_says_ready(capsys, monkeypatch):
    statuses = sources.dataset_status()
    if not all(status.ready for status in statuses if status.spec.required):
        pytest.skip("the course data is not on this machine")
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "device" in out and "profile" in out and "precision" in out
    assert "READY: everything the lessons need is here." in out


def test_doctor_without_fashion_mnist_fails_with_the_fix(no_data, capsys):
    assert cli.main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "NOT READY: required data is missing." in out
    assert "Fashion-MNIST: on a machine with internet: aigc-course data fetch fashion-mnist" in out
    assert "sudo apt-get install dataset-fashion-mnist" in out
    assert (
        "Tiny Shakespeare: on a machine with internet: aigc-course data fetch tinyshakespeare"
        in out
    )


def test_doctor_reports_a_bad_device_setting(monkeypatch, capsys):
    monkeypatch.setenv("AIGC_DEVICE", "warp-drive")
    assert cli.main(["doctor"]) == 2
    out = capsys.readouterr().out
    assert "NOT READY:\n  - AIGC_DEVICE='warp-drive' is not a device name" in out
    assert "device     NOT CHOSEN: AIGC_DEVICE='warp-drive'" in out  # the report still comes


def test_data_fetch_offline_fails_clearly(no_data, capsys):
    assert cli.main(["data", "fetch", "fashion-mnist"]) == 1
    err = capsys.readouterr().err
    assert "FAILED fashion-mnist: Fashion-MNIST file" in err and "cannot connect" in err
    assert cli.main(["data", "fetch", "cifar"]) == 2  # as `data status cifar`: a bad argument
    assert "error: unknown data set 'cifar'" in capsys.readouterr().err


def test_data_fetch_fills_the_cache_from_a_server(tmp_path, monkeypatch, capsys):
    served = tmp_path / "served"
    make_idx_dataset(served)
    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("AIGC_OFFLINE", raising=False)
    with FileServer(served) as server:
        monkeypatch.setitem(
            sources.DATASETS, "fixture", fixture_spec("fixture", served, (server.url,))
        )
        assert cli.main(["data", "status", "fixture"]) == 0
        assert "missing" in capsys.readouterr().out
        assert cli.main(["data", "fetch", "fixture"]) == 0
    assert (
        f"ok     fixture: 4 file(s) verified in {tmp_path / 'cache' / 'fixture'}"
        in capsys.readouterr().out
    )
    assert sorted(path.name for path in (tmp_path / "cache" / "fixture").iterdir()) == sorted(
        path.name for path in served.iterdir()
    )
