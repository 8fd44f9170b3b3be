"""Finding, verifying and downloading data files (against a local HTTP server, never the internet)."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import pytest

from aigc_course.data import sources
from aigc_course.data.sources import (
    Checksum,
    DataNotFoundError,
    DownloadError,
    download,
    find_local,
    locate,
)
from tests.helpers import (
    FileServer,
    closed_port_url,
    fixture_spec,
    make_idx_dataset,
    require,
    sha256_of,
)

FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache, no extra search path, downloads allowed."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("AIGC_DATA_DIR", str(folder))
    monkeypatch.delenv("AIGC_DATA_PATH", raising=False)
    monkeypatch.delenv("AIGC_OFFLINE", raising=False)
    return folder


@pytest.fixture
def served(tmp_path):
    """Fixture IDX files served over HTTP on 127.0.0.1."""
    folder = tmp_path / "served"
    arrays = make_idx_dataset(folder)
    with FileServer(folder) as server:
        yield server, folder, arrays


def leftovers(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()] if folder.exists() else []


# --------------------------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------------------------


def test_checksum_of_decompressed_content_ignores_how_it_was_compressed(tmp_path):
    payload = b"the same bytes " * 1000
    fast, best = tmp_path / "fast.gz", tmp_path / "best.gz"
    fast.write_bytes(gzip.compress(payload, compresslevel=1, mtime=0))
    best.write_bytes(gzip.compress(payload, compresslevel=9, mtime=12345))
    assert fast.read_bytes() != best.read_bytes()
    checksum = Checksum("sha256", sha256_of(payload), decompressed=True)
    assert checksum.problem(fast) is None
    assert checksum.problem(best) is None


def test_checksum_reports_mismatch_and_truncated_gzip(tmp_path):
    payload = bytes(range(256)) * 400
    good = tmp_path / "good.gz"
    good.write_bytes(gzip.compress(payload))
    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(good.read_bytes()[:-20])
    checksum = Checksum("sha256", sha256_of(payload), decompressed=True)
    assert checksum.problem(good) is None
    assert "unreadable gzip stream" in checksum.problem(truncated)
    wrong = Checksum("sha256", "0" * 64, decompressed=True)
    assert "expected 0000000000000000" in wrong.problem(good)


# --------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------


def test_download_streams_verifies_and_renames(cache, served):
    server, folder, _ = served
    name = "train-images-idx3-ubyte.gz"
    checksum = Checksum("sha256", sha256_of((folder / name).read_bytes()))
    destination = cache / "fixture" / name
    assert download(server.url + name, destination, checksum, progress=False) == destination
    assert destination.read_bytes() == (folder / name).read_bytes()
    assert leftovers(cache) == [destination]


def test_connection_dropped_mid_file_leaves_nothing(cache, served):
    server, folder, _ = served
    name = "train-images-idx3-ubyte.gz"
    checksum = Checksum("sha256", sha256_of((folder / name).read_bytes()))
    destination = cache / "fixture" / name
    with pytest.raises(DownloadError) as error:
        download(server.url + "drop/" + name, destination, checksum, progress=False)
    assert "drop/" + name in str(
        error.value
    ) and "the connection ended before the file was complete" in str(error.value)
    assert leftovers(cache) == [], "a partial download must not stay in the cache"


def test_download_with_wrong_content_is_refused(cache, served):
    server, folder, _ = served
    wrong = Checksum("sha256", "f" * 64)
    destination = cache / "fixture" / "t10k-labels-idx1-ubyte.gz"
    with pytest.raises(DownloadError, match="not the expected one"):
        download(server.url + destination.name, destination, wrong, progress=False)
    assert leftovers(cache) == []


def test_download_with_wrong_decompressed_content_is_refused(cache, served):
    """A checksum of the decompressed bytes is checked by the course, after pooch's download."""
    server, folder, _ = served
    wrong = Checksum("sha256", "f" * 64, decompressed=True)
    destination = cache / "fixture" / "t10k-labels-idx1-ubyte.gz"
    with pytest.raises(DownloadError, match="not the expected one.*decompressed"):
        download(server.url + destination.name, destination, wrong, progress=False)
    assert leftovers(cache) == []


def test_locate_downloads_into_cache_trying_mirrors_in_order(cache, served, monkeypatch):
    server, folder, arrays = served
    spec = fixture_spec("fixture", folder, (server.url + "missing/", server.url))
    path = locate(spec, "t10k-labels-idx1-ubyte.gz", progress=False)
    assert path == cache / "fixture" / "t10k-labels-idx1-ubyte.gz"
    assert server.requests == ["/missing/t10k-labels-idx1-ubyte.gz", "/t10k-labels-idx1-ubyte.gz"]
    # Found in the cache the second time: no new request.
    assert locate(spec, "t10k-labels-idx1-ubyte.gz", progress=False) == path
    assert len(server.requests) == 2


