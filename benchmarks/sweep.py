"""Sweep GPT or DCGAN recipes at fixed wall-clock budgets: which gives the best model per CPU-minute.

    python benchmarks/sweep.py [--model gpt|gan] [--minutes 1 3 10 | --steps N]
                               [--candidates NAME ...] [--threads N]
                               [--scorer corpus|blocks] [--eval-characters N]

Each candidate is the cpu profile's GPT recipe as it was when the sweeps began
(:data:`GPT_SWEEP_BASE`) with a few settings changed (batch, context, width, depth, learning rate),
trained by the clock (``--minutes``: as many steps as fit, the schedule on the share of the time
spent), or for ``--steps`` (the wall time is then the result). Every run is scored
on the same yardstick, so candidates with different batch sizes and contexts compare: by default
every validation character (the last 10% of Tiny Shakespeare) predicted once, from at least half a
context (:func:`aigc_course.trainers.gpt.corpus_loss`); ``--scorer blocks``: the mean loss on about
``--eval-characters`` characters in fixed random blocks (the earlier tables' yardstick).

``nanogpt-cpu`` is the course's GPT at the shape, batch and hyper-parameters of nanoGPT's README
command for a CPU (4 layers x 4 heads x 128, context 64, batch 12, no dropout, lr 1e-3 to 1e-4
after 100 warm-up steps, weight decay 0.1; run it with ``--steps 2000``): the baseline to beat,
with no peer code.
``--model gan``: the DCGAN's candidates (:data:`GAN_CANDIDATES`), each the cpu profile's recipe with
a few settings changed (width, learning rate), scored by the course FID against 2,000 test
images (lower is better) at every evaluation: by steps, the row shows the whole curve.

Prints a markdown table, one row per (candidate, budget), with this machine's fp32 matmul speed:
the figures scale with it. Record the table in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import math

import _common  # benchmarks/_common.py: the script's own folder is on sys.path
import torch

from aigc_course import runtime, training
from aigc_course.trainers import gan
from aigc_course.trainers import gpt as trainer

#: What the GPT candidates change: the cpu profile's step recipe as it was when these sweeps began
#: (until 2026-12-05: 4 layers x 4 heads x 128, context 128, batch 32, lr 2e-3, 2,000 steps), so
#: that each name, and each command in benchmarks/RESULTS.md, keeps its meaning.
GPT_SWEEP_BASE: dict[str, object] = {
    "steps": 2_000,
    "batch_size": 32,
    "lr": 2e-3,
    "min_lr": 2e-4,  # named: a candidate's own lr would otherwise scale the floor with it
    "warmup_steps": 100,
    "log_every": 25,
}

#: The candidates: changes to :data:`GPT_SWEEP_BASE`. Each name says what it changes; two are not
#: changes: ``budget`` is what ``train gpt --minutes M`` trains (trainers.gpt.CPU_BUDGETS) and
#: ``pretrained`` the step recipe today (what ``train gpt --pretrained`` trains).
CANDIDATES: dict[str, dict[str, object]] = {
    "budget": {},
    "pretrained": {},
    "recipe": {},
    "batch16": {"batch_size": 16},
    "batch16-lr3e-3": {"batch_size": 16, "lr": 3e-3},
    "3layers-batch16-lr3e-3": {"n_layer": 3, "batch_size": 16, "lr": 3e-3},
    # the pretrained GPT's recipe of 2026-12-05 with 3 layers (run it with --steps 4000)
    "3layers-pretrained": {"n_layer": 3, "batch_size": 16, "lr": 3e-3, "warmup_steps": 200},
    "ctx64": {"block_size": 64},
    "batch16-ctx64": {"batch_size": 16, "block_size": 64},
    "batch16-ctx64-lr3e-3": {"batch_size": 16, "block_size": 64, "lr": 3e-3},
    "narrow96-ctx64": {"n_embd": 96, "n_head": 4, "block_size": 64, "batch_size": 16},
    "3layers-ctx64": {"n_layer": 3, "block_size": 64, "batch_size": 16},
    "wide192-3layers-ctx64": {
        "n_embd": 192,
        "n_head": 6,
        "n_layer": 3,
        "block_size": 64,
        "batch_size": 16,
    },
    "3layers-ctx64-lr3e-3": {"n_layer": 3, "block_size": 64, "batch_size": 16, "lr": 3e-3},
    "3layers-ctx64-batch8": {"n_layer": 3, "block_size": 64, "batch_size": 8},
    "2layers-ctx64": {"n_layer": 2, "block_size": 64, "batch_size": 16},
    "2layers-ctx64-lr3e-3": {"n_layer": 2, "block_size": 64, "batch_size": 16, "lr": 3e-3},
    "3layers-ctx32": {"n_layer": 3, "block_size": 32, "batch_size": 32},
    "nanogpt-cpu": {
        "block_size": 64,
        "batch_size": 12,
        "lr": 1e-3,
        "min_lr": 1e-4,
        "warmup_steps": 100,
        "eval_every": 250,
        "eval_batches": 20,
    },
}

#: The DCGAN's candidates: changes to the cpu profile's recipe (32 channels, latent 64, batch 64,
#: Adam lr 1e-3, betas (0.5, 0.999)), the winner of this sweep. ``paper`` is the DCGAN paper's width
#: and rate (64 channels, lr 2e-4; the cpu recipe before 2026-12-04); a step of 64 channels costs
#: 2.4 times one of 32.
GAN_CANDIDATES: dict[str, dict[str, object]] = {
    "recipe": {},
    "paper": {"channels": 64, "lr": 2e-4},
    "ch64-lr1e-3": {"channels": 64},
    "ch32-lr2e-4": {"lr": 2e-4},
    "ch32-lr5e-4": {"lr": 5e-4},
    "ch48-lr1e-3": {"channels": 48},
}

#: Validation characters every candidate is scored on.
EVAL_CHARACTERS = 200_000
EVAL_BATCH_SIZE = 32


def eval_batches(characters: int, block_size: int) -> int:
    """Batches of EVAL_BATCH_SIZE blocks that hold about ``characters`` characters."""
    return max(1, round(characters / (block_size * EVAL_BATCH_SIZE)))


def score(
    model, shakespeare: trainer.ShakespeareData, scorer: str, characters: int = EVAL_CHARACTERS
) -> float:
    """Mean loss (nats/char) on the validation text: every character once (``corpus``), or about
    ``characters`` of them in fixed random blocks (``blocks``)."""
    if scorer == "corpus":
        return trainer.corpus_loss(model, shakespeare.val_ids)
    batches = eval_batches(characters, model.config.block_size)
    return trainer.estimate_loss(model, shakespeare.val_ids, batches, EVAL_BATCH_SIZE)


def describe_changes(name: str, candidates: dict, budgets: tuple, minutes: float | None) -> str:
    """A row's changes to the recipe: the candidate's, or for ``budget`` the budget table's row."""
    if name == "pretrained":
        return "the step recipe today"
    if name != "budget":
        return ", ".join(f"{k}={v}" for k, v in candidates[name].items()) or "(none)"
    row = training.budget_row(budgets, minutes)
    chosen = ", ".join(f"{k}={v}" for k, v in row.changes.items()) if row else "(none)"
    return f"the budget's: {chosen}"


