"""Fixtures shared by several test modules.

The course's modules are imported inside the fixtures: pytest imports this file in its main
process too, which under xdist runs no test and would otherwise import torch for nothing.
"""

from __future__ import annotations

import dataclasses
import shutil

import pytest


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """A machine with no data at all: empty cache, no search path, no system copy, no network."""
    from aigc_course.data import sources
    from tests.helpers import closed_port_url

    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("AIGC_DATA_PATH", raising=False)
    monkeypatch.delenv("AIGC_OFFLINE", raising=False)
    for name, spec in list(sources.DATASETS.items()):
        unreachable = tuple(
            sources.DataFile(f.name, f.checksum, (closed_port_url() + f.name,)) for f in spec.files
        )
        offline_spec = dataclasses.replace(spec, files=unreachable, system_dirs=())
        monkeypatch.setitem(sources.DATASETS, name, offline_spec)


@pytest.fixture
def pretrained_copy(tmp_path, monkeypatch):
    """The shipped checkpoints copied to a folder the test may change or damage, standing in for
    the package's ``pretrained/``."""
    from aigc_course import checkpoints

    folder = tmp_path / "pretrained"
    shutil.copytree(checkpoints.PRETRAINED_DIR, folder)
    monkeypatch.setattr(checkpoints, "PRETRAINED_DIR", folder)
    monkeypatch.setattr(checkpoints, "MANIFEST", folder / "manifest.json")
    return folder
