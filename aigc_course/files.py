"""Writing files so that nothing is ever half-written: a temporary file beside the target, then a rename.

Every file the course writes for a user (checkpoints, the pretrained manifest, data files, the
tokenizer, notebooks, time tables) goes through :func:`atomic_path`: the content is written to a
temporary file in the target's folder, checked if the caller wants to, and only then renamed over
the target in one step (``os.replace``). An interrupted write, a failed check or a full disk leaves
the old file, if any, untouched, and no temporary file behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: ``0o666`` less the process's umask."""
    umask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``; on leaving the block without an error it replaces ``path``.

    Write (and verify) the temporary file inside the block; raise to abandon it::

        with atomic_path("model.safetensors") as temporary:
            save_file(tensors, temporary)
            check(temporary)  # an exception here leaves model.safetensors as it was

    The file gets the permissions of any new file (``0o666`` less the umask, e.g. ``0o644``, or
    ``0o664`` in a workshop's group-shared folder), not ``mkstemp``'s private ``0o600``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, new_file_mode())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically. Returns the path."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def process_is_running(pid: int) -> bool:
    """Whether the process ``pid`` exists (the holder named in a lock file, say); one that belongs
    to another user counts as running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def identity(path: Path) -> tuple[str, int, int, int]:
    """What a memory of a file's content within a process is keyed by: its resolved path, inode,
    size and modification time, so that a file changed or replaced on disk is seen anew."""
    stat = path.stat()
    return str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns
