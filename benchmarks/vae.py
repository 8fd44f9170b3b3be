"""Benchmark the lesson-06 VAE: train under a profile and print one figure a line.

    python benchmarks/vae.py [--profile smoke|cpu|gpu] [--steps N | --minutes M] [--model conv|mlp]
                             [--channels C1 C2] [--lr LR] [--lr-decay constant|cosine]

``--model mlp`` trains the fully connected network instead of lesson 06's conv VAE: Kingma &
Welling's 784-400-20 MLP VAE (:class:`aigc_course.models.vae.MLPVAE`) with the profile's batch size
(128 on the cpu profile), so that ``--minutes`` compares the two at equal wall-clock time
(``--model`` is the recipe's ``network``: the default here is conv, whereas ``aigc-course train vae
--minutes M`` on the cpu profile trains the MLP up to 10 minutes, at lr 5e-3 with a cosine decay;
add ``--lr 1e-3 --lr-decay constant`` to compare the networks at one rate).
``--channels`` changes the conv VAE's two channel counts (32 and 64 in the
course's model), the cheapest way to a faster conv step. ``--lr-decay`` sets the learning rate's
course over the run (the recipe's ``lr_decay``; a cpu run of up to 10 minutes by the clock decays it
by default): the baseline of pytorch/examples' ``vae/main.py``, Adam at a constant 1e-3, is
``--model mlp --lr 1e-3 --lr-decay constant``.

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
    parser.add_argument(
        "--model", choices=("conv", "mlp"), default="conv", help="the VAE to train (default: conv)"
    )
    parser.add_argument("--channels", type=int, nargs=2, help="the conv VAE's channel counts")
    parser.add_argument(
        "--lr-decay",
        choices=trainer.LR_DECAYS,
        help="the learning rate's course (default: the recipe's)",
    )
    _common.add_recipe_options(parser)
    args = parser.parse_args()
    if args.channels and args.model != "conv":
        parser.error("--channels is a setting of the conv VAE (--model conv)")

    started = time.perf_counter()
    profile = runtime.get_profile(args.profile)
    device = runtime.get_device()
    channels = tuple(args.channels) if args.channels else None
    recipe = trainer.recipe_for(
        profile, steps=args.steps, minutes=args.minutes, channels=channels, lr=args.lr,
        batch_size=args.batch_size, network=args.model, lr_decay=args.lr_decay,
    )  # fmt: skip
    run = trainer.train(recipe, device=device, progress=False)
    m = run.metrics
    figures = {
        **_common.environment(profile, device),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "model": f"{args.model} ({sum(p.numel() for p in run.model.parameters()):,} parameters)",
        "steps": _common.length(run, "images"),
        "batch size": recipe.batch_size,
        "learning rate": f"{recipe.train.lr:g} ({recipe.lr_decay})",
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
