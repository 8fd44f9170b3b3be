"""Benchmark the lesson-07 DCGAN: train under a profile and print one figure a line.

    python benchmarks/gan.py [--profile smoke|cpu|gpu] [--steps N | --minutes M] [--conditional]

Prints: device, torch version, profile, steps, images/s, FID against test images (with the course's
Fashion-MNIST classifier, not Inception: not comparable with published FIDs), the entropy of the
predicted-class histogram of generated images (log 10 = 2.303 nats when all classes appear equally),
and wall time. Record the figures in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import time

import _common  # benchmarks/_common.py: the script's own folder is on sys.path

from aigc_course import runtime
from aigc_course.trainers import gan as trainer


def main() -> None:
    parser = _common.argument_parser(__doc__)
    parser.add_argument("--conditional", action="store_true")
    args = parser.parse_args()

    started = time.perf_counter()
    profile = runtime.get_profile(args.profile)
    device = runtime.get_device()
    recipe = trainer.recipe_for(
        profile, conditional=args.conditional, steps=args.steps, minutes=args.minutes
    )
    run = trainer.train(recipe, device=device, progress=False)
    m = run.metrics
    figures = {
        **_common.environment(profile, device),
        "model": f"DCGAN, {recipe.model.channels} channels, latent {recipe.model.latent_dim}"
        + (", class-conditional" if args.conditional else ""),
        "steps": _common.length(run, "images"),
        "images/s (training)": f"{m['images_per_second']:.0f}",
        f"FID vs {recipe.fid_images} test images (course classifier)": f"{m['test_fid']:.2f}",
        "class-histogram entropy [nats]": f"{m['test_class_entropy']:.4f} (max 2.3026)",
        "training time [s]": f"{m['train_seconds']:.1f}",
        "wall time [s]": f"{time.perf_counter() - started:.1f}",
    }
    if "conditional_accuracy" in m:
        figures["classifier accuracy on labelled samples"] = f"{m['conditional_accuracy']:.4f}"
    _common.print_figures(figures)


if __name__ == "__main__":
    main()
