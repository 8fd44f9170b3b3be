"""The ``aigc-course`` command.

aigc-course doctor                     report the environment; exit 1 with fixes if not ready
aigc-course data status                where each data set is (nothing is downloaded)
aigc-course data fetch [NAME ...]      fill the cache ahead of time (default: the required sets)
aigc-course build-exercises [--check]  make exercises/ from solutions/ (--check: only compare)
aigc-course execute-notebooks PATH...  run notebooks top to bottom and save their outputs
aigc-course time-notebooks [--profile P] [PATH ...]
                                       time each notebook; write the table (and README's copy)
aigc-course workshop prepare           fill the data cache, verify checkpoints: ready or not
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from aigc_course import __version__


def _find_repository_root() -> Path | None:
    """The course repository: the current folder or one above it holding solutions/."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "solutions").is_dir() and (folder / "pyproject.toml").is_file():
            return folder
    return None


def _repository_root() -> Path:
    root = _find_repository_root()
    if root is not None:
        return root
    here = Path.cwd().resolve()
    raise SystemExit(
        "error: run this inside the course repository (no folder with solutions/ and "
        f"pyproject.toml at or above {here})"
    )


def cmd_doctor(args: argparse.Namespace) -> int:
    from aigc_course import data, runtime

    try:
        print(runtime.describe())
    except runtime.RuntimeConfigError as error:
        print(f"NOT READY: {error}")
        return 2
    missing = [
        status for status in data.dataset_status() if status.spec.required and not status.ready
    ]
    if missing:
        print("\nNOT READY: required data is missing.")
        for status in missing:
            print(f"  - {status.spec.title}: {data.sources.fix_hint(status.spec)}")
        return 1
    print("\nREADY: everything the lessons need is here.")
    return 0


def cmd_data_status(args: argparse.Namespace) -> int:
    from aigc_course import data

    for status in data.dataset_status(args.names or None):
        print(status.summary())
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from aigc_course import data

    names = args.names or [name for name, spec in data.DATASETS.items() if spec.required]
    failures = 0
    for name in names:
        try:
            paths = data.fetch(name)
        except (KeyError, data.DataError) as error:
            message = error.args[0] if isinstance(error, KeyError) else str(error)
            print(f"FAILED {name}: {message}", file=sys.stderr)
            failures += 1
            continue
        folders = sorted({str(path.parent) for path in paths})
        print(f"ok     {name}: {len(paths)} file(s) verified in {', '.join(folders)}")
    return 1 if failures else 0


def cmd_build_exercises(args: argparse.Namespace) -> int:
    from aigc_course.notebook_tools import SolutionMarkerError, build_exercises

    root = _repository_root()
    try:
        report = build_exercises(root, check=args.check)
    except SolutionMarkerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in report.written:
        print(f"wrote      {path.relative_to(root)}")
    for path in report.up_to_date:
        print(f"up to date {path.relative_to(root)}")
    for problem in report.out_of_date:
        print(f"OUT OF SYNC {problem}", file=sys.stderr)
    if report.out_of_date:
        if args.check:
            print("Run `aigc-course build-exercises` to regenerate exercises/.", file=sys.stderr)
        return 1
    return 0


def cmd_execute_notebooks(args: argparse.Namespace) -> int:
    from aigc_course.notebook_tools import execute_notebook

    if args.profile:
        os.environ["AIGC_PROFILE"] = args.profile
    failures = 0
    for path in args.paths:
        print(f"running {path} ...", flush=True)
        try:
            execute_notebook(Path(path).resolve(), timeout=args.timeout)
        except Exception as error:  # report every notebook, then fail
            print(f"FAILED  {path}: {type(error).__name__}: {str(error)[-2000:]}", file=sys.stderr)
            failures += 1
        else:
            print(f"saved   {path}")
    return 1 if failures else 0


