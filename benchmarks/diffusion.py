"""Benchmark the lesson-10 diffusion model: training speed, and each sampler's quality and speed.

    python benchmarks/diffusion.py [--profile smoke|cpu|gpu] [--steps N | --minutes M]
                                   [--train | --checkpoint PATH] [--samples N]
                                   [--sampling-steps 10 50 250 1000]

By default it measures the course's pretrained model (aigc_course/pretrained); --train trains one
under the profile first (printing training images/s and time), --checkpoint loads another. Then,
for each number of sampling steps: DDIM (deterministic) and the stochastic sampler (DDPM's
ancestral chain at all T steps, DDIM with eta = 1 below), each making --samples images from the
same seed: course FID against as many test images (the course's Fashion-MNIST classifier, not
Inception: not comparable with published FIDs), class-histogram entropy (log 10 = 2.303 nats when
all classes appear equally), and seconds per 1000 samples. Record the figures in
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import time

import _common  # benchmarks/_common.py: the script's own folder is on sys.path

from aigc_course import data, runtime
from aigc_course.lessons import lesson10
from aigc_course.trainers import classifier as classifier_trainer
from aigc_course.trainers import diffusion as trainer
from aigc_course.validators import count


def main() -> None:
    parser = _common.argument_parser(__doc__)
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--train", action="store_true", help="train a model under the profile first"
    )
    source.add_argument("--checkpoint", help="a checkpoint written by aigc-course train diffusion")
    parser.add_argument("--samples", type=count, default=1000, help="images per sampler setting")
    parser.add_argument("--sampling-steps", type=count, nargs="+", default=[10, 50, 250, 1000])
    args = parser.parse_args()

    started = time.perf_counter()
    profile = runtime.get_profile(args.profile)
    device = runtime.get_device()
    figures = dict(_common.environment(profile, device))
    if args.train:
        recipe = trainer.recipe_for(profile, steps=args.steps, minutes=args.minutes)
        run = trainer.train(recipe, device=device, progress=False, evaluate_fid=False)
        model, schedule = run.model, recipe.noise_schedule()
        figures |= {
            "model": trainer.describe(recipe),
            "steps": _common.length(run, "images"),
            "images/s (training)": f"{run.metrics['images_per_second']:.0f}",
            "training time [s]": f"{run.metrics['train_seconds']:.1f}",
        }
    else:
        loaded = trainer.load(args.checkpoint)
        model, schedule, checkpoint = loaded.model, loaded.schedule, loaded.checkpoint
        figures["model"] = (
            f"{args.checkpoint or 'the pretrained model'}: {checkpoint.extra['command']}"
        )
    model = model.to(device).eval()
    figures["parameters"] = f"{model.num_parameters():,}"
    classifier = classifier_trainer.load_pretrained(device)
    real = data.load_fashion_mnist("test").images[: args.samples]
    steps = tuple(s for s in args.sampling_steps if s <= schedule.steps)
    rows = lesson10.compare_samplers(model, schedule, classifier, real, steps)
    _common.print_figures(figures)
    print(f"\n{'sampler':16s} {'steps':>6s} {'FID':>8s} {'entropy':>8s} {'s / 1000 samples':>17s}")
    for row in rows:
        print(
            f"{row.name:16s} {row.steps:>6d} {row.fid:>8.2f} {row.class_entropy:>8.4f} "
            f"{row.seconds_per_1000:>17.1f}"
        )
    print(
        f"\n{args.samples} samples per setting; wall time [s]: {time.perf_counter() - started:.1f}"
    )


if __name__ == "__main__":
    main()
