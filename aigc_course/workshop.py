"""Preparing a machine (or a room of them) for a workshop: ``aigc-course workshop prepare``.

Each check gives a :class:`Item`: ready or not, what was found, and the fix. :func:`prepare` fills
the data cache (copying local copies in, downloading only what is nowhere on the machine),
verifies every pretrained checkpoint against the sha256 in its manifest, and checks the software
a learner needs: PyTorch, a Jupyter front end and widgets that work with it, the device settings.
After it says ready, the clone (with its ``data/``) can be copied to machines without internet.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

MIN_TORCH = (2, 3)


@dataclass(frozen=True)
class Item:
    """One line of the ready / not-ready list."""

    name: str
    ready: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = "ready    " if self.ready else "NOT READY"
        text = f"{mark}  {self.name}: {self.detail}"
        return text + (f"\n           fix: {self.fix}" if not self.ready and self.fix else "")


def _version_tuple(version: str) -> tuple[int, ...]:
    numbers = []
    for part in version.split("+")[0].split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        numbers.append(int(digits) if digits else 0)
    return tuple(numbers)


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def software_items() -> list[Item]:
    """Python, PyTorch, Jupyter and ipywidgets, and the device settings."""
    from aigc_course import runtime

    items = [
        Item(
            "Python",
            sys.version_info >= (3, 10),
            platform.python_version(),
            "install Python 3.10 or newer (e.g. with conda: conda env create -f environment.yml)",
        )
    ]
    torch_version = _installed("torch") or "missing"
    items.append(
        Item(
            "PyTorch",
            torch_version != "missing" and _version_tuple(torch_version) >= MIN_TORCH,
            torch_version,
            "pip install 'torch>=2.3' (see pytorch.org for the build that matches your GPU)",
        )
    )
    lab, notebook = _installed("jupyterlab"), _installed("notebook")
    front_end = f"jupyterlab {lab}" if lab else (f"notebook {notebook}" if notebook else "none")
    items.append(
        Item(
            "Jupyter",
            bool(lab or notebook),
            front_end,
            "pip install jupyterlab (or use Google Colab: every lesson has an Open-in-Colab badge)",
        )
    )
    widgets = _installed("ipywidgets") or "missing"
    widgets_ok = widgets != "missing" and _version_tuple(widgets) >= (7, 7)
    detail = widgets
    if widgets_ok and lab and _version_tuple(lab) >= (4,) and _version_tuple(widgets) < (8,):
        widgets_ok = False  # JupyterLab 4 renders only ipywidgets 8 (jupyterlab_widgets 3)
        detail = f"{widgets} with jupyterlab {lab}: the sliders would not render"
    items.append(
        Item("ipywidgets", widgets_ok, detail, "pip install 'ipywidgets>=8' (Colab keeps its 7.7)")
    )
    try:
        device = runtime.get_device()
        profile = runtime.get_profile(device=device)
        precision = runtime.choose_precision(device)
        items.append(
            Item(
                "device",
                True,
                f"{runtime.describe_device(device)}; profile {profile.name}, precision "
                f"{precision.name}",
            )
        )
    except runtime.RuntimeConfigError as error:
        items.append(Item("device", False, str(error), "fix or unset AIGC_DEVICE / AIGC_PROFILE"))
    return items


def data_items(names: list[str] | None = None, progress: bool = True) -> list[Item]:
    """Fill the cache with each data set (default: the required ones); an item per data set."""
    from aigc_course import data

    specs = (
        [data.get_spec(name) for name in names]
        if names
        else [spec for spec in data.DATASETS.values() if spec.required]
    )
    items = []
    for spec in specs:
        try:
            done = data.fill_cache(spec.name, progress=progress)
        except data.DataError as error:
            first_line = str(error).splitlines()[0]
            items.append(Item(spec.title, False, first_line, data.sources.fix_hint(spec)))
            continue
        actions = sorted({action for _, action in done})
        folder = done[0][0].parent
        items.append(
            Item(
                spec.title, True, f"{len(done)} file(s) verified in {folder} ({'; '.join(actions)})"
            )
        )
    return items


def checkpoint_items() -> list[Item]:
    """Every pretrained checkpoint in the manifest: present, and its sha256 the recorded one."""
    from aigc_course import checkpoints

    entries = checkpoints.manifest()
    if not entries:
        return [
            Item(
                "pretrained checkpoints",
                False,
                f"no manifest at {checkpoints.MANIFEST}",
                "reinstall the course from a full clone (git clone, then pip install -e .)",
            )
        ]
    items = []
    for name, entry in sorted(entries.items()):
        path = checkpoints.PRETRAINED_DIR / entry["file"]
        fix = (
            f"git checkout -- aigc_course/pretrained/{entry['file']} (or re-clone); "
            f"to remake it: {entry['command']}"
        )
        if not path.is_file():
            items.append(Item(f"checkpoint {name}", False, f"{path} is missing", fix))
            continue
        digest = checkpoints.sha256_file(path)
        if digest != entry["sha256"]:
            detail = f"sha256 {digest[:12]}… is not the recorded {entry['sha256'][:12]}…"
            items.append(Item(f"checkpoint {name}", False, detail, fix))
        else:
            size = path.stat().st_size / 2**20
            items.append(Item(f"checkpoint {name}", True, f"sha256 verified ({size:.1f} MiB)"))
    return items


def exercise_items(root) -> list[Item]:
    """exercises/ matches solutions/ (an instructor who edited a solution must regenerate)."""
    from aigc_course.notebook_tools import SolutionMarkerError, build_exercises

    try:
        report = build_exercises(root, check=True)
    except SolutionMarkerError as error:
        return [Item("exercises", False, str(error), "fix the solution's markers")]
    if report.out_of_date:
        return [
            Item(
                "exercises",
                False,
                "; ".join(report.out_of_date),
                "aigc-course build-exercises",
            )
        ]
    return [Item("exercises", True, f"{len(report.up_to_date)} notebooks match their solutions")]


def prepare(data_names: list[str] | None, root: Path | None) -> int:
    """``aigc-course workshop prepare``: fill the data cache, check the software, the shipped
    checkpoints, the exercises (in a clone at ``root``) and the doctor; print a checklist with a fix
    for each problem; returns the exit status (0: ready)."""
    from aigc_course import doctor

    print("Preparing this machine for a workshop.\n\n== data: filling the cache ==", flush=True)
    items = data_items(data_names)
    for item in items:
        print(item.line())
    items += software_items() + checkpoint_items()
    if root is not None:
        items += exercise_items(root)
    print("\n== aigc-course doctor ==", flush=True)
    doctor_ok = doctor.report() == 0
    items.append(Item("doctor", doctor_ok, "READY" if doctor_ok else "NOT READY", "see its report"))
    print("\n== workshop checklist ==")
    for item in items:
        print(item.line())
    problems = [item for item in items if not item.ready]
    if problems:
        print(
            f"\nNOT READY: {len(problems)} problem(s) above, each with its fix; "
            "then run `aigc-course workshop prepare` again."
        )
        return 1
    print(
        "\nREADY for the workshop. To set up machines without internet, copy this clone with its "
        "data/ folder (or point AIGC_DATA_PATH at a copy of it)."
    )
    return 0
