"""What the benchmark scripts share: their options, the environment lines, and the printing."""

from __future__ import annotations

import argparse
import time

import torch

from aigc_course import runtime


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """``--profile`` and ``--steps`` or ``--minutes``, described by the first line of the script's
    docstring."""
    from aigc_course.validators import count, positive_float

    parser = argparse.ArgumentParser(description=doc.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--profile", choices=runtime.PROFILE_NAMES)
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=count, help="train this many steps")
    length.add_argument("--minutes", type=positive_float, help="train for this much time instead")
    return parser


def add_recipe_options(parser: argparse.ArgumentParser) -> None:
    """``--batch-size`` and ``--lr``: the two settings a throughput study changes together (a larger
    batch per step, with the learning rate scaled for it)."""
    from aigc_course.validators import count, positive_float

    parser.add_argument(
        "--batch-size", type=count, help="examples per step (default: the recipe's)"
    )
    parser.add_argument(
        "--lr", type=positive_float, help="peak learning rate (default: the recipe's)"
    )


def matmul_gflops(size: int = 512, repeats: int = 20) -> float:
    """This machine's float32 matrix-product speed, GFLOP/s of a ``size`` x ``size`` product on the
    CPU with torch's threads: the yardstick beside every CPU figure (machines differ by 2x and more)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def length(run, unit: str) -> str:
    """Steps done times the batch of ``unit``s, and the time budget if the run had one."""
    budget = run.history.budget_minutes
    done = f"{run.history.steps_done} x {run.recipe.batch_size} {unit}"
    return done if budget is None else f"{done} (a budget of {budget:g} min)"


def environment(profile: runtime.Profile, device: torch.device) -> dict[str, str]:
    """The first figures of every report: device, torch, profile, precision."""
    return {
        "device": runtime.describe_device(device),
        "CPU matmul [GFLOP/s, fp32 512x512]": f"{matmul_gflops():.0f} ({torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "profile": profile.name,
        "precision": runtime.choose_precision(device).name,
    }


def print_figures(figures: dict[str, object]) -> None:
    """One ``name: value`` line per figure."""
    for name, value in figures.items():
        print(f"{name}: {value}")
