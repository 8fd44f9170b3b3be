"""Benchmark the lesson-08 GPT: train under a profile and print one figure a line.

    python benchmarks/gpt.py [--profile smoke|cpu|gpu] [--steps N | --minutes M] [--batch-size B]
                             [--lr LR] [--eval-every N]    (AIGC_COMPILE_MODE=reduce-overhead: CUDA graphs)

Prints: device, torch version, model size, parameters, tokens/s, MFU (CUDA only: FLOPs per token
6N + 12 L H d T, times tokens/s, against the device's bf16 dense peak), validation loss against the
bigram baseline, wall time, and peak memory. Record the figures in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import math
import resource
import time

import _common  # benchmarks/_common.py: the script's own folder is on sys.path
import torch

from aigc_course import runtime, settings
from aigc_course.trainers import gpt as trainer
from aigc_course.validators import count

# Dense bf16 peak FLOP/s of GPUs the course has been run on (from the vendors' data sheets).
BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "T4": 65e12}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in BF16_PEAK.items() if key in name), None)


def lowest_evaluation(history) -> str:
    """The lowest validation loss of the run's evaluations, and the step it was measured at."""
    losses = history.eval_metrics["val_loss"]
    best = min(range(len(losses)), key=losses.__getitem__)
    return f"{losses[best]:.4f} at step {history.eval_steps[best]}"


def steady_tokens_per_second(history, tokens_per_step: int) -> float | None:
    """Tokens/s over the logged intervals after the first (which holds torch.compile's compilation)
    that hold no evaluation: the training rate of a long run (None: too few logged steps). The
    loss is read on logged steps, so the device has caught up at each of them."""
    steps = seconds = 0.0
    points = list(zip(history.steps, history.step_seconds, strict=True))
    for (begin, began), (end, ended) in zip(points[1:], points[2:], strict=False):
        if not any(begin <= step < end for step in history.eval_steps):
            steps, seconds = steps + end - begin, seconds + ended - began
    return steps * tokens_per_step / seconds if seconds > 0 else None


def main() -> None:
    parser = _common.argument_parser(__doc__)
    _common.add_recipe_options(parser)
    parser.add_argument(
        "--eval-every",
        type=count,
        help="steps between validation estimates (default: the recipe's)",
    )
    args = parser.parse_args()

    started = time.perf_counter()
    profile = runtime.get_profile(args.profile)
    device = runtime.get_device()
    recipe = trainer.recipe_for(
        profile, steps=args.steps, minutes=args.minutes, batch_size=args.batch_size, lr=args.lr,
        eval_every=args.eval_every,
    )  # fmt: skip
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    run = trainer.train(recipe, device=device, progress=False)
    m, c = run.metrics, run.model.config
    peak = peak_flops(device)
    steady = steady_tokens_per_second(run.history, recipe.batch_size * c.block_size)

    def mfu(tokens_per_second: float | None) -> str:
        if not peak:
            return "n/a (CUDA only)"
        return f"{run.model.flops_per_token() * tokens_per_second / peak:.1%}"

    if device.type == "cuda":
        memory = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB (CUDA, allocated)"
    else:
        memory = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (process max RSS)"
    figures = {
        **_common.environment(profile, device),
        "model": f"{c.n_layer} layers x {c.n_head} heads x {c.n_embd}, context {c.block_size}, dropout {c.dropout}",
        "parameters": f"{m['parameters']:,}",
        "batch, learning rate": f"{recipe.batch_size} sequences, {recipe.train.lr:g}",
        "compile mode": settings.raw("AIGC_COMPILE_MODE") or "default (when compiled)",
        "steps": _common.length(run, "sequences"),
        "tokens/s": f"{m['tokens_per_second']:.0f}",
        "MFU": mfu(m["tokens_per_second"]),
        "tokens/s, steady (no compilation, no evaluation)": f"{steady:.0f}" if steady else "n/a",
        "MFU, steady": mfu(steady) if steady else "n/a",
        "val loss [nats/char]": f"{m['val_loss']:.4f}",
        # On a GPU the baby GPT overfits Tiny Shakespeare within minutes: the last figure is then
        # above the lowest (nanoGPT reports its lowest, keeping only the weights that improve it).
        "lowest val loss [nats/char]": lowest_evaluation(run.history),
        "val loss by step": ", ".join(
            f"{step}: {loss:.3f}"
            for step, loss in zip(
                run.history.eval_steps, run.history.eval_metrics["val_loss"], strict=True
            )
        ),
        "val loss [bits/char]": f"{m['val_loss'] / math.log(2):.4f}",
        "bigram baseline [bits/char]": f"{m['bigram_val_loss'] / math.log(2):.4f}",
        "training time [s]": f"{m['train_seconds']:.1f}",
        "wall time [s]": f"{time.perf_counter() - started:.1f}",
        "peak memory": memory,
    }
    _common.print_figures(figures)


if __name__ == "__main__":
    main()
