"""Profile and time one training step of each course model on this machine, with and without the
speed-ups a CPU might take: fused AdamW, channels-last memory for the conv models, torch.compile.

    python benchmarks/step_speed.py [--models gpt vae gan] [--steps 30] [--ops]

Each model is the cpu profile's (batch and sizes of its recipe), on random data of the right shape,
so the figures are the step alone (forward, backward, gradient clipping, optimiser). Prints
milliseconds per step (median of ``--steps`` timed steps after warm-up) and examples per second for
each variant; ``--ops`` adds the ten most expensive operators of the baseline step
(``torch.profiler``). Record the figures in benchmarks/RESULTS.md with the machine's matmul speed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import _common  # benchmarks/_common.py: the script's own folder is on sys.path
import torch
from torch.profiler import ProfilerActivity, profile

from aigc_course import gan_theory, runtime
from aigc_course.models.dcgan import Discriminator, Generator
from aigc_course.models.gpt import GPT
from aigc_course.models.vae import VAE
from aigc_course.trainers import gan as gan_trainer
from aigc_course.trainers import gpt as gpt_trainer
from aigc_course.trainers import vae as vae_trainer

CPU = runtime.get_profile("cpu")
VARIANTS = ("baseline", "fused AdamW", "channels-last", "torch.compile")


def gpt_step(variant: str) -> tuple[Callable[[], None], int, str]:
    """One GPT step of the cpu recipe: (step function, examples per step, unit)."""
    recipe = gpt_trainer.recipe_for(CPU)
    model = GPT(recipe.model)
    optimizer = model.configure_optimizer(
        recipe.train.lr, recipe.train.weight_decay, fused=variant == "fused AdamW"
    )
    forward = torch.compile(model) if variant == "torch.compile" else model
    b, t = recipe.batch_size, recipe.model.block_size
    x = torch.randint(0, recipe.model.vocab_size, (b, t))
    y = torch.randint(0, recipe.model.vocab_size, (b, t))

    def step() -> None:
        runtime.optimizer_step(forward(x, y)[1], optimizer, grad_clip=recipe.train.grad_clip)

    return step, b * t, "tokens"


def vae_step(variant: str) -> tuple[Callable[[], None], int, str]:
    """One VAE step of the cpu recipe."""
    recipe = vae_trainer.recipe_for(CPU)
    model = VAE(recipe.model)
    x = torch.bernoulli(torch.rand(recipe.batch_size, 1, 28, 28))
    if variant == "channels-last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=recipe.train.lr, fused=variant == "fused AdamW"
    )
    forward = torch.compile(model) if variant == "torch.compile" else model

    def step() -> None:
        runtime.optimizer_step(forward(x)[0], optimizer, grad_clip=recipe.train.grad_clip)

    return step, recipe.batch_size, "images"


def gan_step(variant: str) -> tuple[Callable[[], None], int, str]:
    """One DCGAN step of the cpu recipe (a discriminator step and a generator step)."""
    recipe = gan_trainer.recipe_for(CPU)
    generator, discriminator = Generator(recipe.model), Discriminator(recipe.model)
    real = torch.rand(recipe.batch_size, 1, 28, 28) * 2 - 1
    if variant == "channels-last":
        generator = generator.to(memory_format=torch.channels_last)
        discriminator = discriminator.to(memory_format=torch.channels_last)
        real = real.contiguous(memory_format=torch.channels_last)
    fused = variant == "fused AdamW"
    optimizers = [
        torch.optim.Adam(m.parameters(), lr=recipe.train.lr, betas=recipe.betas, fused=fused)
        for m in (generator, discriminator)
    ]
    if variant == "torch.compile":
        generator, discriminator = torch.compile(generator), torch.compile(discriminator)
    precision = runtime.choose_precision(torch.device("cpu"))
    scalers = (precision.grad_scaler(), precision.grad_scaler())

    def step() -> None:
        z = torch.randn(recipe.batch_size, recipe.model.latent_dim)
        gan_theory.gan_step(
            generator, discriminator, *optimizers, real, z, None,
            precision=precision, scalers=scalers, grad_clip=recipe.train.grad_clip,
        )  # fmt: skip

    return step, recipe.batch_size, "images"


MODELS = {"gpt": gpt_step, "vae": vae_step, "gan": gan_step}


def time_steps(step: Callable[[], None], steps: int, warmup: int = 5) -> float:
    """Median seconds per step over ``steps`` steps, after ``warmup`` (compilation included there)."""
    for _ in range(warmup):
        step()
    durations = []
    for _ in range(steps):
        started = time.perf_counter()
        step()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    parser.add_argument("--ops", action="store_true", help="profile the baseline step's operators")
    args = parser.parse_args()
    _common.print_figures(_common.environment(CPU, torch.device("cpu")))
    for name in args.models:
        baseline = None
        for variant in args.variants:
            if variant == "channels-last" and name == "gpt":
                continue  # no convolutions
            torch.manual_seed(0)
            step, examples, unit = MODELS[name](variant)
            seconds = time_steps(step, args.steps)
            baseline = baseline or seconds
            print(
                f"{name} {variant}: {seconds * 1e3:.1f} ms/step, {examples / seconds:,.0f} {unit}/s "
                f"(x{baseline / seconds:.2f} the baseline)",
                flush=True,
            )
        if args.ops:
            step, _, _ = MODELS[name]("baseline")
            time_steps(step, 3)
            with profile(activities=[ProfilerActivity.CPU]) as profiler:
                for _ in range(5):
                    step()
            print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


if __name__ == "__main__":
    main()
