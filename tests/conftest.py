"""Fixtures shared by several test modules."""

from __future__ import annotations

import dataclasses

import pytest

from aigc_course.data import sources
from tests.helpers import closed_port_url


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """A machine with no data at all: empty cache, no search path, no system copy, no network."""
    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("AIGC_DATA_PATH", raising=False)
    monkeypatch.delenv("AIGC_OFFLINE", raising=False)
    for name, spec in list(sources.DATASETS.items()):
        unreachable = tuple(
            sources.DataFile(f.name, f.checksum, (closed_port_url() + f.name,)) for f in spec.files
        )
        offline_spec = dataclasses.replace(spec, files=unreachable, system_dirs=())
        monkeypatch.setitem(sources.DATASETS, name, offline_spec)
