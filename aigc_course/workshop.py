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

from aigc_course.i18n import _, padded

MIN_TORCH = (2, 3)

MARK_WIDTH = 9  # display columns of "NOT READY"


@dataclass(frozen=True)
class Item:
    """One line of the ready / not-ready list."""

    name: str
    ready: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = _("ready") if self.ready else _("NOT READY")
        text = f"{padded(mark, MARK_WIDTH)}  {self.name}: {self.detail}"
        if not self.ready and self.fix:
            text += "\n" + " " * (MARK_WIDTH + 2) + _("fix: {fix}").format(fix=self.fix)
        return text


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
            _(
                "install Python 3.10 or newer (e.g. with conda: conda env create -f "
                "environment.yml)"
            ),
        )
    ]
    torch_version = _installed("torch")
    items.append(
        Item(
            "PyTorch",
            torch_version is not None and _version_tuple(torch_version) >= MIN_TORCH,
            torch_version or _("missing"),
            _("pip install 'torch>=2.3' (see pytorch.org for the build that matches your GPU)"),
        )
    )
    lab, notebook = _installed("jupyterlab"), _installed("notebook")
    front_end = f"jupyterlab {lab}" if lab else (f"notebook {notebook}" if notebook else _("none"))
    items.append(
        Item(
            "Jupyter",
            bool(lab or notebook),
            front_end,
            _(
                "pip install jupyterlab (or use Google Colab: every lesson has an Open-in-Colab "
                "badge)"
            ),
        )
    )
    widgets = _installed("ipywidgets")
    widgets_ok = widgets is not None and _version_tuple(widgets) >= (7, 7)
    detail = widgets or _("missing")
    if widgets_ok and lab and _version_tuple(lab) >= (4,) and _version_tuple(widgets) < (8,):
        widgets_ok = False  # JupyterLab 4 renders only ipywidgets 8 (jupyterlab_widgets 3)
        detail = _("{widgets} with jupyterlab {lab}: the sliders would not render").format(
            widgets=widgets, lab=lab
        )
    items.append(
        Item(
            "ipywidgets",
            widgets_ok,
            detail,
            _("pip install 'ipywidgets>=8' (Colab keeps its 7.7)"),
        )
    )
    try:
        device = runtime.get_device()
        profile = runtime.get_profile(device=device)
        precision = runtime.choose_precision(device)
        items.append(
            Item(
                _("device"),
                True,
                _("{device}; profile {profile}, precision {precision}").format(
                    device=runtime.describe_device(device),
                    profile=profile.name,
                    precision=precision.name,
                ),
            )
        )
    except runtime.RuntimeConfigError as error:
        items.append(
            Item(_("device"), False, str(error), _("fix or unset AIGC_DEVICE / AIGC_PROFILE"))
        )
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
        actions = sorted({action for _path, action in done})
        folder = done[0][0].parent
        items.append(
            Item(
                spec.title,
                True,
                _("{count} file(s) verified in {folder} ({actions})").format(
                    count=len(done), folder=folder, actions="; ".join(actions)
                ),
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
                _("pretrained checkpoints"),
                False,
                _("no manifest at {path}").format(path=checkpoints.MANIFEST),
                _("reinstall the course from a full clone (git clone, then pip install -e .)"),
            )
        ]
    items = []
    for name, entry in sorted(entries.items()):
        path = checkpoints.PRETRAINED_DIR / entry["file"]
        fix = _(
            "git checkout -- aigc_course/pretrained/{file} (or re-clone); to remake it: {command}"
        ).format(file=entry["file"], command=entry["command"])
        label = _("checkpoint {name}").format(name=name)
        if not path.is_file():
            items.append(Item(label, False, _("{path} is missing").format(path=path), fix))
            continue
        digest = checkpoints.sha256_file(path)
        if digest != entry["sha256"]:
            detail = _("sha256 {digest}… is not the recorded {recorded}…").format(
                digest=digest[:12], recorded=entry["sha256"][:12]
            )
            items.append(Item(label, False, detail, fix))
        else:
            size = path.stat().st_size / 2**20
            items.append(
                Item(label, True, _("sha256 verified ({size} MiB)").format(size=f"{size:.1f}"))
            )
    return items


def exercise_items(root) -> list[Item]:
    """exercises/ matches solutions/ (an instructor who edited a solution must regenerate)."""
    from aigc_course.notebook_tools import SolutionMarkerError, build_exercises

    try:
        report = build_exercises(root, check=True)
    except SolutionMarkerError as error:
        return [Item(_("exercises"), False, str(error), _("fix the solution's markers"))]
    if report.out_of_date:
        return [
            Item(
                _("exercises"),
                False,
                "; ".join(report.out_of_date),
                "aigc-course build-exercises",
            )
        ]
    return [
        Item(
            _("exercises"),
            True,
            _("{count} notebooks match their solutions").format(count=len(report.up_to_date)),
        )
    ]


def prepare(data_names: list[str] | None, root: Path | None) -> int:
    """``aigc-course workshop prepare``: fill the data cache, check the software, the shipped
    checkpoints, the exercises (in a clone at ``root``) and the doctor; print a checklist with a fix
    for each problem; returns the exit status (0: ready)."""
    from aigc_course import doctor

    print(
        _("Preparing this machine for a workshop.")
        + "\n\n== "
        + _("data: filling the cache")
        + " ==",
        flush=True,
    )
    items = data_items(data_names)
    for item in items:
        print(item.line())
    items += software_items() + checkpoint_items()
    if root is not None:
        items += exercise_items(root)
    print("\n== aigc-course doctor ==", flush=True)
    doctor_ok = doctor.report() == 0
    items.append(
        Item(
            _("doctor"),
            doctor_ok,
            _("READY") if doctor_ok else _("NOT READY"),
            _("see its report"),
        )
    )
    print("\n== " + _("workshop checklist") + " ==")
    for item in items:
        print(item.line())
    problems = [item for item in items if not item.ready]
    if problems:
        print(
            "\n"
            + _(
                "NOT READY: {count} problem(s) above, each with its fix; then run "
                "`aigc-course workshop prepare` again."
            ).format(count=len(problems))
        )
        return 1
    print(
        "\n"
        + _(
            "READY for the workshop. To set up machines without internet, copy this clone with "
            "its data/ folder (or point AIGC_DATA_PATH at a copy of it)."
        )
    )
    return 0
