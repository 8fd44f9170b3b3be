"""How long each notebook takes: the measured time table in README.md and docs/INSTRUCTOR.md.

:func:`time_notebook` runs a notebook top to bottom in a fresh kernel (as "Run All" does), saving
it only when asked, and reports the wall time, the kernel's peak resident memory and, on a GPU,
the peak memory torch allocated. :func:`time_table` turns the rows into a markdown table and
:func:`replace_marked_block` puts it between ``<!-- time-table:PROFILE:begin -->`` and
``<!-- time-table:PROFILE:end -->`` in README.md.
"""

from __future__ import annotations

import json
import platform
import re
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import nbformat

from aigc_course.errors import CourseError
from aigc_course.i18n import _

PROBE_TAG = "AIGC_TIMING "

# Appended to a copy of the notebook: what the kernel itself saw. ``ru_maxrss`` is in KiB on
# Linux and bytes on macOS; ``resource`` does not exist on Windows (memory is then unknown).
_PROBE_SOURCE = f"""
import json as _json, os as _os, sys as _sys
try:
    import resource as _resource
    _peak = _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss
    _peak = _peak if _sys.platform == "darwin" else _peak * 1024
except ImportError:
    _peak = None
_report = {{"peak_rss_bytes": _peak, "gpu": None, "gpu_peak_bytes": None, "torch": None}}
_cores = len(_os.sched_getaffinity(0)) if hasattr(_os, "sched_getaffinity") else _os.cpu_count()
_report["cpu"] = f"CPU ({{_cores}} cores)"
if "torch" in _sys.modules:
    import torch as _torch
    _report["torch"] = _torch.__version__
    if _torch.cuda.is_available() and _torch.cuda.is_initialized():
        _report["gpu"] = _torch.cuda.get_device_name()
        _report["gpu_peak_bytes"] = _torch.cuda.max_memory_allocated()
print({PROBE_TAG!r} + _json.dumps(_report))
"""


class TimingError(CourseError, RuntimeError):
    """A notebook could not be timed (it failed, or the probe printed nothing)."""


@dataclass(frozen=True)
class NotebookTiming:
    """One row of the time table."""

    notebook: str
    profile: str
    device: str
    seconds: float
    peak_rss_bytes: int | None
    gpu_peak_bytes: int | None = None
    torch_version: str | None = None


def time_notebook(
    path: Path,
    profile: str,
    timeout: int = 1800,
    kernel_name: str = "python3",
    label: str = "",
    save: bool = False,
) -> NotebookTiming:
    """Run the notebook at ``path`` in a fresh kernel with ``AIGC_PROFILE=profile`` and time it.

    The file is not changed, unless ``save``: then, after a run without errors, it is saved with
    the outputs of the timed run (as ``aigc-course execute-notebooks`` saves them). The kernel
    starts in the notebook's folder; the time includes the kernel's start, as a learner's "Run All"
    does. Raises :class:`TimingError` if a cell fails.
    """
    from nbclient.exceptions import CellExecutionError

    from aigc_course.notebook_tools import environment, notebook_client, save_executed

    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(_PROBE_SOURCE))
    with environment(AIGC_PROFILE=profile):  # the kernel inherits this process's environment
        client = notebook_client(notebook, path.parent, timeout, kernel_name)
        started = time.perf_counter()
        try:
            client.execute()
        except CellExecutionError as error:
            message = str(error).strip().splitlines()[-1][:300]
            raise TimingError(
                _("{path} failed under the {profile} profile: {message}").format(
                    path=path, profile=profile, message=message
                )
            ) from None
        seconds = time.perf_counter() - started
    report = _probe_report(notebook.cells.pop())
    if report is None:
        raise TimingError(
            _("{path}: the timing probe printed nothing (was the kernel restarted?)").format(
                path=path
            )
        )
    if save:
        save_executed(notebook, path)
    return NotebookTiming(
        notebook=label or path.name,
        profile=profile,
        device=report["gpu"] or report["cpu"],
        seconds=seconds,
        peak_rss_bytes=report["peak_rss_bytes"],
        gpu_peak_bytes=report["gpu_peak_bytes"],
        torch_version=report["torch"],
    )


