"""The doctor: one report of this environment, and whether everything the lessons need is here.

``aigc-course doctor`` and lesson 00 print :func:`environment_report`; :func:`missing_data` lists the
required data sets that are not found, each with its fix, and :func:`problems` what else stops the
course from working here (an environment variable with a value it cannot take, a data cache that
cannot be written).
"""

from __future__ import annotations

import platform

import torch

from aigc_course import data, runtime, settings
from aigc_course.i18n import _, padded

LABEL_WIDTH = 11  # display columns: a CJK character takes two


def _row(label: str, value: str) -> str:
    """``label`` padded to :data:`LABEL_WIDTH` display columns (one space at least), then ``value``."""
    return padded(label, LABEL_WIDTH - 1) + " " + value


def _package_versions() -> str:
    from importlib import metadata

    versions = []
    for name in ("numpy", "matplotlib", "ipywidgets", "tqdm", "safetensors", "pooch"):
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(_("{name} MISSING (pip install {name})").format(name=name))
    return ", ".join(versions)


def environment_report() -> str:
    """One short report of this environment: the setup notebook and ``aigc-course doctor`` print it."""
    lines = [
        _row(
            "Python",
            _("{version} on {system} {machine}").format(
                version=platform.python_version(),
                system=platform.system(),
                machine=platform.machine(),
            )
            + (" (Google Colab)" if runtime.in_colab() else ""),
        ),
        _row("PyTorch", torch.__version__),
        _row(_("packages"), _package_versions()),
    ]
    try:
        device = runtime.get_device()
        profile = runtime.get_profile(device=device)
        precision = runtime.choose_precision(device)
        compile_ok, compile_why = runtime.compile_support(device.type)
        lines += [
            _row(_("device"), runtime.describe_device(device)),
            _row(_("profile"), f"{profile.name} ({profile.source}): {profile.description}"),
            _row(_("precision"), precision.name)
            + (_(" with a gradient scaler") if precision.needs_grad_scaler else ""),
            _row(_("compile"), (_("yes") if compile_ok else _("no")) + f": {compile_why}"),
        ]
    except settings.RuntimeConfigError as error:  # the settings below say which one
        lines.append(_row(_("device"), _("NOT CHOSEN: {error}").format(error=error)))
    lines.append(_row(_("data cache"), f"{data.cache_dir()} ({cache_state()})"))
    for status in data.dataset_status():
        lines.append(_row(_("data"), status.summary()))
    lines.append(
        _row(
            _("settings"),
            _("the environment variables the course reads (aigc_course/settings.py):"),
        )
    )
    lines += [f"  {line}" for line in settings.report()]
    return "\n".join(lines)


def cache_state() -> str:
    """ "writable", or why the data cache cannot be written (it is probed: a file made and removed)."""
    problem = cache_problem()
    return (
        _("writable") if problem is None else _("NOT WRITABLE: {problem}").format(problem=problem)
    )


def cache_problem() -> str | None:
    """Why files cannot be written into the data cache (downloads, checkpoints), or None."""
    import tempfile

    folder = data.cache_dir()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return _("{path} is a file, not a folder; set AIGC_DATA_DIR to a folder").format(
            path=existing
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
            pass
    except OSError as error:
        return _("{error}; set AIGC_DATA_DIR to a folder you can write").format(
            error=error.strerror or error
        )
    return None


def problems() -> list[str]:
    """What stops the course here besides missing data: invalid settings, an unwritable cache."""
    found = settings.invalid()
    try:
        runtime.get_device()  # AIGC_DEVICE: a name PyTorch knows, a device this machine has
    except settings.RuntimeConfigError as error:
        found.append(str(error))
    problem = cache_problem()
    if problem is not None:
        found.append(
            _("the data cache {path} cannot be written: {problem}").format(
                path=data.cache_dir(), problem=problem
            )
        )
    return found


def missing_data() -> list[str]:
    """One line per required data set that is not here: its title and the command that fixes it."""
    return [
        f"{status.spec.title}: {data.sources.fix_hint(status.spec)}"
        for status in data.dataset_status()
        if status.spec.required and not status.ready
    ]


def report() -> int:
    """``aigc-course doctor``: print the report, then READY or NOT READY with each fix; returns the
    exit status (0 ready, 1 data missing, 2 a setting or the cache is wrong)."""
    found = problems()
    print(environment_report())
    if found:
        print("\n" + _("NOT READY:"))
        for line in found:
            print(f"  - {line}")
        return 2
    missing = missing_data()
    if missing:
        print("\n" + _("NOT READY: required data is missing."))
        for line in missing:
            print(f"  - {line}")
        return 1
    print("\n" + _("READY: everything the lessons need is here."))
    return 0