def cmd_time_notebooks(args: argparse.Namespace) -> int:
    from aigc_course import files, timing

    root = _repository_root()
    paths = [Path(path).resolve() for path in args.paths] or sorted(
        (root / "notebooks").glob("*.ipynb")
    )
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        print(f"error: no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    rows, failures = [], []
    for path in paths:
        label = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
        print(f"timing  {label} ({args.profile}) ...", flush=True)
        try:
            row = timing.time_notebook(path, args.profile, timeout=args.timeout, label=label)
        except timing.TimingError as error:
            print(f"FAILED  {error}", file=sys.stderr)
            failures.append(label)
            continue
        print(
            f"        {timing.format_duration(row.seconds)}, "
            f"{timing.format_bytes(row.peak_rss_bytes)} RAM on {row.device}"
        )
        rows.append(row)
    if failures:
        print(f"not written: {len(failures)} notebook(s) failed: {', '.join(failures)}")
        return 1
    command = " ".join(["aigc-course time-notebooks", f"--profile {args.profile}", *args.paths])
    table = timing.time_table(rows, command)
    output = Path(args.output or root / "docs" / f"time-table-{args.profile}.md")
    output.parent.mkdir(parents=True, exist_ok=True)
    files.write_text(output, f"# Time table: the {args.profile} profile\n\n{table}")
    print(f"\n{table}\nwrote   {output}")
    if args.paths and args.readme is None:
        print("README not updated: it shows every lesson (time them all, or pass --readme)")
    elif args.readme != "none":
        readme = Path(args.readme or root / "README.md")
        try:
            text = timing.replace_marked_block(
                readme.read_text(encoding="utf-8"), args.profile, table
            )
        except ValueError as error:
            print(f"README not updated ({readme}): {error}", file=sys.stderr)
            return 1
        files.write_text(readme, text)
        print(f"updated {readme}")
    return 0


def cmd_workshop_prepare(args: argparse.Namespace) -> int:
    from aigc_course import workshop

    print("Preparing this machine for a workshop.\n\n== data: filling the cache ==", flush=True)
    items = workshop.data_items(args.data or None)
    items += workshop.software_items() + workshop.checkpoint_items()
    root = _find_repository_root()
    if root is not None:
        items += workshop.exercise_items(root)
    print("\n== aigc-course doctor ==", flush=True)
    doctor_ok = cmd_doctor(args) == 0
    items.append(
        workshop.Item("doctor", doctor_ok, "READY" if doctor_ok else "NOT READY", "see its report")
    )
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


def _summary(title: str, rows: dict[str, object]) -> None:
    print(title)
    width = max(len(name) for name in rows)
    for name, value in rows.items():
        shown = f"{value:,.4f}" if isinstance(value, float) else str(value)
        print(f"  {name:{width}s}  {shown}")


def _invocation(default: str) -> str:
    """The command line this process was started with (recorded in checkpoints), or ``default``
    when the CLI runs in-process (e.g. from a test)."""
    return "aigc-course " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["train"] else default


def _save_trained(
    args: argparse.Namespace, trainer, run, name: str, file_stem: str, command: str
) -> tuple[Path, str]:
    """Save ``run`` with ``trainer.save_run``: with ``--pretrained`` as the course's checkpoint
    ``name`` (recorded in the manifest), otherwise as ``--out/<file_stem>.safetensors``.
    Returns the path and the sha256."""
    from aigc_course import checkpoints

    if args.pretrained:
        path = checkpoints.PRETRAINED_DIR / f"{name}.safetensors"
    else:
        path = Path(args.out) / f"{file_stem}.safetensors"
    digest = trainer.save_run(run, path, command)
    if args.pretrained:
        checkpoints.register_pretrained(name, path.name, command, run.metrics)
    return path, digest


def cmd_train_vae(args: argparse.Namespace) -> int:
    from aigc_course import runtime
    from aigc_course.data import DataError
    from aigc_course.trainers import vae as trainer
    from aigc_course.training import NonFiniteLossError

    profile = runtime.get_profile(args.profile)
    recipe = trainer.recipe(
        profile,
        steps=args.steps,
        batch_size=args.batch_size,
        beta=args.beta,
        latent_dim=args.latent_dim,
    )
    command = _invocation("aigc-course train vae")
    device = runtime.get_device()
    print(
        f"training the VAE: profile {profile}, device {device}, {recipe.train.steps} steps of {recipe.batch_size}"
    )
    try:
        run = trainer.train_vae(recipe, device=device, progress=not args.quiet)
    except (NonFiniteLossError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    path, digest = _save_trained(args, trainer, run, trainer.PRETRAINED_NAME, "vae", command)
    m = run.metrics
    _summary(
        "VAE trained:",
        {
            "steps": recipe.train.steps,
            "images/s": m["images_per_second"],
            "train time [s]": m["train_seconds"],
            "test -ELBO [nats]": m["test_neg_elbo"],
            "  reconstruction": m["test_reconstruction"],
            "  KL": m["test_kl"],
            f"test IWAE NLL, k={m['iwae_k']} [nats]": m["test_iwae_nll"],
            "  [bits/dim]": m["test_iwae_bits_per_dim"],
            "checkpoint": path,
            "sha256": digest,
        },
    )
    return 0


def cmd_train_gpt(args: argparse.Namespace) -> int:
    from aigc_course import runtime
    from aigc_course.data import DataError
    from aigc_course.models import bigram
    from aigc_course.trainers import gpt as trainer
    from aigc_course.training import NonFiniteLossError

    profile = runtime.get_profile(args.profile)
    recipe = trainer.recipe(profile, steps=args.steps, batch_size=args.batch_size)
    command = _invocation("aigc-course train gpt")
    device = runtime.get_device()
    c = recipe.model
    print(
        f"training the GPT: profile {profile}, device {device}, {c.n_layer} layers x {c.n_head} heads x "
        f"{c.n_embd}, context {c.block_size}, {recipe.train.steps} steps of {recipe.batch_size}"
    )
    try:
        run = trainer.train_gpt(recipe, device=device, progress=not args.quiet)
        baseline = bigram.baseline()
    except (NonFiniteLossError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    run.metrics["bigram_val_loss"] = baseline.val_nll
    path, digest = _save_trained(args, trainer, run, trainer.PRETRAINED_NAME, "gpt", command)
    m = run.metrics
    _summary(
        "GPT trained:",
        {
            "parameters": m["parameters"],
            "steps": recipe.train.steps,
            "tokens/s": m["tokens_per_second"],
            "train time [s]": m["train_seconds"],
            "val loss [nats/char]": m["val_loss"],
            "  [bits/char]": m["val_loss"] / math.log(2),
            "bigram baseline [nats/char]": baseline.val_nll,
            "checkpoint": path,
            "sha256": digest,
        },
    )
    return 0


def cmd_generate_gpt(args: argparse.Namespace) -> int:
    import torch

    from aigc_course import checkpoints, runtime
    from aigc_course.trainers import gpt as trainer

    try:
        model, tokenizer, _ = trainer.load_gpt(Path(args.checkpoint) if args.checkpoint else None)
        prompt = tokenizer.encode(args.prompt)
    except (checkpoints.CheckpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not prompt:
        print(
            'error: the prompt is empty; give some text to continue, e.g. "ROMEO:"', file=sys.stderr
        )
        return 1
    device = runtime.get_device()
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


def cmd_train_classifier(args: argparse.Namespace) -> int:
    from aigc_course import checkpoints, metrics, runtime
    from aigc_course.trainers import gan as trainer

    steps = args.steps or runtime.get_profile(args.profile).select(smoke=20, cpu=3000, gpu=6000)
    print(f"training the Fashion-MNIST classifier for FID: {steps} steps")
    model, test_accuracy = metrics.train_classifier(steps=steps, progress=not args.quiet)
    print(f"test accuracy: {test_accuracy:.4f}")
    if args.pretrained:
        command = _invocation("aigc-course train classifier")
        print(f"sha256: {trainer.save_classifier(model, test_accuracy, command)}")
    else:
        path = Path(args.out) / "classifier.safetensors"
        digest = checkpoints.save(path, model, {}, {"test_accuracy": test_accuracy})
        print(f"checkpoint: {path} sha256 {digest}")
    return 0


def cmd_train_gan(args: argparse.Namespace) -> int:
    from aigc_course import checkpoints, runtime
    from aigc_course.data import DataError
    from aigc_course.trainers import gan as trainer
    from aigc_course.training import NonFiniteLossError

    profile = runtime.get_profile(args.profile)
    recipe = trainer.recipe(
        profile, conditional=args.conditional, steps=args.steps, batch_size=args.batch_size
    )
    command = _invocation("aigc-course train gan")
    device = runtime.get_device()
    kind = "class-conditional " if args.conditional else ""
    print(
        f"training the {kind}DCGAN: profile {profile}, device {device}, {recipe.steps} steps of {recipe.batch_size}"
    )
    try:
        run = trainer.train_gan(recipe, device=device, progress=not args.quiet)
    except (NonFiniteLossError, DataError, checkpoints.CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    name = trainer.PRETRAINED_NAME + ("_conditional" if args.conditional else "")
    path, digest = _save_trained(args, trainer, run, name, "gan", command)
    rows = {
        "steps": recipe.steps,
        "images/s": run.metrics["images_per_second"],
        "train time [s]": run.metrics["train_seconds"],
        f"FID vs {recipe.fid_images} test images": run.metrics["test_fid"],
        "class-histogram entropy [nats]": run.metrics["test_class_entropy"],
    }
    if "conditional_accuracy" in run.metrics:
        rows["classifier accuracy on labelled samples"] = run.metrics["conditional_accuracy"]
    _summary("GAN trained:", {**rows, "checkpoint": path, "sha256": digest})
    for warning in run.warnings:
        print(f"warning: {warning}")
    return 0


def _train_parser(models, name: str, description: str, items: str, run) -> argparse.ArgumentParser:
    """The options every ``aigc-course train MODEL`` command shares."""
    parser = models.add_parser(name, help=description)
    parser.add_argument(
        "--profile", choices=["smoke", "cpu", "gpu"], help="run profile (default: automatic)"
    )
    parser.add_argument("--steps", type=int, help="training steps (default: the profile's)")
    parser.add_argument("--batch-size", type=int, help=f"{items} per step (default: the profile's)")
    parser.add_argument(
        "--out", default=str(Path("data") / "checkpoints" / name), help="output folder"
    )
    parser.add_argument(
        "--pretrained", action="store_true", help="write the package's pretrained checkpoint"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aigc-course", description="Generative AI from the math up: the course's tools."
    )
    parser.add_argument("--version", action="version", version=f"aigc-course {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    doctor = commands.add_parser("doctor", help="check the environment and the data")
    doctor.set_defaults(run=cmd_doctor)

    data_parser = commands.add_parser("data", help="data sets: status, fetch")
    data_commands = data_parser.add_subparsers(dest="data_command", required=True)
    status = data_commands.add_parser("status", help="where each data set is (no download)")
    status.add_argument("names", nargs="*", help="fashion-mnist, tinyshakespeare, mnist")
    status.set_defaults(run=cmd_data_status)
    fetch = data_commands.add_parser("fetch", help="download and verify data into the cache")
    fetch.add_argument(
        "names", nargs="*", help="fashion-mnist, tinyshakespeare, mnist (default: the required)"
    )
    fetch.set_defaults(run=cmd_data_fetch)

    exercises = commands.add_parser("build-exercises", help="make exercises/ from solutions/")
    exercises.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if exercises/ is out of sync"
    )
    exercises.set_defaults(run=cmd_build_exercises)

    execute = commands.add_parser(
        "execute-notebooks", help="run notebooks in fresh kernels and save their outputs"
    )
    execute.add_argument("paths", nargs="+", help="notebook files")
    execute.add_argument("--profile", choices=["smoke", "cpu", "gpu"], help="run profile to use")
    execute.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    execute.set_defaults(run=cmd_execute_notebooks)

    timer = commands.add_parser(
        "time-notebooks", help="time each notebook in a fresh kernel; write a markdown table"
    )
    timer.add_argument("paths", nargs="*", help="notebook files (default: notebooks/*.ipynb)")
    timer.add_argument(
        "--profile", choices=["smoke", "cpu", "gpu"], default="cpu", help="run profile (cpu)"
    )
    timer.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    timer.add_argument("--output", help="table file (default: docs/time-table-PROFILE.md)")
    timer.add_argument(
        "--readme",
        help="README whose time-table markers get the table (default: README.md when every "
        "lesson is timed; none: skip)",
    )
    timer.set_defaults(run=cmd_time_notebooks)

    workshop = commands.add_parser("workshop", help="prepare a machine for a workshop")
    workshop_commands = workshop.add_subparsers(dest="workshop_command", required=True)
    prepare = workshop_commands.add_parser(
        "prepare", help="fill the data cache, verify checkpoints, run the doctor: ready or not"
    )
    prepare.add_argument(
        "--data", nargs="*", help="data sets to cache (default: the required ones)"
    )
    prepare.set_defaults(run=cmd_workshop_prepare)

    train_parser = commands.add_parser("train", help="train a model of the course")
    models = train_parser.add_subparsers(dest="model", required=True)
    vae = _train_parser(
        models, "vae", "the lesson-06 VAE on Fashion-MNIST", "images", cmd_train_vae
    )
    vae.add_argument("--beta", type=float, help="weight of the KL term (default 1: the ELBO)")
    vae.add_argument("--latent-dim", type=int, help="size of z (default 16)")
    _train_parser(
        models, "gpt", "the lesson-08 GPT on Tiny Shakespeare", "sequences", cmd_train_gpt
    )
    gan = _train_parser(
        models, "gan", "the lesson-07 DCGAN on Fashion-MNIST", "images", cmd_train_gan
    )
    gan.add_argument("--conditional", action="store_true", help="condition on the class (a cGAN)")
    _train_parser(models, "classifier", "the classifier behind FID", "images", cmd_train_classifier)

    generate = commands.add_parser("generate", help="generate with a trained model")
    generators = generate.add_subparsers(dest="model", required=True)
    gpt_generate = generators.add_parser("gpt", help="continue a text with the GPT")
    gpt_generate.add_argument("prompt", help='text to continue, e.g. "ROMEO:"')
    gpt_generate.add_argument("--tokens", type=int, default=300, help="characters to generate")
    gpt_generate.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    gpt_generate.add_argument("--top-k", type=int, help="sample among the k most likely")
    gpt_generate.add_argument("--top-p", type=float, help="sample within the top-p nucleus")
    gpt_generate.add_argument("--seed", type=int, help="random seed, for repeatable text")
    gpt_generate.add_argument(
        "--checkpoint", help="a checkpoint file (default: the pretrained GPT)"
    )
    gpt_generate.set_defaults(run=cmd_generate_gpt)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
