"""The doctor: one report of this environment, and whether everything the lessons need is here.

``aigc-course doctor`` and lesson 00 print :func:`describe`; :func:`missing_data` lists the
required data sets that are not found, each with its fix.
"""

from __future__ import annotations

import platform

import torch

from aigc_course import data, runtime


def _package_versions() -> str:
    from importlib import metadata

    versions = []
    for name in ("numpy", "matplotlib", "ipywidgets", "tqdm", "safetensors", "pooch"):
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} MISSING (pip install {name})")
    return ", ".join(versions)


def describe() -> str:
    """One short report of this environment: the setup notebook and ``aigc-course doctor`` print it."""
    device = runtime.get_device()
    profile = runtime.get_profile(device=device)
    precision = runtime.choose_precision(device)
    compile_ok, compile_why = runtime.compile_support(device.type)
    lines = [
        f"Python     {platform.python_version()} on {platform.system()} {platform.machine()}"
        + (" (Google Colab)" if runtime.in_colab() else ""),
        f"PyTorch    {torch.__version__}",
        f"packages   {_package_versions()}",
        f"device     {runtime.device_summary(device)}",
        f"profile    {profile.name} ({profile.source}): {profile.description}",
        f"precision  {precision.name}"
        + (" with a gradient scaler" if precision.needs_grad_scaler else ""),
        f"compile    {'yes' if compile_ok else 'no'}: {compile_why}",
        f"data cache {data.cache_dir()}",
    ]
    for status in data.dataset_status():
        lines.append(f"data       {status.summary()}")
    return "\n".join(lines)


def missing_data() -> list[str]:
    """One line per required data set that is not here: its title and the command that fixes it."""
    return [
        f"{status.spec.title}: {data.sources.fix_hint(status.spec)}"
        for status in data.dataset_status()
        if status.spec.required and not status.ready
    ]
