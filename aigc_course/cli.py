"""The ``aigc-course`` command.

aigc-course doctor                     report the environment; exit 1 with fixes if not ready
aigc-course data status                where each data set is (nothing is downloaded)
aigc-course data fetch [NAME ...]      fill the cache ahead of time (default: the required sets)
aigc-course build-exercises [--check]  make exercises/ from solutions/ (--check: only compare)
aigc-course build-translations [--check | --sync]
                                       build the Chinese edition (notebooks/zh, solutions/zh,
                                       exercises/zh) from the English notebooks and translations/
aigc-course execute-notebooks PATH...  run notebooks top to bottom and save their outputs
aigc-course time-notebooks [--profile P] [PATH ...]
                                       time each notebook; write the table (and README's copy)
aigc-course workshop prepare           fill the data cache, verify checkpoints: ready or not
aigc-course train MODEL [options]      train a model (vae, gpt, gan, diffusion, finetune,
                                       classifier) under a profile; save it
aigc-course generate gpt PROMPT        continue a text with the pretrained (or a given) GPT

The command is a thin layer: each ``train MODEL`` goes through one table (:data:`TRAINERS`) to its
trainer module, whose interface is the same for every model (see :mod:`aigc_course.training`); a
model's own options are its recipe's settings, declared where they live
(:func:`aigc_course.validators.setting`).
"""

from __future__ import annotations

import os
import sys

from aigc_course import interrupts

if __name__ == "__main__" or os.path.basename(sys.argv[0]) == "aigc-course":
    # Run as the program (`aigc-course`, `python -m aigc_course.cli`): Ctrl-C is answered by the
    # course from here on, before anything heavy is imported (see aigc_course.interrupts).
    interrupts.install()

import argparse
import atexit
import contextlib
import importlib
import threading
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from aigc_course import PROFILE_NAMES, __version__, errors
from aigc_course.errors import CourseError, SettingError
from aigc_course.i18n import N_, _, display_width, padded
from aigc_course.validators import (
    CommandOption,
    count,
    non_negative_float,
    positive_float,
    probability_mass,
    seed,
)


class CourseArgumentParser(argparse.ArgumentParser):
    """argparse whose complaint about a bad option is one line, ``error: ...`` with where to get
    help, and exit status 2 (argparse's own status for a usage error). No option is taken by a
    prefix of its name: ``--lr`` is never read as another option that starts with it."""

    def __init__(self, *args, **kwargs) -> None:
        # Sub-commands too: add_parser makes them with this class and these defaults.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(
            2,
            _("error: {message} (see `{command} --help`)").format(
                message=message, command=self.prog
            )
            + "\n",
        )


def cmd_doctor(args: argparse.Namespace) -> int:
    from aigc_course import doctor

    return doctor.report()


def cmd_time_notebooks(args: argparse.Namespace) -> int:
    from aigc_course import notebook_tools, timing

    return timing.time_notebooks(
        notebook_tools.repository_root(),
        args.paths,
        args.profile,
        args.timeout,
        save=args.save,
        output=args.output,
        readme=args.readme,
    )


def cmd_workshop_prepare(args: argparse.Namespace) -> int:
    from aigc_course import notebook_tools, workshop

    return workshop.prepare(args.data or None, notebook_tools.find_repository_root())


def cmd_data_status(args: argparse.Namespace) -> int:
    from aigc_course import data

    for status in data.dataset_status(args.names or None):
        print(status.summary())
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from aigc_course import data

    names = args.names or [name for name, spec in data.DATASETS.items() if spec.required]
    for name in names:  # an unknown name stops here, as in `data status`, before any download
        data.get_spec(name)
    failures = 0
    for name in names:
        try:
            done = data.fill_cache(name)
        except data.DataError as error:
            print(_("FAILED {name}: {error}").format(name=name, error=error), file=sys.stderr)
            failures += 1
            continue
        folders = sorted({str(path.parent) for path, _action in done})
        print(
            _("ok     {name}: {count} file(s) verified in {folders}").format(
                name=name, count=len(done), folders=", ".join(folders)
            )
        )
        for path, what in done:
            if what.startswith("replaced"):
                print(f"       {path.name}: {what}")
    return 1 if failures else 0


