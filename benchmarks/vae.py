"""Benchmark the lesson-06 VAE: train under a profile and print one figure a line.

    python benchmarks/vae.py [--profile smoke|cpu|gpu] [--steps N | --minutes M]

Prints: device, torch version, profile, steps, batch size, images/s (training), final test negative
ELBO (nats per image), IWAE NLL (nats and bits/dim, with K and the number of test images), and
wall time. Record the figures in benchmarks/RESULTS.md with the command and the machine.
"""

from __future__ import annotations

import platform
import time

import _common  # benchmarks/_common.py: the script's own folder is on sys.path
import torch

from aigc_course import runtime
from aigc_course.trainers import vae as trainer


def main() -> None:
    parser = _common.argument_parser(__doc__)
    args = parser.parse_args()

    started = time.perf_counter()
    profile = runtime.get_profile(args.profile)
    device = runtime.get_device()
    recipe = trainer.recipe(profile, steps=args.steps, minutes=args.minutes)
    run = trainer.train(recipe, device=device, progress=False)
    m = run.metrics
    figures = {
        **_common.environment(profile, device),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "steps": f"{_common.length(run)} images",
        "batch size": recipe.batch_size,
        "images/s (training)": f"{m['images_per_second']:.0f}",
        "test negative ELBO [nats]": f"{m['test_neg_elbo']:.2f} ({recipe.eval_images} images)",
        f"test IWAE NLL, K={m['iwae_k']} [nats]": f"{m['test_iwae_nll']:.2f} ({m['iwae_images']} images)",
        "test IWAE NLL [bits/dim]": f"{m['test_iwae_bits_per_dim']:.4f}",
        "training time [s]": f"{m['train_seconds']:.1f}",
        "wall time [s]": f"{time.perf_counter() - started:.1f}",
    }
    _common.print_figures(figures)


if __name__ == "__main__":
    main()
