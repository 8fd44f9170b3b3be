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


def _package_versions() -> str:
    from importlib import metadata

    versions = []
    for name in ("numpy", "matplotlib", "ipywidgets", "tqdm", "safetensors", "pooch"):
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} MISSING (pip install {name})")
    return ", ".join(versions)


def environment_report() -> str:
    """One short report of this environment: the setup notebook and ``aigc-course doctor`` print it."""
    lines = [
        f"Python     {platform.python_version()} on {platform.system()} {platform.machine()}"
        + (" (Google Colab)" if runtime.in_colab() else ""),
        f"PyTorch    {torch.__version__}",
        f"packages   {_package_versions()}",
    ]
    try:
        device = runtime.get_device()
        profile = runtime.get_profile(device=device)
        precision = runtime.choose_precision(device)
        compile_ok, compile_why = runtime.compile_support(device.type)
        lines += [
            f"device     {runtime.describe_device(device)}",
            f"profile    {profile.name} ({profile.source}): {profile.description}",
            f"precision  {precision.name}"
            + (" with a gradient scaler" if precision.needs_grad_scaler else ""),
            f"compile    {'yes' if compile_ok else 'no'}: {compile_why}",
        ]
    except settings.RuntimeConfigError as error:  # the settings below say which one
        lines.append(f"device     NOT CHOSEN: {error}")
    lines.append(f"data cache {data.cache_dir()} ({cache_state()})")
    for status in data.dataset_status():
        lines.append(f"data       {status.summary()}")
    lines.append("settings   the environment variables the course reads (aigc_course/settings.py):")
    lines += [f"  {line}" for line in settings.report()]
    return "\n".join(lines)


def cache_state() -> str:
    """ "writable", or why the data cache cannot be written (it is probed: a file made and removed)."""
    problem = cache_problem()
    return "writable" if problem is None else f"NOT WRITABLE: {problem}"


def cache_problem() -> str | None:
    """Why files cannot be written into the data cache (downloads, checkpoints), or None."""
    import tempfile

    folder = data.cache_dir()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder; set AIGC_DATA_DIR to a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
            pass
    except OSError as error:
        return f"{error.strerror or error}; set AIGC_DATA_DIR to a folder you can write"
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
        found.append(f"the data cache {data.cache_dir()} cannot be written: {problem}")
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
        print("\nNOT READY:")
        for line in found:
            print(f"  - {line}")
        return 2
    missing = missing_data()
    if missing:
        print("\nNOT READY: required data is missing.")
        for line in missing:
            print(f"  - {line}")
        return 1
    print("\nREADY: everything the lessons need is here.")
    return 0