def _probe_report(cell) -> dict | None:
    for output in cell.get("outputs", []):
        for line in output.get("text", "").splitlines():
            if line.startswith(PROBE_TAG):
                return json.loads(line[len(PROBE_TAG) :])
    return None


def format_duration(seconds: float) -> str:
    """``7 s``, ``2 min 58 s``, ``1 h 02 min``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_bytes(count: int | None) -> str:
    """``812 MiB``, ``1.4 GiB``; ``n/a`` when unknown."""
    if count is None:
        return "n/a"
    if count < 2**30:
        return f"{count / 2**20:.0f} MiB"
    return f"{count / 2**30:.1f} GiB"


def time_table(rows: list[NotebookTiming], command: str, when: date | None = None) -> str:
    """The markdown table of ``rows``, with a line saying how and where it was measured."""
    if not rows:
        raise ValueError(_("no notebooks were timed: nothing to put in a table"))
    when = when or date.today()
    with_gpu = any(row.gpu_peak_bytes is not None for row in rows)
    header = ["Notebook", "Profile", "Device", "Wall time", "Peak memory (RAM)"]
    if with_gpu:
        header.append("Peak GPU memory")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            f"`{row.notebook}`",
            row.profile,
            row.device,
            format_duration(row.seconds),
            format_bytes(row.peak_rss_bytes),
        ]
        if with_gpu:
            cells.append(format_bytes(row.gpu_peak_bytes))
        lines.append("| " + " | ".join(cells) + " |")
    total = sum(row.seconds for row in rows)
    total_row = [f"**all {len(rows)}**", "", "", f"**{format_duration(total)}**", ""]
    lines.append("| " + " | ".join(total_row + [""] * (len(header) - 5)) + " |")
    versions = f"Python {platform.python_version()}"
    torch_versions = sorted({row.torch_version for row in rows if row.torch_version})
    if torch_versions:
        versions += ", torch " + "/".join(torch_versions)
    note = (
        f"Measured {when.isoformat()} with `{command}` ({versions}); each notebook in a fresh "
        "kernel, top to bottom, kernel start included."
    )
    return note + "\n\n" + "\n".join(lines) + "\n"


def parse_duration(text: str) -> int:
    """Seconds of a duration written by :func:`format_duration` (``2 min 58 s``, ``1 h 02 min``)."""
    units = {"h": 3600, "min": 60, "s": 1}
    found = re.findall(r"(\d+) (h|min|s)\b", text)
    if not found:
        raise ValueError(_("not a duration: {text}").format(text=repr(text)))
    return sum(int(number) * units[unit] for number, unit in found)


_ROW = re.compile(r"^\| `([^`]+)` \|")


def merge_table(existing: str, update: str, command: str, when: date | None = None) -> str:
    """``existing`` (a table written by :func:`time_table`, with its note) with the rows of
    ``update`` in place of its rows of the same notebooks (new notebooks appended), the total
    recomputed, and a sentence added to the note saying what was re-measured, when and how.

    Timing one notebook so never throws away the table's other rows."""
    when = when or date.today()
    old_lines, new_lines = existing.rstrip("\n").split("\n"), update.rstrip("\n").split("\n")
    new_rows = {m.group(1): line for line in new_lines if (m := _ROW.match(line))}
    header = [line for line in old_lines if line.startswith("| Notebook")]
    if not header or header[0] != next(line for line in new_lines if line.startswith("| Notebook")):
        raise ValueError(_("the existing table has other columns: time every notebook instead"))
    rows, seen = [], set()
    for line in old_lines:
        m = _ROW.match(line)
        if m:
            rows.append(new_rows.get(m.group(1), line))
            seen.add(m.group(1))
    rows += [line for name, line in new_rows.items() if name not in seen]
    total = sum(parse_duration(line.split("|")[4]) for line in rows)
    columns = header[0].count("|") - 1
    total_row = [f"**all {len(rows)}**", "", "", f"**{format_duration(total)}**"]
    total_row += [""] * (columns - len(total_row))
    note = next(line for line in old_lines if line.startswith("Measured")).rstrip()
    note += f" Re-measured {when.isoformat()}: {len(new_rows)} notebook(s) with `{command}`."
    table = [*header, "|" + "---|" * columns, *rows, "| " + " | ".join(total_row) + " |"]
    return note + "\n\n" + "\n".join(table) + "\n"