def cmd_build_exercises(args: argparse.Namespace) -> int:
    from aigc_course import notebook_tools
    from aigc_course.notebook_tools import SolutionMarkerError, build_exercises

    root = notebook_tools.repository_root()
    try:
        report = build_exercises(root, check=args.check)
    except SolutionMarkerError as error:
        print(errors.one_line(error), file=sys.stderr)
        return 1
    for path in report.written:
        print(_("wrote      {path}").format(path=path.relative_to(root)))
    for path in report.up_to_date:
        print(_("up to date {path}").format(path=path.relative_to(root)))
    for problem in report.out_of_date:
        print(_("OUT OF SYNC {problem}").format(problem=problem), file=sys.stderr)
    if report.out_of_date:
        if args.check:
            print(_("Run `aigc-course build-exercises` to regenerate exercises/."), file=sys.stderr)
        return 1
    return 0


def cmd_build_translations(args: argparse.Namespace) -> int:
    from aigc_course import notebook_tools
    from aigc_course.notebook_tools import SolutionMarkerError
    from aigc_course.translations import TranslationFormatError, build_translations

    root = notebook_tools.repository_root()
    try:
        report = build_translations(root, args.language, check=args.check, sync=args.sync)
    except (TranslationFormatError, SolutionMarkerError) as error:
        print(errors.one_line(error), file=sys.stderr)
        return 1
    for path in report.written:
        print(_("wrote      {path}").format(path=path.relative_to(root)))
    for problem in report.problems:
        print(_("TRANSLATION {problem}").format(problem=problem), file=sys.stderr)
    for problem in report.out_of_date:
        print(_("OUT OF SYNC {problem}").format(problem=problem), file=sys.stderr)
    print(
        _("{up_to_date} files up to date, {written} written").format(
            up_to_date=len(report.up_to_date), written=len(report.written)
        )
    )
    if report.out_of_date and args.check:
        print(_("Run `aigc-course build-translations` to rebuild the edition."), file=sys.stderr)
    return 1 if report.out_of_date or report.problems else 0


def cmd_execute_notebooks(args: argparse.Namespace) -> int:
    from aigc_course.notebook_tools import environment, execute_notebook

    failures = 0
    with environment(AIGC_PROFILE=args.profile):  # the kernels inherit it; restored after
        for path in args.paths:
            print(_("running {path} ...").format(path=path), flush=True)
            try:
                execute_notebook(Path(path).resolve(), timeout=args.timeout)
            except Exception as error:  # report every notebook, then fail
                print(
                    _("FAILED  {path}: {error_type}: {error}").format(
                        path=path, error_type=type(error).__name__, error=str(error)[-2000:]
                    ),
                    file=sys.stderr,
                )
                failures += 1
            else:
                print(_("saved   {path}").format(path=path))
    return 1 if failures else 0


def print_summary(title: str, rows: dict[str, object]) -> None:
    print(title)
    width = max(display_width(name) for name in rows)
    for name, value in rows.items():
        shown = f"{value:,.4f}" if isinstance(value, float) else str(value)
        print(f"  {padded(name, width)}  {shown}")


def _invocation(default: str) -> str:
    """The command line this process was started with (recorded in checkpoints), or ``default``
    when the CLI runs in-process (e.g. from a test)."""
    return "aigc-course " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["train"] else default


@dataclass(frozen=True)
class Trainable:
    """A model ``aigc-course train`` knows: its trainer module (the one trainer interface of
    :mod:`aigc_course.training`), what it is and what a batch holds. Its own options come from its
    recipe (:func:`aigc_course.training.command_options`)."""

    module: str
    label: str  # "VAE trained:"
    title: str
    items: str
    # label, title and items are marked with N_ (shown with _(), in the language of the moment)