def candidate_recipe(
    trainer_module, profile, name: str, candidates: dict, length: dict, base: dict | None = None
):
    """What ``train MODEL --minutes M`` trains (``budget``), the step recipe itself
    (``pretrained``), or the step recipe with ``base`` and the candidate's changes (``base`` on the
    cpu profile only: the others' recipes are not what the candidates change), by the clock or by
    steps."""
    if name == "budget":
        return trainer_module.recipe_for(profile, **length)
    if name == "pretrained":
        return training.override(trainer_module.recipe_for(profile), **length)
    changes = {**(base if base and profile.name == "cpu" else {}), **candidates[name]}
    return training.override(trainer_module.recipe_for(profile, **changes), **length)


def sweep_gpt(args, profile, device, lengths) -> None:
    shakespeare = trainer.load_data()
    print(
        "| candidate | changes | minutes | wall [s] | steps × batch | tokens seen | params "
        f"| val loss [nats/char, {args.scorer}] | bits/char | tokens/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.candidates or list(CANDIDATES):
        for length in lengths:
            recipe = candidate_recipe(trainer, profile, name, CANDIDATES, length, GPT_SWEEP_BASE)
            if args.eval_characters < EVAL_CHARACTERS:
                batches = eval_batches(args.eval_characters, recipe.model.block_size)
                recipe = training.override(recipe, eval_batches=min(batches, recipe.eval_batches))
            run = trainer.train(recipe, device=device, progress=False, shakespeare=shakespeare)
            loss = score(run.model, shakespeare, args.scorer, args.eval_characters)
            minutes = length.get("minutes")
            history = run.history
            tokens = history.examples * recipe.model.block_size
            changes = describe_changes(name, CANDIDATES, trainer.CPU_BUDGETS, minutes)
            print(
                f"| {name} | {changes} | {'-' if minutes is None else f'{minutes:g}'} "
                f"| {history.seconds:.0f} | {history.steps_done} × {recipe.batch_size} "
                f"| {tokens:,} | {run.metrics['parameters']:,} | {loss:.4f} "
                f"| {loss / math.log(2):.4f} | {run.metrics['tokens_per_second']:,.0f} |",
                flush=True,
            )


def sweep_gan(args, profile, device, lengths) -> None:
    print(
        "| candidate | changes | minutes | wall [s] | steps × batch | ms/step | FID at each "
        "evaluation (steps) | final FID | class entropy [nats] |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.candidates or list(GAN_CANDIDATES):
        for length in lengths:
            recipe = candidate_recipe(gan, profile, name, GAN_CANDIDATES, length)
            run = gan.train(recipe, device=device, progress=False)
            minutes = length.get("minutes")
            history = run.history
            curve = ", ".join(
                f"{fid:.1f} ({step})"
                for step, fid in zip(history.eval_steps, history.eval_metrics["fid"], strict=True)
            )
            print(
                f"| {name} | {describe_changes(name, GAN_CANDIDATES, (), minutes)} "
                f"| {'-' if minutes is None else f'{minutes:g}'} | {history.seconds:.0f} "
                f"| {history.steps_done} × {recipe.batch_size} "
                f"| {1000 * history.seconds / history.steps_done:.1f} | {curve} "
                f"| {run.metrics['test_fid']:.2f} | {run.metrics['test_class_entropy']:.4f} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--model", choices=("gpt", "gan"), default="gpt")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, nargs="+", default=[1.0, 3.0])
    length.add_argument("--steps", type=int, help="train each candidate this many steps instead")
    parser.add_argument("--scorer", choices=("corpus", "blocks"), default="corpus")
    parser.add_argument(
        "--candidates",
        nargs="+",
        choices=sorted({*CANDIDATES, *GAN_CANDIDATES}),
        default=None,
        help="the GPT's (default: all of them) or with --model gan the DCGAN's",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--eval-characters",
        type=int,
        default=EVAL_CHARACTERS,
        help="score on about this many validation characters (default %(default)s); a small "
        "number also makes the evaluations during training that small (a quick check)",
    )
    args = parser.parse_args()
    table = GAN_CANDIDATES if args.model == "gan" else CANDIDATES
    unknown = sorted(set(args.candidates or ()) - set(table))
    if unknown:
        parser.error(f"not {args.model} candidates: {', '.join(unknown)}")
    if args.model == "gan" and (args.scorer != "corpus" or args.eval_characters != EVAL_CHARACTERS):
        parser.error("--scorer and --eval-characters score the GPT; the DCGAN is scored by FID")
    if args.threads:
        torch.set_num_threads(args.threads)

    profile = runtime.get_profile("cpu")
    device = runtime.get_device()
    _common.print_figures(_common.environment(profile, device))
    print()
    lengths = [{"steps": args.steps}] if args.steps else [{"minutes": m} for m in args.minutes]
    (sweep_gan if args.model == "gan" else sweep_gpt)(args, profile, device, lengths)


if __name__ == "__main__":
    main()