def markers(profile: str) -> tuple[str, str]:
    """The two comment lines that enclose the ``profile`` table in README.md."""
    return f"<!-- time-table:{profile}:begin -->", f"<!-- time-table:{profile}:end -->"


def replace_marked_block(text: str, profile: str, block: str) -> str:
    """``text`` with everything between the ``profile`` markers replaced by ``block``."""
    begin, end = markers(profile)
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), flags=re.DOTALL)
    if len(pattern.findall(text)) != 1:
        raise ValueError(
            _(
                "expected exactly one pair of markers {begin} ... {end}; add them where the "
                "{profile} table belongs"
            ).format(begin=begin, end=end, profile=profile)
        )
    return pattern.sub(lambda _match: f"{begin}\n{block.rstrip()}\n{end}", text)


def time_notebooks(
    root: Path,
    names: list[str],
    profile: str,
    timeout: int,
    save: bool = False,
    output: str | None = None,
    readme: str | None = None,
) -> int:
    """``aigc-course time-notebooks``: time ``names`` (default: every lesson of ``root``) under
    ``profile``, each in a fresh kernel; write the table (or update the rows of the named notebooks
    in the table already there), and README's copy when every lesson is timed (or ``readme`` says
    where; "none": skip). Prints its progress; returns the exit status."""
    from aigc_course import files

    paths = [Path(path).resolve() for path in names] or sorted((root / "notebooks").glob("*.ipynb"))
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        print(
            _("error: no such notebook: {paths}").format(paths=", ".join(missing)),
            file=sys.stderr,
        )
        return 2
    rows, failures = [], []
    for path in paths:
        label = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        print(
            _("timing  {notebook} ({profile}) ...").format(notebook=label, profile=profile),
            flush=True,
        )
        try:
            row = time_notebook(path, profile, timeout=timeout, label=label, save=save)
        except TimingError as error:
            print(_("FAILED  {error}").format(error=error), file=sys.stderr)
            failures.append(label)
            continue
        print(
            "        "
            + _("{duration}, {memory} RAM on {device}").format(
                duration=format_duration(row.seconds),
                memory=format_bytes(row.peak_rss_bytes),
                device=row.device,
            )
        )
        rows.append(row)
    if failures:
        print(
            _("not written: {count} notebook(s) failed: {notebooks}").format(
                count=len(failures), notebooks=", ".join(failures)
            )
        )
        return 1
    command = " ".join(["aigc-course time-notebooks", f"--profile {profile}", *names])
    table = time_table(rows, command)
    output = Path(output or root / "docs" / f"time-table-{profile}.md")
    output.parent.mkdir(parents=True, exist_ok=True)
    title = f"# Time table: the {profile} profile\n\n"
    merged = False
    if names and output.is_file():  # some notebooks: update their rows, keep the others
        try:
            table = merge_table(
                output.read_text(encoding="utf-8").removeprefix(title), table, command
            )
            merged = True
        except (ValueError, StopIteration) as error:
            print(
                _("error: cannot update {path}: {error}").format(path=output, error=error),
                file=sys.stderr,
            )
            return 2
    files.write_text(output, title + table)
    written = _("updated {path}") if merged else _("wrote   {path}")
    print(f"\n{table}\n" + written.format(path=output))
    if names and not merged and readme is None:
        print(_("README not updated: it shows every lesson (time them all, or pass --readme)"))
    elif readme != "none":
        readme = Path(readme or root / "README.md")
        try:
            text = replace_marked_block(readme.read_text(encoding="utf-8"), profile, table)
        except ValueError as error:
            print(
                _("README not updated ({path}): {error}").format(path=readme, error=error),
                file=sys.stderr,
            )
            return 1
        files.write_text(readme, text)
        print(_("updated {path}").format(path=readme))
    return 0