#: Every trainable model, by the name ``aigc-course train NAME`` takes.
TRAINERS: dict[str, Trainable] = {
    "vae": Trainable(
        "aigc_course.trainers.vae", "VAE", N_("the lesson-06 VAE on Fashion-MNIST"), N_("images")
    ),
    "gpt": Trainable(
        "aigc_course.trainers.gpt",
        "GPT",
        N_("the lesson-08 GPT on Tiny Shakespeare"),
        N_("sequences"),
    ),
    "gan": Trainable(
        "aigc_course.trainers.gan", "GAN", N_("the lesson-07 DCGAN on Fashion-MNIST"), N_("images")
    ),
    "diffusion": Trainable(
        "aigc_course.trainers.diffusion",
        N_("diffusion model"),
        N_("the lesson-10 diffusion model (a noise-predicting U-Net) on Fashion-MNIST"),
        N_("images"),
    ),
    "finetune": Trainable(
        "aigc_course.trainers.finetune",
        N_("fine-tuned GPT"),
        N_("the pretrained GPT fine-tuned on one speaker (lesson 09)"),
        N_("sequences"),
    ),
    "classifier": Trainable(
        "aigc_course.trainers.classifier",
        N_("classifier"),
        N_("the classifier behind the course's FID"),
        N_("images"),
    ),
}


