"""Shared test helpers: fixture data sets and a local HTTP server."""

from __future__ import annotations

import ast
import gzip
import hashlib
import http.server
import os
import threading
from pathlib import Path

import numpy as np

from aigc_course.data import Checksum, DataFile, DatasetSpec, write_idx

ROOT = Path(__file__).resolve().parents[1]
#: Debian's Chromium, which the browser tests drive (``AIGC_CHROMIUM`` names another).
CHROMIUM = Path(os.environ.get("AIGC_CHROMIUM", "/usr/bin/chromium"))


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_idx_dataset(folder: Path, n_train: int = 120, n_test: int = 40, seed: int = 0) -> dict:
    """Small Fashion-MNIST-shaped IDX files (gzip) in ``folder``; returns name -> array."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": (np.arange(n_test) % 10).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(folder / name, array)
    return arrays


def fixture_spec(
    name: str, folder: Path, base_urls: tuple[str, ...], system_dirs: tuple[str, ...] = ()
) -> DatasetSpec:
    """A data set spec for the ``.gz`` files in ``folder``, with their decompressed sha256."""
    files = tuple(
        DataFile(
            path.name,
            Checksum("sha256", sha256_of(gzip.decompress(path.read_bytes())), decompressed=True),
            tuple(f"{base}{path.name}" for base in base_urls),
        )
        for path in sorted(folder.glob("*.gz"))
    )
    return DatasetSpec(
        name=name,
        title=f"Fixture {name}",
        files=files,
        system_dirs=system_dirs,
        system_install="sudo apt-get install dataset-fixture",
    )


class FileServer:
    """An HTTP server on 127.0.0.1 serving a folder.

    ``/drop/NAME`` sends NAME's full Content-Length but only half its bytes, then closes the
    connection (a dropped download). ``/missing/NAME`` answers 404. ``requests`` counts the hits.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep the test output quiet
                pass

            def do_GET(self) -> None:
                server.requests.append(self.path)
                drop = self.path.startswith("/drop/")
                name = self.path.removeprefix("/drop/").lstrip("/")
                path = server.folder / name
                if self.path.startswith("/missing/") or not path.is_file():
                    self.send_error(404, "Not Found")
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if drop else body)
                self.wfile.flush()
                if drop:
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port_url() -> str:
    """A loopback address where nothing listens (connections are refused at once)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def require(condition: bool, reason: str) -> None:
    """Skip when real data is absent on a developer's machine; in CI (``CI=true``) fail instead."""
    import os

    import pytest

    if condition:
        return
    if os.environ.get("CI", "").lower() in {"1", "true"}:
        pytest.fail(f"{reason}; .ci/run must provide it")
    pytest.skip(reason)


def require_data(name: str) -> None:
    """Skip (fail in CI) unless data set ``name`` is on this machine."""
    from aigc_course import data

    require(all(s.ready for s in data.dataset_status([name])), f"the data set {name} is missing")


def execute_notebook(notebook, folder: Path, timeout: int = 600) -> None:
    """Run ``notebook`` (an nbformat object) in a fresh kernel in ``folder``; raises if a cell fails.
    On POSIX the kernel talks over Unix sockets, and on Linux it is forked (tests/kernels.py)."""
    from aigc_course.notebook_tools import notebook_client

    client = notebook_client(notebook, folder, timeout)
    if os.name == "posix":
        from tests.kernels import kernel_manager

        # nbclient's own kind of manager (asynchronous), which it still starts and stops
        client.km = kernel_manager(
            client.kernel_name, client.kernel_manager_class, config=client.config
        )
    client.execute()


def printed_text(notebook) -> str:
    """Everything a notebook's code cells printed (their text outputs), in order."""
    return "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )


def run_benchmark(name: str, *argv: str, monkeypatch, capsys) -> str:
    """Run ``benchmarks/NAME.py ARGV`` as its ``__main__`` in this process (no second
    ``import torch``); returns what it printed. A script that exits non-zero fails the test."""
    import runpy
    import sys

    folder = ROOT / "benchmarks"
    monkeypatch.syspath_prepend(str(folder))  # the scripts import their _common.py
    monkeypatch.setattr(sys, "argv", [str(folder / f"{name}.py"), *argv])
    capsys.readouterr()
    runpy.run_path(str(folder / f"{name}.py"), run_name="__main__")
    return capsys.readouterr().out


def check_call(source: str) -> ast.Call | None:
    """The ``check.NAME(argument)`` call of an exercise notebook's check cell, or None for any
    other cell (the solution notebooks' tests and the mutation test both find checks by it)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return None
    call = tree.body[0].value
    if (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id == "check"
        and len(call.args) == 1
    ):
        return call
    return None
