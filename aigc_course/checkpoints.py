"""Checkpoints: weights in safetensors, with the config and metrics beside them, written atomically.

A checkpoint is one ``.safetensors`` file: the tensors, plus string metadata holding JSON for the
model's config, its metrics, the command that made it and anything else a lesson needs (e.g. a
tokenizer). safetensors stores only tensors and strings, so loading it can never run code, unlike a
pickled ``torch.save`` file.

The course's pretrained checkpoints live in ``aigc_course/pretrained/`` with a ``manifest.json``
that records each file's sha256, the command that made it and its metrics; :func:`load_pretrained`
refuses a file whose sha256 does not match.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from aigc_course import files
from aigc_course.data import sources
from aigc_course.errors import CourseError, SettingError
from aigc_course.files import atomic_path
from aigc_course.i18n import _

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
MANIFEST = PRETRAINED_DIR / "manifest.json"
FORMAT = "aigc-course-checkpoint-1"


class CheckpointError(CourseError, RuntimeError):
    """A checkpoint is missing, corrupt, or not the one expected."""


@dataclass
class Checkpoint:
    """What a checkpoint holds."""

    state_dict: dict[str, torch.Tensor]
    config: dict
    metrics: dict
    extra: dict
    model: str | None = None  # the class name of the saved model (None in older checkpoints)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def save(
    path: str | Path,
    model: torch.nn.Module,
    config: dict,
    metrics: dict | None = None,
    extra: dict | None = None,
    keep: Callable[[str], bool] | None = None,
) -> str:
    """Save ``model``'s weights with ``config``, ``metrics`` and ``extra`` (JSON-able) to ``path``;
    with ``keep``, only the tensors whose names it accepts (e.g. a model's adapters alone).

    The model's class name is recorded too, so that loading it as another kind of model is a clear
    :class:`CheckpointError` rather than a shape mismatch. Written to a temporary file in the same
    folder, read back and compared, then renamed into place: an interrupted save never leaves a
    half-written checkpoint. Returns the file's sha256.
    """
    path = Path(path)
    state_dict = model.state_dict()
    if keep is not None:
        state_dict = {name: tensor for name, tensor in state_dict.items() if keep(name)}
    state, aliases = _unique_tensors(state_dict)
    metadata = {
        "format": FORMAT,
        "model": type(model).__name__,
        "aliases": json.dumps(aliases, sort_keys=True),
        "config": json.dumps(config, sort_keys=True),
        "metrics": json.dumps(metrics or {}, sort_keys=True),
        "extra": json.dumps(extra or {}, sort_keys=True),
    }
    with atomic_path(path) as temporary:
        save_file(state, str(temporary), metadata=metadata)
        written = load_file(str(temporary))
        if written.keys() != state.keys() or any(
            not torch.equal(written[k], state[k]) for k in state
        ):
            raise CheckpointError(
                _("{path}: the written file does not read back identically").format(path=path)
            )
        digest = sha256_file(temporary)
    return digest


def _unique_tensors(
    state_dict: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tied weights (one tensor under two names, e.g. a GPT's embedding and output head) are
    stored once; ``aliases`` maps each extra name to the stored one."""
    stored: dict[str, torch.Tensor] = {}
    first_name: dict[tuple[int, int, tuple], str] = {}
    aliases: dict[str, str] = {}
    for name, tensor in state_dict.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in first_name:
            aliases[name] = first_name[key]
            continue
        first_name[key] = name
        stored[name] = tensor.detach().cpu().contiguous().clone()
    return stored, aliases


def load(path: str | Path, expected_sha256: str | None = None) -> Checkpoint:
    """Read a checkpoint; with ``expected_sha256``, refuse a file whose content differs."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(_("no checkpoint at {path}").format(path=path))
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise CheckpointError(
                _(
                    "{path} is not the expected checkpoint: sha256 {actual}..., expected "
                    "{expected}... The file is corrupt or was replaced; restore it "
                    "(git checkout -- <file>, or reinstall the course) or retrain it."
                ).format(path=path, actual=actual[:16], expected=expected_sha256[:16])
            )
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            _("{path} is not a readable safetensors checkpoint: {error}").format(
                path=path, error=error
            )
        ) from error
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            _("{path} is not an aigc-course checkpoint (format {format})").format(
                path=path, format=repr(metadata.get("format"))
            )
        )
    for alias, name in json.loads(metadata.get("aliases", "{}")).items():
        state[alias] = state[name]
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(
                _(
                    "{path}: weight {name} holds NaN or infinite values, so the model cannot give "
                    "sensible outputs. The file is damaged, or the run that wrote it diverged: "
                    "retrain it (aigc-course train ...) or use another checkpoint."
                ).format(path=path, name=repr(name))
            )
    try:
        return Checkpoint(
            state_dict=state,
            config=json.loads(metadata["config"]),
            metrics=json.loads(metadata["metrics"]),
            extra=json.loads(metadata["extra"]),
            model=metadata.get("model"),
        )
    except (KeyError, json.JSONDecodeError) as error:
        raise CheckpointError(
            _("{path}: its metadata is incomplete or damaged ({error_type}: {error})").format(
                path=path, error_type=type(error).__name__, error=error
            )
        ) from error


def manifest() -> dict:
    """The pretrained checkpoints shipped with the package: name -> {file, sha256, command, metrics}."""
    return json.loads(MANIFEST.read_text()) if MANIFEST.is_file() else {}


def load_pretrained(name: str) -> Checkpoint:
    """A pretrained checkpoint shipped with the course, verified against its recorded sha256."""
    entries = manifest()
    if name not in entries:
        raise CheckpointError(
            _("no pretrained checkpoint named {name}; the course ships: {names}").format(
                name=repr(name), names=", ".join(entries) or _("none")
            )
        )
    entry = entries[name]
    return load(PRETRAINED_DIR / entry["file"], expected_sha256=entry["sha256"])


def register_pretrained(
    name: str,
    file_name: str,
    command: str,
    metrics: dict,
    profile: str,
    options: dict | None = None,
) -> dict:
    """Record ``PRETRAINED_DIR / file_name`` in the manifest with its sha256, the command, the run
    profile and the options that changed the profile's recipe (used by ``aigc-course train``)."""
    entries = manifest()
    entry = {
        "file": file_name,
        "sha256": sha256_file(PRETRAINED_DIR / file_name),
        "command": command,
        "profile": profile,
        "options": options or {},
        "metrics": metrics,
    }
    entries[name] = entry
    text = json.dumps(entries, indent=2, sort_keys=True) + "\n"
    files.write_text(MANIFEST, text)
    return entry


def load_model(
    build: Callable[[dict], torch.nn.Module],
    pretrained_name: str,
    path: str | Path | None = None,
    expected_sha256: str | None = None,
    kind: str | tuple[str, ...] | None = None,
) -> tuple[torch.nn.Module, Checkpoint]:
    """A model in eval mode and its checkpoint: from ``path``, or by default the course's pretrained
    checkpoint ``pretrained_name`` (sha256-verified). ``build(config)`` makes the empty model;
    ``kind`` is its class name (or the names ``build`` can make), checked against the one the
    checkpoint records."""
    checkpoint = (
        load_pretrained(pretrained_name)
        if path is None
        else load(path, expected_sha256=expected_sha256)
    )
    kinds = (kind,) if isinstance(kind, str) else kind
    if kinds is not None and checkpoint.model is not None and checkpoint.model not in kinds:
        raise CheckpointError(
            _(
                "{path} holds a {found} model, not a {kind}; give a checkpoint written "
                "by the matching `aigc-course train` command"
            ).format(path=path, found=checkpoint.model, kind=_(" or ").join(kinds))
        )
    where = path if path is not None else pretrained_name
    names = list(checkpoint.state_dict)
    if names and all(".lora_" in name for name in names):
        base = checkpoint.extra.get("base", _("its base model"))
        raise CheckpointError(
            _(
                "{where} is a LoRA adapter (only the lora_A and lora_B weights of {base}), not a "
                "whole model: it needs its base; load it with aigc_course.trainers.finetune.load, "
                "which checks the base it was trained on"
            ).format(where=where, base=base)
        )
    try:
        model = build(checkpoint.config)
    except (TypeError, ValueError, RuntimeError, KeyError) as error:
        raise CheckpointError(
            _(
                "{where} records a configuration this model cannot take ({error_type}: "
                "{error}); give a checkpoint written by the matching "
                "`aigc-course train` command"
            ).format(
                where=where,
                error_type=type(error).__name__,
                error=str(error).splitlines()[0][:200],
            )
        ) from error
    problem = _key_mismatch(set(model.state_dict()), set(names))
    if problem:
        raise CheckpointError(
            _(
                "{where} does not fit this model: {problem}; give a checkpoint written by the "
                "matching `aigc-course train` command"
            ).format(where=where, problem=problem)
        )
    try:
        model.load_state_dict(checkpoint.state_dict)
    except (TypeError, ValueError, RuntimeError, KeyError) as error:
        message = str(error).splitlines()[0][:200]
        raise CheckpointError(
            _(
                "{where} does not hold this kind of model ({error_type}: {message}); "
                "give a checkpoint written by the matching `aigc-course train` command"
            ).format(where=where, error_type=type(error).__name__, message=message)
        ) from error
    return model.eval(), checkpoint


def _key_mismatch(expected: set[str], found: set[str]) -> str | None:
    """What differs between a model's weight names and a checkpoint's, in a few words."""
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    parts = []
    if missing:
        parts.append(
            _("{count} weight(s) missing (e.g. {names})").format(
                count=len(missing), names=", ".join(missing[:3])
            )
        )
    if unexpected:
        parts.append(
            _("{count} unexpected (e.g. {names})").format(
                count=len(unexpected), names=", ".join(unexpected[:3])
            )
        )
    return "; ".join(parts) or None


class OutputClaim:
    """The checkpoint file a run will write, claimed before training so that nothing trained is
    lost at the end: the folder is created and a probe file written and removed (a read-only
    place, a dangling link or a directory in the file's place fails now, not after training); an
    existing checkpoint needs ``--overwrite``; and a lock file beside it keeps a second run from
    writing the same file at the same time (a lock left by a process that no longer runs is
    taken over)."""

    def __init__(self, path: Path, overwrite: bool) -> None:
        self.path, self.lock = path, path.with_name(f".{path.name}.lock")
        if path.is_dir():
            raise SettingError(
                _("{path} is a folder where the checkpoint file should be; remove it").format(
                    path=path
                )
            )
        if path.exists() and not overwrite:
            made = datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
            raise SettingError(
                _(
                    "{path} already holds a checkpoint (written {made}); pass --overwrite to "
                    "replace it, or --out another folder"
                ).format(path=path, made=made)
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            probe = path.with_name(f".{path.name}.probe-{os.getpid()}")
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise SettingError(
                _(
                    "cannot write the checkpoint to {folder} ({error}); "
                    "choose a writable folder with --out"
                ).format(folder=path.parent, error=error.strerror or error)
            ) from None
        self._take_lock()

    def _take_lock(self) -> None:
        for _attempt in range(2):
            try:
                descriptor = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if self._holder_is_alive():
                    raise SettingError(
                        _(
                            "another run is writing {path} (its lock: {lock}); wait for it, "
                            "or use --out another folder"
                        ).format(path=self.path, lock=self.lock)
                    ) from None
                self.lock.unlink(missing_ok=True)  # left by a run that no longer exists
                continue
            with os.fdopen(descriptor, "w") as lock:
                lock.write(str(os.getpid()))
            return
        raise SettingError(
            _("cannot lock {path}: {lock} keeps reappearing").format(path=self.path, lock=self.lock)
        )

    def _holder_is_alive(self) -> bool:
        try:
            pid = int(self.lock.read_text().strip() or "0")
        except (OSError, ValueError):
            return False
        return pid > 0 and files.process_is_running(pid)

    def release(self) -> None:
        self.lock.unlink(missing_ok=True)


def pretrained_target(
    name: str, profile: str | None, changes: dict[str, object], force: bool = False
) -> Path:
    """Where ``aigc-course train --pretrained`` writes the shipped checkpoint ``name``, after
    checking the user means to replace it.

    The shipped checkpoints are what every lesson loads, so replacing one is a maintainer's action:
    it needs the profile recorded for it, named explicitly (``profile``), and no option that changes
    its recipe (``changes``); ``force`` allows both."""
    target = PRETRAINED_DIR / f"{name}.safetensors"
    if force:
        return target
    recorded = manifest().get(name, {}).get("profile")
    if profile is None:
        needed = f"--profile {recorded}" if recorded else "--profile PROFILE"
        raise SettingError(
            _(
                "--pretrained replaces the course's shipped checkpoint {name}, which every lesson "
                "loads; name the profile it is made with ({needed}), or add --force"
            ).format(name=repr(name), needed=needed)
        )
    if recorded and profile != recorded:
        raise SettingError(
            _(
                "--pretrained: the course's shipped checkpoint {name} is made with --profile "
                "{recorded}, not {profile}; use --profile {recorded}, or add --force to replace "
                "it with a {profile} model"
            ).format(name=repr(name), recorded=recorded, profile=profile)
        )
    if changes:
        flags = ", ".join("--" + option.replace("_", "-") for option in changes)
        raise SettingError(
            _(
                "--pretrained with {flags} changes the recipe of the course's shipped checkpoint "
                "{name}; leave those out, or add --force to replace it with a different recipe"
            ).format(flags=flags, name=repr(name))
        )
    return target


def output_file(out: str | None, model: str, variant: str | None = None) -> Path:
    """The checkpoint file of a run: in the folder ``out`` (``--out``), or by default in
    ``checkpoints/MODEL`` of the data cache; named after the model and its variant
    (``gan_conditional``, ``finetune_lora``), so that two variants never share a file."""
    if out is not None and not str(out).strip():
        raise SettingError(
            _("--out is empty; give a folder for the checkpoint (or leave --out out)")
        )
    folder = Path(out) if out else sources.cache_dir() / "checkpoints" / model
    if folder.exists() and not folder.is_dir():
        raise SettingError(
            _("--out {folder} is a file, not a folder; give a folder for the checkpoint").format(
                folder=folder
            )
        )
    stem = model if not variant else f"{model}_{variant}"
    return folder / f"{stem}.safetensors"