def _recipe_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The recipe settings the command line changes (the options given, nothing else)."""
    given = {
        "steps": args.steps,
        "minutes": args.minutes,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "accumulation_steps": args.accumulation_steps,
    }
    given |= {name: getattr(args, name) for name in args.model_options}
    return {name: value for name, value in given.items() if value is not None}


def _recipe_changes(args: argparse.Namespace, overrides: dict[str, object]) -> dict[str, object]:
    """The overrides that change a checkpoint's recipe: not those that pick which checkpoint
    (``--conditional`` makes the cGAN's own checkpoint, not a changed DCGAN)."""
    naming = {name for name, option in args.model_options.items() if option.names_checkpoint}
    return {key: value for key, value in overrides.items() if key not in naming}


def cmd_train(args: argparse.Namespace) -> int:
    """``aigc-course train MODEL``: the model's recipe under the profile, trained, saved, summarised.

    Under ``torchrun`` every process runs this command: they train together (data parallel, see
    :mod:`aigc_course.distributed`), and only rank 0 prints and writes the checkpoint."""
    from aigc_course import distributed, runtime

    world = distributed.world(runtime.get_device())
    try:
        if world.is_main:
            return _train_and_save(args)
        with open(os.devnull, "w") as silent, contextlib.redirect_stdout(silent):
            return _train_and_save(args)
    finally:
        distributed.close()


def _train_and_save(args: argparse.Namespace) -> int:
    from aigc_course import checkpoints, distributed, runtime

    if args.pretrained and args.out:
        raise SettingError(_("--pretrained writes the package's checkpoint; it takes no --out"))
    if args.pretrained and args.overwrite:
        raise SettingError(
            _(
                "--overwrite is for --out folders; --pretrained always replaces the shipped "
                "checkpoint"
            )
        )
    if args.force and not args.pretrained:
        raise SettingError(_("--force only applies with --pretrained (it allows another profile)"))
    trainable = TRAINERS[args.model]
    trainer = importlib.import_module(trainable.module)
    overrides = _recipe_overrides(args)
    profile = runtime.get_profile(args.profile)
    device = runtime.get_device()
    recipe = trainer.recipe_for(profile, **overrides)
    changes = _recipe_changes(args, overrides)
    claim = None
    if args.pretrained:
        name = trainer.checkpoint_name(recipe)
        path = checkpoints.pretrained_target(name, args.profile, changes, force=args.force)
    else:
        variant = getattr(trainer, "variant", lambda _recipe: None)(recipe)
        path = checkpoints.output_file(args.out, args.model, variant)
    try:
        # Taking the claim (its lock file) is not cut by Ctrl-C: an interrupt there comes once the
        # claim is held, inside this try, whose finally releases it; no lock is left behind.
        with interrupts.deferred():
            if not args.pretrained and distributed.is_main():
                claim = checkpoints.OutputClaim(path, overwrite=args.overwrite)
        return _train_into(args, trainable, trainer, recipe, profile, device, path, changes)
    finally:
        if claim is not None:
            claim.release()


def _train_into(args, trainable, trainer, recipe, profile, device, path, changes) -> int:
    """Train ``recipe`` and save the run at ``path`` (claimed already), then print its summary.

    The weights are saved as soon as the last step is taken, before the final evaluation, and
    again with the evaluation's figures: Ctrl-C (or an error) during the evaluation loses only the
    evaluation. A ``--pretrained`` run is saved once, complete (the package records its figures).
    A save is never cut by Ctrl-C (:func:`interrupts.deferred`)."""
    from aigc_course import checkpoints, distributed, runtime, training

    command = _invocation(f"aigc-course train {args.model}")
    print(
        _("training {model}: profile {profile}, device {device}, {recipe}").format(
            model=_(trainable.title),
            profile=profile,
            device=device,
            recipe=trainer.describe(recipe),
        )
    )
    saved: dict[str, object] = {}  # what is on disk: the sha256, and whether it has its evaluation

    def save(run, evaluated: bool) -> None:
        with interrupts.deferred():
            saved.update(digest=trainer.save_run(run, path, command), evaluated=evaluated)
            if evaluated and args.pretrained and distributed.is_main():
                checkpoints.register_pretrained(
                    trainer.checkpoint_name(recipe),
                    path.name,
                    command,
                    run.metrics,
                    profile=profile.name,
                    options=changes,
                )

    try:
        run = trainer.train(
            recipe,
            device=device,
            progress=not args.quiet,
            on_trained=None if args.pretrained else lambda run: save(run, evaluated=False),
        )
        save(run, evaluated=True)
    except BaseException as error:
        if interrupts.is_interrupt(error):
            print(_interrupted(path, saved), file=sys.stderr)
            return 130
        if saved:
            print(
                _("the trained model was saved before the evaluation failed: {path}").format(
                    path=path
                ),
                file=sys.stderr,
            )
        if runtime.is_out_of_memory(error):
            raise runtime.out_of_memory(error, device, _size_options(args)) from None
        if isinstance(error, training.NonFiniteLossError) and _size_options(args):
            given = ", ".join(f"{k} {v:g}" for k, v in _size_options(args).items())
            raise training.NonFiniteLossError(
                _("{error} Or an option given: {options}.").format(error=error, options=given)
            ) from None
        raise
    if not distributed.is_main():
        return 0
    print_summary(
        _("{model} trained:").format(model=_(trainable.label)),
        {**trainer.summary(run), _("checkpoint"): path, "sha256": saved["digest"]},
    )
    for warning in getattr(run, "warnings", []):
        print(_("warning: {message}").format(message=warning))
    if interrupts.received():  # Ctrl-C that some code swallowed: the run still ends as interrupted
        print(_interrupted(path, saved), file=sys.stderr)
        return 130
    return 0


def _size_options(args: argparse.Namespace) -> dict[str, object]:
    """The options given that size the run (numbers: batch, model, schedule), flag -> value."""
    sized = {"--batch-size": args.batch_size}
    sized |= {
        option.flag_for(name): getattr(args, name)
        for name, option in args.model_options.items()
        if option.sizes_the_run()
    }
    return {flag: value for flag, value in sized.items() if value is not None}


def _interrupted(path: Path, saved: dict[str, object]) -> str:
    """What Ctrl-C during ``train`` left on disk, in one message."""
    if not saved:
        if path.exists():
            message = _(
                "interrupted: the run stopped before its last step and nothing was saved ({path} "
                "is unchanged): a checkpoint is written when training ends. For a shorter run, "
                "pass --minutes M (or --steps N)."
            )
        else:
            message = _(
                "interrupted: the run stopped before its last step and nothing was saved ({path} "
                "was not written): a checkpoint is written when training ends. For a shorter run, "
                "pass --minutes M (or --steps N)."
            )
        return "\n" + message.format(path=path)
    if not saved["evaluated"]:
        message = _(
            "interrupted during the final evaluation: the trained model is saved at {path} "
            "(sha256 {digest}) with its training figures only; the evaluation's are missing."
        )
    else:
        message = _(
            "interrupted after the run: its checkpoint is complete at {path} (sha256 {digest})."
        )
    return "\n" + message.format(path=path, digest=saved["digest"])


def cmd_generate_gpt(args: argparse.Namespace) -> int:
    import torch

    from aigc_course import runtime
    from aigc_course.trainers import gpt as trainer

    device = runtime.get_device()
    loaded = trainer.load(Path(args.checkpoint) if args.checkpoint else None)
    model, tokenizer = loaded.model, loaded.tokenizer
    try:
        prompt = tokenizer.encode(args.prompt)
    except ValueError as error:  # a character the model never saw
        raise SettingError(_("the prompt cannot be encoded: {error}").format(error=error)) from None
    if not prompt:
        raise SettingError(_('the prompt is empty; give some text to continue, e.g. "ROMEO:"'))
    model.to(device)
    generator = torch.Generator().manual_seed(args.seed) if args.seed is not None else None
    print(args.prompt, end="", flush=True)
    model.generate(
        torch.tensor([prompt], device=device),
        args.tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        generator=generator,
        on_token=lambda token: print(tokenizer.decode([token]), end="", flush=True),
    )
    print()
    return 0


def _add_train_commands(commands, argv: list[str], named: Collection[str]) -> None:
    """``aigc-course train MODEL``, one sub-command per entry of :data:`TRAINERS`; the options of the
    ``named`` models' recipes are added (their trainers are imported: PyTorch loads)."""
    train_parser = commands.add_parser("train", help=_("train a model of the course"))
    models = train_parser.add_subparsers(dest="model", required=True)
    for name, trainable in TRAINERS.items():
        parser = models.add_parser(name, help=_(trainable.title))
        parser.add_argument(
            "--profile", choices=PROFILE_NAMES, help=_("run profile (default: automatic)")
        )
        length = parser.add_mutually_exclusive_group()
        length.add_argument(
            "--steps", type=count, help=_("training steps (default: the profile's)")
        )
        length.add_argument(
            "--minutes",
            type=positive_float,
            help=_(
                "train for this much wall-clock time instead, as many steps as fit "
                "(the schedule follows the clock)"
            ),
        )
        parser.add_argument(
            "--batch-size",
            type=count,
            help=_("{items} per step, over all processes (default: the profile's)").format(
                items=_(trainable.items)
            ),
        )
        learning_rate = parser.add_argument(
            "--lr",
            type=positive_float,
            help=_(
                "the learning rate: the peak, where the recipe warms up and decays it (a run by "
                "the clock may start from its budget's own)"
            ),
        )
        parser.add_argument(
            "--accumulation-steps",
            type=count,
            help=_(
                "split each step's batch into this many micro-batches, one update for all "
                "(less memory, the same step; see docs/SCALING.md)"
            ),
        )
        parser.add_argument(
            "--out",
            help=_(
                "output folder (default: checkpoints/{name} in the data cache, as `data status` "
                "shows it)"
            ).format(name=name),
        )
        parser.add_argument(
            "--overwrite",
            action="store_true",
            help=_(
                "replace a checkpoint already in the output folder (otherwise a run refuses to start)"
            ),
        )
        parser.add_argument(
            "--pretrained",
            action="store_true",
            help=_("replace the package's shipped checkpoint (maintainers; needs its --profile)"),
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help=_("with --pretrained: allow another profile or changed settings"),
        )
        parser.add_argument("--quiet", action="store_true", help=_("no progress bar"))
        options = (
            _add_recipe_options(parser, trainable, argv, learning_rate) if name in named else {}
        )
        parser.set_defaults(run=cmd_train, model_options=options)


def _add_recipe_options(
    parser: argparse.ArgumentParser,
    trainable: Trainable,
    argv: list[str],
    learning_rate: argparse.Action,
) -> dict[str, CommandOption]:
    """The options a model's recipe offers (fields declared with :func:`validators.setting`), with
    the defaults of the profile that ``argv`` names (or the automatic one), by field name; the
    ``learning_rate`` option's help gains that recipe's default too."""
    from aigc_course import runtime, training

    named = argv[argv.index("--profile") + 1] if "--profile" in argv[:-1] else None
    try:
        profile = runtime.get_profile(named if named in PROFILE_NAMES else None)
    except CourseError:  # a bad AIGC_PROFILE: reported once the options are parsed
        profile = runtime.get_profile("cpu")
    recipe = importlib.import_module(trainable.module).recipe_for(profile)
    options = {}
    for name, option, value in training.command_options(recipe):
        help_text = _("{help} (default {value})").format(
            help=_(option.help), value=f"{value:g}" if isinstance(value, float) else value
        )
        if option.switch is not None:
            parser.add_argument(
                option.flag_for(name), dest=name, action="store_const", const=option.switch,
                help=_(option.help),
            )  # fmt: skip
        else:
            parser.add_argument(
                option.flag_for(name), dest=name, type=option.parse, choices=option.choices,
                help=help_text, metavar=None if option.choices else name.upper(),
            )  # fmt: skip
        options[name] = option
    learning_rate.help = _("{help} (default {value})").format(
        help=learning_rate.help, value=f"{recipe.train.lr:g}"
    )
    return options


def _named_models(argv: list[str]) -> list[str]:
    """The model ``argv`` trains (``train MODEL ...``), if any: only its trainer is imported."""
    if "train" not in argv:
        return []
    following = argv[argv.index("train") + 1 :]
    return [word for word in following[:1] if word in TRAINERS]


def build_parser(
    argv: list[str] | None = None, models: Collection[str] | None = None
) -> argparse.ArgumentParser:
    """The command's parser. ``train MODEL``'s own options come from the recipe of each model in
    ``models`` (default: the one ``argv`` names), so ``aigc-course --help`` loads no PyTorch."""
    argv = sys.argv[1:] if argv is None else argv
    models = _named_models(argv) if models is None else models
    parser = CourseArgumentParser(
        prog="aigc-course", description=_("Generative AI from the math up: the course's tools.")
    )
    parser.add_argument("--version", action="version", version=f"aigc-course {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help=_("show the full traceback of an error (also: AIGC_DEBUG=1)"),
    )
    commands = parser.add_subparsers(dest="command", required=True)

    doctor = commands.add_parser("doctor", help=_("check the environment and the data"))
    doctor.set_defaults(run=cmd_doctor)

    data_parser = commands.add_parser("data", help=_("data sets: status, fetch"))
    data_commands = data_parser.add_subparsers(dest="data_command", required=True)
    status = data_commands.add_parser("status", help=_("where each data set is (no download)"))
    status.add_argument("names", nargs="*", help="fashion-mnist, tinyshakespeare")
    status.set_defaults(run=cmd_data_status)
    fetch = data_commands.add_parser("fetch", help=_("download and verify data into the cache"))
    fetch.add_argument("names", nargs="*", help=_("fashion-mnist, tinyshakespeare (default: both)"))
    fetch.set_defaults(run=cmd_data_fetch)

    exercises = commands.add_parser("build-exercises", help=_("make exercises/ from solutions/"))
    exercises.add_argument(
        "--check", action="store_true", help=_("write nothing; exit 1 if exercises/ is out of sync")
    )
    exercises.set_defaults(run=cmd_build_exercises)

    translations = commands.add_parser(
        "build-translations", help=_("build the Chinese edition from the English notebooks")
    )
    mode = translations.add_mutually_exclusive_group()
    mode.add_argument(
        "--check",
        action="store_true",
        help=_("write nothing; exit 1 if the edition is out of date"),
    )
    mode.add_argument(
        "--sync",
        action="store_true",
        help=_("rewrite translations/ in cell order, adding each untranslated cell's English text"),
    )
    translations.add_argument("--language", default="zh", choices=["zh"], help=_("the edition"))
    translations.set_defaults(run=cmd_build_translations)

    execute = commands.add_parser(
        "execute-notebooks", help=_("run notebooks in fresh kernels and save their outputs")
    )
    execute.add_argument("paths", nargs="+", help=_("notebook files"))
    execute.add_argument("--profile", choices=PROFILE_NAMES, help=_("run profile to use"))
    execute.add_argument("--timeout", type=count, default=1800, help=_("seconds per cell"))
    execute.set_defaults(run=cmd_execute_notebooks)

    timer = commands.add_parser(
        "time-notebooks", help=_("time each notebook in a fresh kernel; write a markdown table")
    )
    timer.add_argument("paths", nargs="*", help=_("notebook files (default: notebooks/*.ipynb)"))
    timer.add_argument(
        "--profile", choices=PROFILE_NAMES, default="cpu", help=_("run profile (cpu)")
    )
    timer.add_argument("--timeout", type=count, default=1800, help=_("seconds per cell"))
    timer.add_argument("--output", help=_("table file (default: docs/time-table-PROFILE.md)"))
    timer.add_argument(
        "--save",
        action="store_true",
        help=_("also save each notebook with the outputs of its timed run (as execute-notebooks)"),
    )
    timer.add_argument(
        "--readme",
        help=_(
            "README whose time-table markers get the table (default: README.md when every "
            "lesson is timed; none: skip)"
        ),
    )
    timer.set_defaults(run=cmd_time_notebooks)

    workshop = commands.add_parser("workshop", help=_("prepare a machine for a workshop"))
    workshop_commands = workshop.add_subparsers(dest="workshop_command", required=True)
    prepare = workshop_commands.add_parser(
        "prepare", help=_("fill the data cache, verify checkpoints, run the doctor: ready or not")
    )
    prepare.add_argument(
        "--data", nargs="*", help=_("data sets to cache (default: the required ones)")
    )
    prepare.set_defaults(run=cmd_workshop_prepare)

    _add_train_commands(commands, argv, models)

    generate = commands.add_parser("generate", help=_("generate with a trained model"))
    generators = generate.add_subparsers(dest="model", required=True)
    gpt_generate = generators.add_parser("gpt", help=_("continue a text with the GPT"))
    gpt_generate.add_argument("prompt", help=_('text to continue, e.g. "ROMEO:"'))
    gpt_generate.add_argument("--tokens", type=count, default=300, help=_("characters to generate"))
    gpt_generate.add_argument(
        "--temperature",
        type=non_negative_float,
        default=0.8,
        help=_("0 = greedy, as is any temperature so small that the logits overflow (default 0.8)"),
    )
    gpt_generate.add_argument(
        "--top-k", type=count, help=_("sample among the k most likely (k >= 1)")
    )
    gpt_generate.add_argument(
        "--top-p", type=probability_mass, help=_("sample within the top-p nucleus (0 < p <= 1)")
    )
    gpt_generate.add_argument(
        "--seed", type=seed, help=_("random seed (0 to 2**64 - 1), for repeatable text")
    )
    gpt_generate.add_argument(
        "--checkpoint", help=_("a checkpoint file (default: the pretrained GPT)")
    )
    gpt_generate.set_defaults(run=cmd_generate_gpt)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. Bad options stop at parsing (``error: ...``, status 2); the course's own
    errors (settings, data, checkpoints, a diverged run) print ``error: <what and the fix>`` with
    status 2, a file that cannot be written or read status 1, Ctrl-C "interrupted" with status
    130. ``--debug`` or ``AIGC_DEBUG=1`` shows their tracebacks instead. Any other exception is a
    bug of the course and keeps its traceback.

    As a program (``argv`` from the command line), Ctrl-C is answered by
    :mod:`aigc_course.interrupts` from here on, before anything heavy is imported."""
    if argv is None:
        interrupts.install()
    try:
        status = _run(argv)
    except BaseException as error:
        if not interrupts.is_interrupt(error) or isinstance(error, SystemExit):
            raise
        print("\n" + _("interrupted"), file=sys.stderr)
        status = 130
    if argv is None:
        if interrupts.received() and status != 130:  # swallowed by some code: still an interrupt
            print("\n" + _("interrupted"), file=sys.stderr)
            status = 130
        _ignore_further_interrupts()
    return status


def _run(argv: list[str] | None) -> int:
    """Parse, check the environment variables as the options were checked (``doctor`` reports
    them instead), run."""
    from aigc_course import settings

    args = build_parser(argv).parse_args(argv)
    try:
        problems = [] if args.command == "doctor" else settings.invalid()
        if problems:
            raise settings.RuntimeConfigError(problems[0])
        debug = args.debug or errors.debug_enabled()
    except CourseError as error:
        print(errors.one_line(error), file=sys.stderr)
        return 2
    if debug:
        return args.run(args)
    try:
        return args.run(args)
    except CourseError as error:
        if interrupts.received():
            raise
        print(errors.one_line(error), file=sys.stderr)
        return 2
    except OSError as error:
        if interrupts.received():
            raise
        print(errors.one_line(error), file=sys.stderr)
        return 1


def _ignore_further_interrupts() -> None:
    """Once the command has decided its status, exit with it whatever else arrives: Ctrl-C during
    the exit (a repeated key press after an interrupt, or one just as a finished run exits) would
    otherwise kill the process by the signal, with no status and no message. Only when the command
    runs as a program (``argv`` from the command line), never inside a caller's process."""
    import signal

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def program() -> NoReturn:
    """The ``aigc-course`` program (and ``python -m aigc_course.cli``): run the command the command
    line names, then :func:`leave` with its status."""
    leave(main())


def leave(status: int) -> NoReturn:
    """End the process with ``status`` as Python's own exit does, less its teardown of every loaded
    module, one by one: with PyTorch loaded, 0.3 to 0.6 s of CPU after the command's last line, for
    nothing the user can see (the memory goes with the process).

    What Python's exit does that counts is done first: non-daemon threads are waited for, the
    ``atexit`` handlers run (logging's, multiprocessing's, temporary folders'), stdout and stderr
    are flushed (a stream that is not there, as with ``>&-``, is left out, as Python does); then
    ``os._exit``. Where that cannot be done as Python does it (a Python without CPython's two exit
    functions, or a stream that cannot be flushed: a closed pipe), Python's usual exit, which
    reports it as usual.

    When the streams flush, it also keeps the status: under ``python -m``, CPython exits by SIGINT
    itself (status -2, not 130) when a Ctrl-C once escaped some nested code run during an import,
    even though it was handled since."""
    wait_for_threads = getattr(threading, "_shutdown", None)
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if wait_for_threads is None or run_exit_handlers is None:
        sys.exit(status)
    wait_for_threads()
    run_exit_handlers()  # each runs once: Python's exit, should it follow, finds none left
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        sys.exit(status)
    os._exit(status)


if __name__ == "__main__":
    program()