def test_real_fashion_mnist_checksums_accept_the_debian_copy_served_over_http(cache):
    """The project's download path with the real Fashion-MNIST checksums, from a local server."""
    require(FASHION_SYSTEM_DIR.is_dir(), "Debian's dataset-fashion-mnist is not installed")
    with FileServer(FASHION_SYSTEM_DIR) as server:
        spec = dataclasses.replace(
            sources.FASHION_MNIST,
            system_dirs=(),
            files=tuple(
                dataclasses.replace(data_file, urls=(server.url + data_file.name,))
                for data_file in sources.FASHION_MNIST.files
            ),
        )
        paths = [locate(spec, data_file.name, progress=False) for data_file in spec.files]
    assert all(path.parent == cache / "fashion-mnist" for path in paths)
    assert len(leftovers(cache)) == 4


# --------------------------------------------------------------------------------------------
# Local search order, corrupt files, offline
# --------------------------------------------------------------------------------------------


def test_search_order_cache_then_data_path_then_system(tmp_path, cache, monkeypatch):
    make_idx_dataset(cache / "fixture")
    extra = tmp_path / "extra"
    make_idx_dataset(extra / "fixture")
    system = tmp_path / "system"
    make_idx_dataset(system)
    monkeypatch.setenv("AIGC_DATA_PATH", str(extra))
    spec = fixture_spec("fixture", system, (closed_port_url(),), system_dirs=(str(system),))
    data_file = spec.files[0]
    assert find_local(spec, data_file).path == cache / "fixture" / data_file.name
    (cache / "fixture" / data_file.name).unlink()
    assert find_local(spec, data_file).path == extra / "fixture" / data_file.name
    (extra / "fixture" / data_file.name).unlink()
    assert find_local(spec, data_file).path == system / data_file.name


def test_corrupt_cache_file_is_reported_and_never_used(tmp_path, cache, monkeypatch, capsys):
    system = tmp_path / "system"
    make_idx_dataset(system)
    spec = fixture_spec("fixture", system, (closed_port_url(),), system_dirs=(str(system),))
    data_file = spec.files[0]
    corrupt = cache / "fixture" / data_file.name
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes((system / data_file.name).read_bytes()[:-100])  # truncated
    lookup = find_local(spec, data_file)
    assert lookup.path == system / data_file.name
    assert "corrupt, not used" in str(lookup.attempts[0])
    capsys.readouterr()
    for _ in range(3):  # a command opens its files many times: one line, once
        assert locate(spec, data_file.name) == system / data_file.name
    warned = capsys.readouterr().err.strip().splitlines()
    assert len(warned) == 1 and warned[0].startswith("warning: "), warned
    assert (
        "corrupt, not used" in warned[0]
        and "`aigc-course data fetch fixture` replaces it" in warned[0]
    )
    # Without the system copy the data set is not ready, and the status names the corrupt file.
    monkeypatch.setitem(sources.DATASETS, "fixture", dataclasses.replace(spec, system_dirs=()))
    (status,) = sources.dataset_status(["fixture"])
    assert not status.ready
    assert f"cache {corrupt}: corrupt, not used" in status.summary()


def test_offline_error_names_what_was_tried_and_the_fix(tmp_path, cache):
    system = tmp_path / "system-missing"
    source = tmp_path / "source"
    make_idx_dataset(source)
    spec = fixture_spec("fixture", source, (closed_port_url(),), system_dirs=(str(system),))
    with pytest.raises(DataNotFoundError) as error:
        locate(spec, "train-labels-idx1-ubyte.gz", progress=False)
    message = str(error.value)
    assert "Fixture fixture file train-labels-idx1-ubyte.gz was not found" in message
    assert f"cache {cache / 'fixture' / 'train-labels-idx1-ubyte.gz'}: missing" in message
    assert f"system copy {system / 'train-labels-idx1-ubyte.gz'}: missing" in message
    assert "cannot connect" in message
    assert "aigc-course data fetch fixture" in message
    assert "sudo apt-get install dataset-fixture" in message
    assert leftovers(cache) == []


def test_aigc_offline_skips_the_download(tmp_path, cache, served, monkeypatch):
    server, folder, _ = served
    monkeypatch.setenv("AIGC_OFFLINE", "1")
    spec = fixture_spec("fixture", folder, (server.url,))
    with pytest.raises(DataNotFoundError, match="skipped \\(AIGC_OFFLINE is set\\)"):
        locate(spec, spec.files[0].name, progress=False)
    assert server.requests == []


def test_dataset_status_never_downloads(tmp_path, cache, served, monkeypatch):
    server, folder, _ = served
    spec = fixture_spec("fixture", folder, (server.url,))
    monkeypatch.setitem(sources.DATASETS, "fixture", spec)
    (status,) = sources.dataset_status(["fixture"])
    assert not status.ready
    assert "missing" in status.summary() and "aigc-course data fetch fixture" in status.summary()
    assert server.requests == []
    sources.fetch("fixture", progress=False)
    (status,) = sources.dataset_status(["fixture"])
    assert status.ready and str(cache / "fixture") in status.summary()


def test_unknown_data_set_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="fashion-mnist, tinyshakespeare"):
        sources.get_spec("cifar")
    assert sources.get_spec("Fashion_MNIST") is sources.FASHION_MNIST
