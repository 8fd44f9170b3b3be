"""What tests/test_distributed.py runs in each process under torchrun (and in-process, as one).

    python -m torch.distributed.run --standalone --nproc_per_node=2 -m tests.ddp_worker MODE OUT [...]

MODE ``gpt``: a few steps of a small GPT through the shared loop (``training.train``) on synthetic
tokens, writing this rank's first batch, its weights and its step count to OUT; ``--accumulation N``
and ``--minutes M`` set the run, ``--slow-rank R`` makes rank R slower (for the clock's agreement).
MODE ``save``: the same run, then ``training.save_run`` on every rank (only rank 0 may write) and
rank 0's greedy continuation of a prompt into OUT/text.txt.
MODE ``gan``: a few steps of the DCGAN trainer, writing this rank's weights.
MODE ``vae``: the VAE's evaluations (test -ELBO, IWAE) of a fixed model over an odd number of images,
each rank scoring its share, and a short run of the VAE trainer; writes this rank's figures.
MODE ``crash`` / ``vanish`` / ``stuck``: rank 1 raises an error / exits silently / hangs at step 3.
MODE ``suite``: the runs that end well, one after another in one launch (each launch costs every
process its start-up): ``gpt`` with 1 and with 2 micro-batches, ``gpt`` by the clock with rank 1
slower, ``save``, ``gan`` and ``vae``, each into its own folder of OUT (:data:`SUITE`); then
``crash``, which ends the launch.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from aigc_course import distributed, training
from aigc_course.models.gpt import GPT, GPTConfig
from aigc_course.trainers import gpt as gpt_trainer

CONFIG = GPTConfig(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
GLOBAL_BATCH = 8
PROMPT = [1, 2, 3, 4]
#: What ``suite`` runs, in order: a folder of OUT for each, and the mode and options it runs there.
#: The last, a crash of rank 1, ends the launch: what a crashed rank does to a run is checked on
#: the launch that the other runs needed anyway.
SUITE: dict[str, tuple[str, dict]] = {
    "gpt-1": ("gpt", {"accumulation": 1}),
    "gpt-2": ("gpt", {"accumulation": 2}),
    "timed": ("gpt", {"minutes": 0.05, "slow_rank": 1}),
    "save": ("save", {}),
    "gan": ("gan", {}),
    "vae": ("vae", {}),
    "crash": ("crash", {}),
}
#: What rank 1 raises in the ``crash`` mode.
CRASH_MESSAGE = "rank 1 fails on purpose at step 3"
#: The VAE's evaluation: images (an odd number: the ranks' shares differ) and the seed of the draws.
VAE_IMAGES, VAE_SEED = 7, 5


def synthetic_ids() -> torch.Tensor:
    """Tokens with structure to learn (a noisy repeating pattern), the same in every process."""
    generator = torch.Generator().manual_seed(0)
    pattern = torch.arange(5_000) % 13
    noise = torch.randint(0, 65, (5_000,), generator=generator)
    keep = torch.rand(5_000, generator=generator) < 0.8
    return torch.where(keep, pattern, noise)


def train_small_gpt(
    steps: int = 5,
    accumulation: int = 1,
    minutes: float | None = None,
    slow_rank: int | None = None,
    fail: str | None = None,
) -> tuple[GPT, training.History, list[torch.Tensor]]:
    """Train the small GPT; returns it, its history and the batches this rank saw (its shards)."""
    torch.manual_seed(0)
    model = GPT(CONFIG)
    rank = distributed.world().rank
    seen: list[torch.Tensor] = []

    def loss_fn(m, batch):
        step = len(seen) // accumulation + 1
        if fail and rank == 1 and step == 3:
            if fail == "crash":
                raise RuntimeError(CRASH_MESSAGE)
            if fail == "stuck":
                time.sleep(600)  # hangs: rank 0 must give up after AIGC_DIST_TIMEOUT
            os._exit(0)  # vanish: stop without a word, as a killed process would
        if slow_rank == rank:
            time.sleep(0.05)
        seen.append(batch[0].clone())
        return m(*batch)[1], {}

    batches = gpt_trainer.random_blocks(
        synthetic_ids(), CONFIG.block_size, GLOBAL_BATCH, torch.Generator().manual_seed(1)
    )
    history = training.train(
        model,
        loss_fn,
        batches,
        training.TrainConfig(
            steps=steps,
            lr=3e-3,
            minutes=minutes,
            accumulation_steps=accumulation,
            eval_every=2,
            log_every=1,
        ),
        evaluate=lambda m: {
            "val_loss": gpt_trainer.estimate_loss(
                m, synthetic_ids(), 3, 4, world=distributed.world()
            )
        },
        device=torch.device("cpu"),
        compile_model=False,
        progress=False,
    )
    return model, history, seen


def gan_weights(steps: int = 3) -> dict[str, torch.Tensor]:
    """The smoke DCGAN after ``steps`` steps (0: as initialised): generator and discriminator."""
    from aigc_course.runtime import get_profile
    from aigc_course.trainers import gan

    recipe = gan.recipe_for(get_profile("smoke"), steps=max(steps, 1))
    if steps == 0:
        torch.manual_seed(recipe.train.seed)
        generator, discriminator = gan.Generator(recipe.model), gan.Discriminator(recipe.model)
    else:
        run = gan.train(recipe, torch.device("cpu"), progress=False, evaluate_fid=False)
        generator, discriminator = run.generator, run.discriminator
    state = {f"g.{k}": v for k, v in generator.state_dict().items()}
    return state | {f"d.{k}": v for k, v in discriminator.state_dict().items()}


def small_vae_and_images() -> tuple[torch.nn.Module, torch.Tensor]:
    """A fixed, untrained VAE (the smoke recipe's shape) and :data:`VAE_IMAGES` binary images."""
    from aigc_course.models.vae import VAE, VAEConfig

    torch.manual_seed(0)
    model = VAE(VAEConfig()).eval()
    images = torch.rand(VAE_IMAGES, 1, 28, 28, generator=torch.Generator().manual_seed(1)) < 0.3
    return model, images.float()


def vae_figures(
    images: torch.Tensor | None = None, world: distributed.World | None = None
) -> dict[str, float]:
    """The VAE's evaluations (test -ELBO and its terms, IWAE with k = 3) of
    :func:`small_vae_and_images`'s model on ``images`` (its images by default), over ``world``'s
    ranks (each its share) or in one process; every share's draws start from the same seed."""
    from aigc_course.trainers import vae

    model, all_images = small_vae_and_images()
    images = all_images if images is None else images
    torch.manual_seed(VAE_SEED)
    figures = vae.evaluate(model, images, world=world)
    torch.manual_seed(VAE_SEED)
    return figures | {"iwae": vae.iwae_nll(model, images, 3, world=world)}


def greedy_text(model: GPT) -> list[int]:
    out = model.generate(torch.tensor([PROMPT]), 20, temperature=0.0)
    return out[0].tolist()


def run(
    mode: str,
    out: Path,
    accumulation: int = 1,
    minutes: float | None = None,
    slow_rank: int | None = None,
) -> None:
    """One mode, into ``out``, on this rank."""
    out.mkdir(parents=True, exist_ok=True)
    world = distributed.world()
    if mode == "gan":
        torch.save(gan_weights(), out / f"weights_rank{world.rank}.pt")
        return
    if mode == "vae":
        from aigc_course.runtime import get_profile
        from aigc_course.trainers import vae

        recipe = vae.recipe_for(get_profile("smoke"), steps=3)
        trained = vae.train(recipe, torch.device("cpu"), progress=False)
        figures = {"evaluations": vae_figures(world=world), "run": trained.metrics}
        torch.save(figures, out / f"vae_rank{world.rank}.pt")
        return
    fail = mode if mode in ("crash", "vanish", "stuck") else None
    if fail == "crash" and world.is_main:  # when it began: the crash test times the end from it
        (out / "began").write_text(repr(time.time()))
    model, history, seen = train_small_gpt(
        accumulation=accumulation, minutes=minutes, slow_rank=slow_rank, fail=fail
    )
    if mode == "save":
        run_ = training.Run(model, SimpleNamespace(batch_size=GLOBAL_BATCH), history, {})
        training.save_run(run_, out / "model.safetensors", "tests.ddp_worker save")
        if world.is_main:
            (out / "text.txt").write_text(" ".join(map(str, greedy_text(model))))
        return
    torch.save(
        {
            "weights": model.state_dict(),
            "first_batch": seen[0],
            "steps": history.steps_done,
            "val_loss": history.eval_metrics["val_loss"],
        },
        out / f"rank{world.rank}.pt",
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "mode", choices=["gpt", "save", "gan", "vae", "crash", "vanish", "stuck", "suite"]
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("--accumulation", type=int, default=1)
    parser.add_argument("--minutes", type=float)
    parser.add_argument("--slow-rank", type=int)
    args = parser.parse_args()
    distributed.world(torch.device("cpu"))
    if args.mode == "suite":
        for folder, (mode, options) in SUITE.items():
            run(mode, args.out / folder, **options)
    else:
        run(args.mode, args.out, args.accumulation, args.minutes, args.slow_rank)
    distributed.close()


if __name__ == "__main__":
    main()
