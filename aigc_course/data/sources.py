"""Where data files come from, and how the course makes sure they are the real thing.

A data file is looked for, in this order:

1. the cache: ``$AIGC_DATA_DIR``, else the repository's ``data/`` folder (in a clone), else
   ``~/.cache/aigc-course``;
2. extra read-only folders named in ``$AIGC_DATA_PATH`` (separated by ``os.pathsep``), laid out
   like the cache (e.g. ``DIR/tinyshakespeare/input.txt``);
3. a system copy (Debian's ``dataset-fashion-mnist`` installs to ``/usr/share/datasets/fashion-mnist``),
   unless ``AIGC_IGNORE_SYSTEM_DATA=1`` (to see what a machine without it gets);
4. a download from the data set's home, unless ``AIGC_OFFLINE=1``.

Every candidate is checked against a checksum before it is used. Where a file may be
recompressed (Debian recompresses Fashion-MNIST's ``.gz`` files) the checksum is of the
decompressed bytes. Downloads are pooch's (streamed with a progress bar into a temporary folder
beside the destination, checked to be complete); the file is renamed into place only once its
checksum is right: an interrupted or corrupt download never leaves a file that looks finished.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from aigc_course import errors, files, settings
from aigc_course.errors import CourseError
from aigc_course.files import atomic_path, new_file_mode
from aigc_course.i18n import N_, _

CHUNK_BYTES = 1 << 20


class DataError(CourseError, RuntimeError):
    """Base class of the data errors; their messages say what went wrong and how to fix it."""


class DataNotFoundError(DataError):
    """No valid copy of a data file was found, and none could be downloaded."""


class DownloadError(DataError):
    """A download failed; nothing was left in the cache."""


class UnknownDatasetError(DataError, KeyError):
    """A data set name the course does not know (a ``KeyError`` too)."""

    def __str__(self) -> str:  # KeyError's would quote the message
        return str(self.args[0])


# --------------------------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checksum:
    """The expected digest of a file, or of its gunzipped content when ``decompressed`` is True."""

    algorithm: str
    digest: str
    decompressed: bool = False

    def compute(self, path: Path) -> str:
        """The digest of ``path`` (streamed; raises ``OSError``/``EOFError`` on unreadable files)."""
        hasher = hashlib.new(self.algorithm)
        opener = gzip.open if self.decompressed else open
        with opener(path, "rb") as stream:
            while chunk := stream.read(CHUNK_BYTES):
                hasher.update(chunk)
        return hasher.hexdigest()

    def problem(self, path: Path) -> str | None:
        """``None`` when ``path`` matches, otherwise a short description of what is wrong."""
        try:
            actual = self.compute(path)
        except (OSError, EOFError, gzip.BadGzipFile) as error:
            what = "gzip stream" if self.decompressed else "file"
            return f"unreadable {what} ({type(error).__name__}: {error})"
        if actual != self.digest:
            of = " of the decompressed content" if self.decompressed else ""
            return f"{self.algorithm}{of} is {actual[:16]}..., expected {self.digest[:16]}..."
        return None


_verified: dict[tuple[tuple[str, int, int, int], Checksum], str | None] = {}


def verify(path: Path, checksum: Checksum) -> str | None:
    """Like :meth:`Checksum.problem`, remembered within this process while the file stays the
    same (:func:`aigc_course.files.identity`)."""
    key = (files.identity(path), checksum)
    if key not in _verified:
        _verified[key] = checksum.problem(path)
    return _verified[key]


# --------------------------------------------------------------------------------------------
# What the data sets are
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataFile:
    """One file of a data set: its name in the cache, its checksum, where to download it."""

    name: str
    checksum: Checksum
    urls: tuple[str, ...]


@dataclass(frozen=True)
class DatasetSpec:
    """A data set: its files, where a system copy may be, and how a user gets it."""

    name: str
    title: str
    files: tuple[DataFile, ...]
    system_dirs: tuple[str, ...] = ()
    system_install: str | None = None
    required: bool = True
    lessons: tuple[int, ...] = ()  # the lessons that load it (tests/test_datasets.py reads them)

    @property
    def used_by(self) -> str:
        """The lessons that load it, in words: "lessons 02, 08 and 09"."""
        if not self.lessons:
            return _("no lesson")
        names = [f"{number:02d}" for number in self.lessons]
        if len(names) == 1:
            return _("lesson {number}").format(number=names[0])
        return _("lessons {numbers} and {last}").format(
            numbers=_(", ").join(names[:-1]), last=names[-1]
        )

    def file(self, name: str) -> DataFile:
        for data_file in self.files:
            if data_file.name == name:
                return data_file
        raise KeyError(f"{self.title} has no file {name!r}: {[f.name for f in self.files]}")


def _idx_files(
    bases: tuple[str, ...], checksums: dict[str, Checksum], suffix: str = ".gz"
) -> tuple[DataFile, ...]:
    return tuple(
        DataFile(f"{stem}{suffix}", checksum, tuple(f"{base}{stem}{suffix}" for base in bases))
        for stem, checksum in checksums.items()
    )


def _sha256_decompressed(digest: str) -> Checksum:
    return Checksum("sha256", digest, decompressed=True)


FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    files=_idx_files(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        {
            "train-images-idx3-ubyte": _sha256_decompressed(
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
            ),
            "train-labels-idx1-ubyte": _sha256_decompressed(
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
            ),
            "t10k-images-idx3-ubyte": _sha256_decompressed(
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
            ),
            "t10k-labels-idx1-ubyte": _sha256_decompressed(
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
            ),
        },
    ),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
    system_install=N_("on Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist"),
    lessons=(0, 6, 7, 10, 11, 12),
)

TINY_SHAKESPEARE = DatasetSpec(
    name="tinyshakespeare",
    title="Tiny Shakespeare",
    files=(
        DataFile(
            "input.txt",
            Checksum("sha256", "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
            (
                "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                "tinyshakespeare/input.txt",
            ),
        ),
    ),
    lessons=(0, 2, 8, 9, 11, 12),
)

TANG_POEMS = DatasetSpec(
    name="tang300",
    title="唐诗三百首 (Three Hundred Tang Poems)",
    files=(
        DataFile(
            "tang300",
            Checksum("sha256", "b69cab0cb84c49dc1808d95aea7156c8911a7022ec630e194eecf360b78feff5"),
            ("https://salsa.debian.org/chinese-team/fortunes-zh/-/raw/master/tang300",),
        ),
    ),
    # Debian's fortunes-zh (GPL-3.0+, a licence other than the course's: found or fetched at run
    # time, never committed). Its title and author lines are coloured with terminal escapes.
    system_dirs=("/usr/share/games/fortunes",),
    system_install=N_("on Debian/Ubuntu: sudo apt-get install fortunes-zh"),
    required=False,
    lessons=(8,),
)

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec for spec in (FASHION_MNIST, TINY_SHAKESPEARE, TANG_POEMS)
}


def get_spec(name: str) -> DatasetSpec:
    """The data set called ``name`` (``fashion-mnist``, ``tinyshakespeare``, ``tang300``)."""
    key = name.strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise UnknownDatasetError(
            f"unknown data set {name!r}: the course knows {', '.join(DATASETS)}"
        )
    return DATASETS[key]


# --------------------------------------------------------------------------------------------
# Where to look
# --------------------------------------------------------------------------------------------


def _repository_root() -> Path | None:
    """The clone this package was installed from (editable install), if it is one."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "data").is_dir() else None


def cache_dir() -> Path:
    """The data and checkpoint cache: ``$AIGC_DATA_DIR``, the clone's ``data/``, or ``~/.cache``."""
    chosen = settings.path("AIGC_DATA_DIR")
    if chosen is not None:
        return chosen
    root = _repository_root()
    if root is not None:
        return root / "data"
    return Path.home() / ".cache" / "aigc-course"


def search_dirs() -> list[Path]:
    """Extra read-only folders from ``$AIGC_DATA_PATH`` (laid out like the cache)."""
    return settings.paths("AIGC_DATA_PATH")


def offline() -> bool:
    """True when downloads are switched off with ``AIGC_OFFLINE=1``."""
    return settings.switch("AIGC_OFFLINE")


def system_copies_ignored() -> bool:
    """True when ``AIGC_IGNORE_SYSTEM_DATA=1``: system copies (e.g. Debian's) are not used."""
    return settings.switch("AIGC_IGNORE_SYSTEM_DATA")


def local_candidates(spec: DatasetSpec, data_file: DataFile) -> list[tuple[str, Path]]:
    """Every local place a file may be, in search order, labelled by kind."""
    places = [("cache", cache_dir() / spec.name / data_file.name)]
    places += [("AIGC_DATA_PATH", folder / spec.name / data_file.name) for folder in search_dirs()]
    if not system_copies_ignored():
        places += [("system copy", Path(folder) / data_file.name) for folder in spec.system_dirs]
    return places


@dataclass
class Attempt:
    """One place that was tried, and what was found there."""

    place: str
    outcome: str

    def __str__(self) -> str:
        return f"{self.place}: {self.outcome}"


@dataclass
class Lookup:
    """The result of looking for a file locally: where it is (if anywhere), and what was tried."""

    path: Path | None
    attempts: list[Attempt] = field(default_factory=list)


def find_local(spec: DatasetSpec, data_file: DataFile, *, every_place: bool = False) -> Lookup:
    """The first local copy of ``data_file`` whose checksum is right; corrupt copies are skipped.

    With ``every_place`` the places after the one used are checked too (what ``data status``
    reports), so a corrupt copy anywhere is seen."""
    attempts: list[Attempt] = []
    found = None
    for kind, path in local_candidates(spec, data_file):
        if not path.is_file():
            attempts.append(Attempt(f"{kind} {path}", "missing"))
            continue
        problem = verify(path, data_file.checksum)
        if problem is not None:
            attempts.append(Attempt(f"{kind} {path}", f"corrupt, not used ({problem})"))
        elif found is None:
            attempts.append(Attempt(f"{kind} {path}", "found"))
            found = path
            if not every_place:
                break
        else:
            attempts.append(Attempt(f"{kind} {path}", "also found"))
    return Lookup(found, attempts)


def corrupt_copy_advice(spec: DatasetSpec, attempt: Attempt) -> str:
    """What to do about a corrupt copy: the cache's is replaced by ``data fetch``; a copy
    elsewhere (a search folder, a system copy) is the user's to delete or replace."""
    if attempt.place.startswith("cache "):
        return f"{attempt}. `aigc-course data fetch {spec.name}` replaces it"
    return f"{attempt}. Delete or replace that file (the course only reads it)"


# --------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------


def download(
    url: str,
    destination: Path,
    checksum: Checksum,
    *,
    timeout: float = 30.0,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``destination``, verified; nothing is left behind on failure.

    `pooch <https://www.fatiando.org/pooch/>`_ does the fetching: it streams the bytes into a
    temporary folder beside the destination with a progress bar, checks the response is complete,
    and verifies a checksum of the file's bytes. A checksum of the *decompressed* content (which
    pooch cannot express; Fashion-MNIST's, because Debian recompresses its copy) is verified here.
    The file is renamed into place only once it is right; otherwise :class:`DownloadError`.
    """
    import pooch
    import requests

    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    known_hash = None if checksum.decompressed else f"{checksum.algorithm}:{checksum.digest}"
    downloader = pooch.HTTPDownloader(
        progressbar=progress, timeout=timeout, headers={"User-Agent": "aigc-course"}
    )
    pooch.get_logger().setLevel("WARNING")  # no "Downloading data from ..." log lines
    with tempfile.TemporaryDirectory(
        prefix=f".{destination.name}.", dir=destination.parent
    ) as folder:
        try:
            fetched = pooch.retrieve(
                url, known_hash, fname=destination.name, path=folder, downloader=downloader
            )
        except ValueError as error:  # pooch's checksum mismatch
            raise DownloadError(
                f"{url}: the downloaded file is not the expected one: {error}"
            ) from error
        except (requests.RequestException, OSError) as error:
            raise DownloadError(f"{url}: {_describe_error(error)}") from error
        # pooch verified a checksum of the bytes; one of the decompressed content is ours to check.
        problem = checksum.problem(Path(fetched)) if checksum.decompressed else None
        if problem is not None:
            raise DownloadError(f"{url}: the downloaded file is not the expected one: {problem}")
        os.chmod(fetched, new_file_mode())  # pooch's temporary file is private (0o600)
        os.replace(fetched, destination)  # same folder: one atomic rename
    return destination


def _describe_error(error: BaseException) -> str:
    import requests

    if isinstance(error, requests.HTTPError) and error.response is not None:
        return f"HTTP {error.response.status_code} {error.response.reason}"
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return f"the connection ended before the file was complete ({error})"
    if isinstance(error, requests.ConnectionError):
        return f"cannot connect ({error})"
    return f"{type(error).__name__}: {error}"


# --------------------------------------------------------------------------------------------
# Putting it together
# --------------------------------------------------------------------------------------------


def fix_hint(spec: DatasetSpec) -> str:
    """The commands that make ``spec`` available, for error messages and the doctor."""
    fixes = [_("on a machine with internet: aigc-course data fetch {name}").format(name=spec.name)]
    if spec.system_install:
        fixes.append(_(spec.system_install))
    fixes.append(_("or copy the files into {path}").format(path=cache_dir() / spec.name))
    return _("; ").join(fixes)


def locate(
    spec: DatasetSpec, file_name: str, *, progress: bool = True, advise: bool = True
) -> Path:
    """A verified local path to one file of ``spec``, downloading it into the cache if needed
    (``advise``: warn, once, about a corrupt copy that was passed over)."""
    data_file = spec.file(file_name)
    lookup = find_local(spec, data_file)
    attempts = lookup.attempts
    for attempt in attempts:
        if advise and attempt.outcome.startswith("corrupt"):
            errors.warn(corrupt_copy_advice(spec, attempt) + ".")
    if lookup.path is not None:
        return lookup.path
    if offline():
        attempts.append(Attempt("download", "skipped (AIGC_OFFLINE is set)"))
    else:
        destination = cache_dir() / spec.name / data_file.name
        for url in data_file.urls:
            try:
                return download(url, destination, data_file.checksum, progress=progress)
            except DownloadError as error:
                attempts.append(Attempt("download", str(error)))
    tried = "\n".join(f"  - {attempt}" for attempt in attempts)
    raise DataNotFoundError(
        f"{spec.title} file {data_file.name} was not found and could not be downloaded.\n"
        f"Tried:\n{tried}\n"
        f"Fix: {fix_hint(spec)}"
    )


def copy_verified(source: Path, destination: Path, checksum: Checksum) -> Path:
    """Copy ``source`` to ``destination`` through a temporary file, checked before the rename."""
    with atomic_path(destination) as temporary:
        shutil.copyfile(source, temporary)
        problem = checksum.problem(temporary)
        if problem is not None:
            raise DataError(f"copying {source} gave a file that is not the expected one: {problem}")
    return destination


def fill_cache(name: str, *, progress: bool = True) -> list[tuple[Path, str]]:
    """Put a verified copy of every file of data set ``name`` into the cache.

    A verified file already there is kept; one found elsewhere (``AIGC_DATA_PATH``, a system copy)
    is copied; one found nowhere is downloaded. A corrupt file in the cache is replaced the same
    way, the good copy written over it atomically. Returns (cache path, what was done) per file;
    raises :class:`DataNotFoundError` (with the fix) when a file can be neither copied nor
    downloaded.
    """
    spec = get_spec(name)
    done = []
    for data_file in spec.files:
        destination = cache_dir() / spec.name / data_file.name
        lookup = find_local(spec, data_file)
        replaced = "replaced a corrupt cache copy; " if destination.is_file() else ""
        if lookup.path == destination:
            done.append((destination, "already in the cache"))
        elif lookup.path is not None:
            copy_verified(lookup.path, destination, data_file.checksum)
            done.append((destination, f"{replaced}copied from {lookup.path.parent}"))
        else:
            # the corrupt cache copy is being replaced: no advice to replace it
            path = locate(spec, data_file.name, progress=progress, advise=False)
            done.append((path, f"{replaced}downloaded"))
    return done


def fetch(name: str, *, progress: bool = True) -> list[Path]:
    """Put every file of data set ``name`` in the cache, verified (see :func:`fill_cache`)."""
    return [path for path, _outcome in fill_cache(name, progress=progress)]


@dataclass
class DatasetStatus:
    """Whether a data set is available locally, without downloading anything."""

    spec: DatasetSpec
    found: dict[str, Path]
    problems: list[str]

    @property
    def ready(self) -> bool:
        return len(self.found) == len(self.spec.files)

    def summary(self) -> str:
        title = f"{self.spec.title} ({self.spec.used_by})"
        if self.ready:
            folders = sorted({str(path.parent) for path in self.found.values()})
            notes = "".join(
                "\n  " + _("warning: {problem}").format(problem=problem)
                for problem in self.problems
            )
            return (
                _("{title}: found in {folders}").format(title=title, folders=", ".join(folders))
                + notes
            )
        need = _("missing") if self.spec.required else _("not present (optional)")
        detail = f"; {'; '.join(self.problems)}" if self.problems else ""
        return _("{title}: {state}{detail}. Fix: {fix}").format(
            title=title, state=need, detail=detail, fix=fix_hint(self.spec)
        )


def dataset_status(names: list[str] | None = None) -> list[DatasetStatus]:
    """The local state of each data set (all of them by default); never downloads."""
    statuses = []
    for spec in [get_spec(name) for name in names] if names else DATASETS.values():
        found, problems = {}, []
        for data_file in spec.files:
            lookup = find_local(spec, data_file, every_place=True)
            if lookup.path is not None:
                found[data_file.name] = lookup.path
            problems += [
                corrupt_copy_advice(spec, attempt)
                for attempt in lookup.attempts
                if attempt.outcome.startswith("corrupt")
            ]
        statuses.append(DatasetStatus(spec, found, problems))
    return statuses
