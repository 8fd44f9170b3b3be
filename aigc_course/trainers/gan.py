"""Training the lesson-07 DCGAN (and the course's classifier) on Fashion-MNIST, under a profile.

The GAN needs two optimisers and two losses per step, so it has its own short loop; it reuses the
shared pieces of :mod:`aigc_course.training` (the NaN check, the history) and the runtime's
precision choice. Progress: a bar with both losses and D's outputs; fixed noise for sample grids
over training; FID against test images at every evaluation.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from aigc_course import checkpoints, data, gan_theory, metrics, runtime
from aigc_course.models.dcgan import (
    Discriminator,
    GANConfig,
    Generator,
    to_signed_range,
    to_unit_range,
)
from aigc_course.training import History, check_finite

PRETRAINED_NAME = "dcgan_fashion_mnist"
D_WINS_THRESHOLD = 0.01  # mean D(G(z)) below this ...
D_WINS_STEPS = 300  # ... for this many steps in a row: the discriminator has won outright


@dataclass(frozen=True)
class GANRecipe:
    model: GANConfig
    steps: int
    batch_size: int
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    eval_every: int = 500
    fid_images: int = 2000
    seed: int = 0


def recipe(
    profile: runtime.Profile | None = None, conditional: bool = False, **overrides
) -> GANRecipe:
    profile = profile or runtime.get_profile()
    model = GANConfig(n_classes=10 if conditional else 0)
    base = profile.select(
        smoke=GANRecipe(
            dataclasses.replace(model, channels=16),
            steps=20,
            batch_size=32,
            eval_every=10,
            fid_images=200,
        ),
        cpu=GANRecipe(model, steps=3000, batch_size=64, eval_every=500),
        gpu=GANRecipe(
            dataclasses.replace(model, channels=128),
            steps=20_000,
            batch_size=128,
            eval_every=2000,
            fid_images=10_000,
        ),
    )
    return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class GANRun:
    generator: Generator
    discriminator: Discriminator
    recipe: GANRecipe
    history: History
    metrics: dict[str, float]
    snapshots: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@torch.no_grad()
def generate(
    generator: Generator, n: int, seed: int = 0, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """``n`` images in [0, 1] from a trained generator (balanced classes if conditional)."""
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    z = torch.randn(
        n, generator.config.latent_dim, generator=torch.Generator().manual_seed(seed)
    ).to(device)
    if generator.config.n_classes and labels is None:
        labels = torch.arange(n) % generator.config.n_classes
    images = to_unit_range(generator(z, None if labels is None else labels.to(device))).cpu()
    generator.train(was_training)
    return images


def gan_step(generator, discriminator, optimizers, scalers, real, z, labels, precision):
    """One DCGAN step: a discriminator update, then a generator update.

    D ascends V on real images (label 1) and *detached* fakes (label 0), so its loss cannot reach
    G's parameters. G then descends the non-saturating loss through D; only G's optimiser steps,
    so D's parameters do not change in that half. Returns both losses and D's logits.
    """
    optimizer_g, optimizer_d = optimizers
    scaler_g, scaler_d = scalers
    with precision.autocast():
        fake = generator(z, labels)
        real_logits, fake_logits = discriminator(real, labels), discriminator(fake.detach(), labels)
        loss_d = gan_theory.discriminator_loss(real_logits, fake_logits)
    optimizer_d.zero_grad(set_to_none=True)
    scaler_d.scale(loss_d).backward()
    scaler_d.step(optimizer_d)
    scaler_d.update()
    with precision.autocast():
        loss_g = gan_theory.generator_loss_non_saturating(discriminator(fake, labels))
    optimizer_g.zero_grad(set_to_none=True)
    scaler_g.scale(loss_g).backward()
    scaler_g.step(optimizer_g)
    scaler_g.update()
    return loss_d, loss_g, real_logits, fake_logits


def evaluate(
    generator: Generator, classifier: metrics.FashionClassifier, real: torch.Tensor
) -> dict[str, float]:
    fake = generate(generator, len(real), seed=1)
    histogram = metrics.class_histogram(classifier, fake)
    return {"fid": metrics.fid(classifier, fake, real), "class_entropy": histogram.entropy}


def train_gan(
    recipe_: GANRecipe,
    device: torch.device | None = None,
    progress: bool = True,
    evaluate_fid: bool = True,
) -> GANRun:
    runtime.seed_everything(recipe_.seed)
    device = device or runtime.get_device()
    precision = runtime.choose_precision(device)
    train_set = data.load_fashion_mnist("train", val_size=0)
    real_test = data.load_fashion_mnist("test").images[: recipe_.fid_images]
    classifier = metrics.load_classifier().to(device) if evaluate_fid else None
    generator, discriminator = (
        Generator(recipe_.model).to(device),
        Discriminator(recipe_.model).to(device),
    )
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=recipe_.lr, betas=recipe_.betas)
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=recipe_.lr, betas=recipe_.betas)
    scaler_g, scaler_d = precision.grad_scaler(), precision.grad_scaler()
    conditional = recipe_.model.n_classes > 0
    data_generator = torch.Generator().manual_seed(recipe_.seed)
    fixed_noise = torch.randn(
        40, recipe_.model.latent_dim, generator=torch.Generator().manual_seed(123)
    ).to(device)
    fixed_labels = (torch.arange(40) % 10).to(device) if conditional else None
    run = GANRun(generator, discriminator, recipe_, History(), {})
    d_wins, started = 0, time.perf_counter()

    def snapshot(step: int) -> None:
        generator.eval()
        with torch.no_grad():
            run.snapshots.append((step, to_unit_range(generator(fixed_noise, fixed_labels)).cpu()))
        generator.train()

    snapshot(0)
    bar = tqdm(range(1, recipe_.steps + 1), desc="GAN", disable=not progress)
    for step in bar:
        index = torch.randint(0, len(train_set), (recipe_.batch_size,), generator=data_generator)
        real = to_signed_range(train_set.images[index]).to(device)
        labels = train_set.labels[index].to(device) if conditional else None
        z = torch.randn(recipe_.batch_size, recipe_.model.latent_dim, device=device)
        loss_d, loss_g, real_logits, fake_logits = gan_step(
            generator,
            discriminator,
            (optimizer_g, optimizer_d),
            (scaler_g, scaler_d),
            real,
            z,
            labels,
            precision,
        )
        check_finite(loss_d, step, recipe_.lr)
        check_finite(loss_g, step, recipe_.lr)
        d_fake = torch.sigmoid(fake_logits.float()).mean().item()
        d_wins = d_wins + 1 if d_fake < D_WINS_THRESHOLD else 0
        if d_wins == D_WINS_STEPS:
            message = (
                f"step {step}: the discriminator has rejected every fake (mean D(G(z)) < {D_WINS_THRESHOLD}) "
                f"for {D_WINS_STEPS} steps: training has likely failed. Try a lower discriminator learning "
                "rate, fewer D steps, or restart with another seed."
            )
            run.warnings.append(message)
            tqdm.write(f"warning: {message}")
        run.history.examples += recipe_.batch_size
        if step % 10 == 0 or step == 1:
            values = {
                "loss_d": loss_d.item(),
                "loss_g": loss_g.item(),
                "d_real": torch.sigmoid(real_logits.float()).mean().item(),
                "d_fake": d_fake,
            }
            run.history.log(step, values)
            bar.set_postfix(
                loss_d=f"{values['loss_d']:.3f}",
                loss_g=f"{values['loss_g']:.3f}",
                d_fake=f"{d_fake:.2f}",
            )
        if step % recipe_.eval_every == 0 or step == recipe_.steps:
            snapshot(step)
            if classifier is not None:
                run.history.log_eval(step, evaluate(generator, classifier, real_test))
    run.history.seconds = time.perf_counter() - started
    generator.eval()
    run.metrics = {
        "images_per_second": run.history.examples_per_second,
        "train_seconds": run.history.seconds,
    }
    if classifier is not None:
        run.metrics.update({f"test_{k}": v[-1] for k, v in run.history.eval_metrics.items()})
        if conditional:
            labels = torch.arange(recipe_.fid_images) % 10
            images = generate(generator, recipe_.fid_images, seed=2, labels=labels)
            run.metrics["conditional_accuracy"] = metrics.accuracy(classifier, images, labels)
    return run


def save_run(run: GANRun, path: Path, command: str) -> str:
    """Save the generator (the part a lesson samples from) with its config, metrics and curves."""
    return checkpoints.save(
        path,
        run.generator,
        config=run.recipe.model.to_dict(),
        metrics=run.metrics,
        extra={
            "command": command,
            "steps": run.recipe.steps,
            "history": run.history.to_dict(),
        },
    )


def load_generator(
    path: Path | None = None, expected_sha256: str | None = None
) -> tuple[Generator, checkpoints.Checkpoint]:
    checkpoint = (
        checkpoints.load_pretrained(PRETRAINED_NAME)
        if path is None
        else checkpoints.load(path, expected_sha256)
    )
    generator = Generator(GANConfig(**checkpoint.config))
    generator.load_state_dict(checkpoint.state_dict)
    return generator.eval(), checkpoint


def save_classifier(model: metrics.FashionClassifier, test_accuracy: float, command: str) -> str:
    path = checkpoints.PRETRAINED_DIR / f"{metrics.PRETRAINED_NAME}.safetensors"
    digest = checkpoints.save(
        path, model, config={}, metrics={"test_accuracy": test_accuracy}, extra={"command": command}
    )
    checkpoints.register_pretrained(
        metrics.PRETRAINED_NAME, path.name, command, {"test_accuracy": test_accuracy}
    )
    return digest
