"""Sweep GPT recipes at fixed wall-clock budgets: which recipe gives the best model per CPU-minute.

    python benchmarks/sweep.py [--minutes 1 3 10 | --steps N] [--candidates NAME ...] [--threads N]
                               [--scorer corpus|blocks] [--eval-characters N]

Each candidate is the cpu profile's GPT recipe with a few settings changed (batch, context, width,
depth, learning rate), trained by the clock (``--minutes``: as many steps as fit, the schedule on the
share of the time spent), or for ``--steps`` (the wall time is then the result). Every run is scored
on the same yardstick, so candidates with different batch sizes and contexts compare: by default
every validation character (the last 10% of Tiny Shakespeare) predicted once, from at least half a
context (:func:`aigc_course.trainers.gpt.corpus_loss`); ``--scorer blocks``: the mean loss on about
``--eval-characters`` characters in fixed random blocks (the earlier tables' yardstick).

``nanogpt-cpu`` is the course's GPT at the shape, batch and hyper-parameters of nanoGPT's README
command for a CPU (4 layers x 4 heads x 128, context 64, batch 12, no dropout, lr 1e-3 to 1e-4
after 100 warm-up steps, weight decay 0.1; run it with ``--steps 2000``): the baseline to beat,
with no peer code.
Prints a markdown table, one row per (candidate, budget), with this machine's fp32 matmul speed:
the figures scale with it. Record the table in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import math

import _common  # benchmarks/_common.py: the script's own folder is on sys.path
import torch

from aigc_course import runtime, training
from aigc_course.trainers import gpt as trainer

#: The candidates: changes to the cpu profile's recipe (4 layers x 4 heads x 128, context 128,
#: batch 32, lr 2e-3). Each name says what it changes.
CANDIDATES: dict[str, dict[str, object]] = {
    "budget": {},  # the recipe the trainer picks for the budget (trainers.gpt.CPU_BUDGETS)
    "recipe": {},
    "batch16": {"batch_size": 16},
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, nargs="+", default=[1.0, 3.0])
    length.add_argument("--steps", type=int, help="train each candidate this many steps instead")
    parser.add_argument("--scorer", choices=("corpus", "blocks"), default="corpus")
    parser.add_argument("--candidates", nargs="+", choices=list(CANDIDATES), default=None)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--eval-characters",
        type=int,
        default=EVAL_CHARACTERS,
        help="score on about this many validation characters (default %(default)s); a small "
        "number also makes the evaluations during training that small (a quick check)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    profile = runtime.get_profile("cpu")
    device = runtime.get_device()
    shakespeare = trainer.load_data()
    _common.print_figures(_common.environment(profile, device))
    print()
    print(
        "| candidate | changes | minutes | wall [s] | steps × batch | tokens seen | params "
        f"| val loss [nats/char, {args.scorer}] | bits/char | tokens/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    lengths = [{"steps": args.steps}] if args.steps else [{"minutes": m} for m in args.minutes]
    for name in args.candidates or list(CANDIDATES):
        for length in lengths:
            if name == "budget":  # what `aigc-course train gpt --minutes M` trains
                recipe = trainer.recipe_for(profile, **length)
            else:  # the step-count recipe with the candidate's changes, by the clock or steps
                recipe = training.override(
                    trainer.recipe_for(profile, **CANDIDATES[name]), **length
                )
            if args.eval_characters < EVAL_CHARACTERS:
                batches = eval_batches(args.eval_characters, recipe.model.block_size)
                recipe = training.override(recipe, eval_batches=min(batches, recipe.eval_batches))
            run = trainer.train(recipe, device=device, progress=False, shakespeare=shakespeare)
            loss = score(run.model, shakespeare, args.scorer, args.eval_characters)
            minutes = length.get("minutes")
            history = run.history
            tokens = history.examples * recipe.model.block_size
            changes = ", ".join(f"{k}={v}" for k, v in CANDIDATES[name].items()) or "(none)"
            if name == "budget":
                row = training.budget_row(trainer.CPU_BUDGETS, minutes)
                chosen = ", ".join(f"{k}={v}" for k, v in row.changes.items()) if row else "(none)"
                changes = f"the budget's: {chosen}"
            print(
                f"| {name} | {changes} | {'-' if minutes is None else f'{minutes:g}'} "
                f"| {history.seconds:.0f} | {history.steps_done} × {recipe.batch_size} "
                f"| {tokens:,} | {run.metrics['parameters']:,} | {loss:.4f} "
                f"| {loss / math.log(2):.4f} | {run.metrics['tokens_per_second']:,.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
