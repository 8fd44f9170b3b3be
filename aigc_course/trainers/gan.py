"""Training the lesson-07 DCGAN on Fashion-MNIST, under a run profile.

A GAN needs two optimisers and two losses per step, so it has its own short loop around
:func:`aigc_course.gan_theory.gan_step` (the step lesson 03 teaches), with the runtime features
of the shared loop through the same helpers: the precision of :mod:`aigc_course.runtime` (bf16, or
fp16 with a gradient scaler per network), ``torch.compile`` where it works, optional gradient
clipping (``TrainConfig.grad_clip``; off by default, as in the DCGAN paper), the NaN check and the
history. Progress: a bar with both losses and D's output on fakes; fixed noise for sample grids
over training; FID (course classifier) against test images at every evaluation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from aigc_course import checkpoints, data, distributed, gan_theory, metrics, runtime, training
from aigc_course.errors import SettingError
from aigc_course.i18n import _
from aigc_course.models.classifier import FashionClassifier
from aigc_course.models.dcgan import (
    Discriminator,
    GANConfig,
    Generator,
    to_signed_range,
    to_unit_range,
)
from aigc_course.trainers import classifier as classifier_trainer
from aigc_course.training import History, Run, TrainConfig

PRETRAINED_NAME = "dcgan_fashion_mnist"
D_WINS_THRESHOLD = 0.01  # mean D(G(z)) below this ...
D_WINS_STEPS = 300  # ... for this many steps in a row: the discriminator has won outright


class DiscriminatorWatch:
    """Notices a discriminator that has won outright: mean D(G(z)) under ``D_WINS_THRESHOLD`` for
    ``D_WINS_STEPS`` steps in a row. The count stays on the device, so watching costs no sync per
    step (reading a GPU tensor waits for the GPU); :meth:`won_at` reads it, on logged steps, and
    :meth:`win_to_report` says it once."""

    def __init__(self, device: torch.device) -> None:
        self.rejected_in_a_row = torch.zeros((), dtype=torch.long, device=device)
        self.first_win = torch.zeros((), dtype=torch.long, device=device)  # 0: not yet
        self.reported = False

    def observe(self, d_fake: torch.Tensor, step: int) -> None:
        """``d_fake``: the step's mean D(G(z)), a 0-d tensor."""
        rejected = d_fake < D_WINS_THRESHOLD
        self.rejected_in_a_row = torch.where(rejected, self.rejected_in_a_row + 1, 0)
        won = (self.rejected_in_a_row == D_WINS_STEPS) & (self.first_win == 0)
        self.first_win = torch.where(won, step, self.first_win)

    def won_at(self) -> int | None:
        """The step at which D had rejected every fake for ``D_WINS_STEPS`` steps, or None."""
        return int(self.first_win) or None

    def win_to_report(self) -> int | None:
        """:meth:`won_at` the first time it has a step, None every other time: one warning a run."""
        step = None if self.reported else self.won_at()
        self.reported = self.reported or step is not None
        return step


def watched_loss(loss_d: torch.Tensor, loss_g: torch.Tensor) -> torch.Tensor:
    """The loss the training loop logs and watches for NaN: D's, or G's where G's is not finite
    (so a failure in either network stops the run, without reading either loss every step)."""
    return torch.where(torch.isfinite(loss_g), loss_d, loss_g).detach()


@dataclass(frozen=True)
class GANRecipe:
    model: GANConfig
    train: TrainConfig
    batch_size: int
    betas: tuple[float, float] = (0.5, 0.999)
    fid_images: int = 2000


def _train_config(steps: int, eval_every: int, lr: float = 2e-4) -> TrainConfig:
    return TrainConfig(steps=steps, lr=lr, grad_clip=None, eval_every=eval_every, log_every=10)


def recipe_for(
    profile: runtime.Profile | None = None, conditional: bool = False, **overrides
) -> GANRecipe:
    """The DCGAN recipe of a profile (``conditional``: a class-conditional GAN); any field may be
    overridden (see :func:`training.override`).

    The cpu profile's unconditional DCGAN is the one a sweep on a 2-core CPU chose
    (benchmarks/RESULTS.md, "DCGAN recipes per CPU-minute"): 32 channels (a step costs 1/2.4 of the
    paper's 64) at Adam's learning rate 1e-3 (the paper's: 2e-4), 4000 steps. It beats the paper's
    recipe by the clock and by steps; by the clock (``minutes=M``) it trains the same network. The
    class-conditional GAN, not swept, keeps the paper's width and rate."""
    profile = profile or runtime.get_profile()
    model = GANConfig(n_classes=10 if conditional else 0)
    cpu = (
        GANRecipe(model, _train_config(steps=3000, eval_every=500), batch_size=64)
        if conditional
        else GANRecipe(
            dataclasses.replace(model, channels=32),
            _train_config(steps=4000, eval_every=500, lr=1e-3),
            batch_size=64,
        )
    )
    base = profile.select(
        smoke=GANRecipe(
            dataclasses.replace(model, channels=16),
            _train_config(steps=20, eval_every=10),
            batch_size=32,
            fid_images=200,
        ),
        cpu=cpu,
        gpu=GANRecipe(
            dataclasses.replace(model, channels=128),
            _train_config(steps=20_000, eval_every=2000),
            batch_size=128,
            fid_images=10_000,
        ),
    )
    return training.override(base, **overrides)


def describe(recipe: GANRecipe) -> str:
    if recipe.model.n_classes:
        text = _(
            "class-conditional, {channels} channels, latent {latent_dim}, {length} of "
            "{batch_size} images"
        )
    else:
        text = _("{channels} channels, latent {latent_dim}, {length} of {batch_size} images")
    return text.format(
        channels=recipe.model.channels,
        latent_dim=recipe.model.latent_dim,
        length=training.describe_length(recipe.train),
        batch_size=recipe.batch_size,
    )


def pretrained_name(conditional: bool) -> str:
    """The shipped checkpoint's name: the DCGAN's, or with ``conditional`` the cGAN's."""
    return PRETRAINED_NAME + ("_conditional" if conditional else "")


def variant(recipe: GANRecipe) -> str | None:
    """The file-name variant of a run's checkpoint: ``conditional`` for the class-conditional GAN."""
    return "conditional" if recipe.model.n_classes else None


def checkpoint_name(recipe: GANRecipe) -> str:
    return pretrained_name(bool(recipe.model.n_classes))


@dataclass
class GANRun(Run):
    """A GAN run: ``model`` is the generator (what a checkpoint saves); also the discriminator,
    sample grids of fixed noise over training, and any warning about the run."""

    discriminator: Discriminator | None = None
    snapshots: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def generator(self) -> Generator:
        return self.model


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


def evaluate(
    generator: Generator,
    classifier: FashionClassifier,
    real: torch.Tensor,
    real_statistics: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, float]:
    """FID against ``real`` and the class-histogram entropy of as many generated images
    (``real_statistics``: ``real``'s :func:`metrics.image_statistics`, if already computed)."""
    fake = generate(generator, len(real), seed=1)
    return metrics.sample_scores(
        classifier, fake, real if real_statistics is None else real_statistics
    )


def train(
    recipe: GANRecipe,
    device: torch.device | None = None,
    progress: bool = True,
    *,
    evaluate_fid: bool = True,
    on_trained: training.OnTrained | None = None,
) -> GANRun:
    """Train a DCGAN with ``recipe`` on Fashion-MNIST's training images.

    Under torchrun each rank trains on its slice of every global batch (images and noise, drawn
    the same on every rank from the run's seed), DDP averages both networks' gradients, rank 0
    computes the FID and tells the others: the same run as on one process."""
    config = recipe.train
    if config.accumulation_steps != 1:
        raise SettingError(
            _(
                "the GAN's loop has no gradient accumulation (accumulation_steps must be 1): its D "
                "and G updates alternate on whole batches; use a smaller --batch-size instead"
            )
        )
    runtime.seed_everything(config.seed)
    device = device or runtime.get_device()
    world = distributed.world(device)
    precision = runtime.choose_precision(device)
    train_set = data.load_fashion_mnist("train", val_size=0)
    training.check_batch_fits(recipe.batch_size, len(train_set))
    real_test = data.load_fashion_mnist("test").images[: recipe.fid_images]
    classifier = classifier_trainer.load_pretrained(device) if evaluate_fid else None
    real_statistics = (  # the test images' side of every FID of the run, computed once
        metrics.image_statistics(classifier, real_test) if evaluate_fid and world.is_main else None
    )
    generator, discriminator = (
        Generator(recipe.model).to(device),
        Discriminator(recipe.model).to(device),
    )
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=recipe.betas)
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=recipe.betas)
    scalers = (precision.grad_scaler(), precision.grad_scaler())
    # Each rank keeps its own BatchNorm running statistics (rank 0's are saved): copying them
    # before every forward would also break D's two forwards before one backward on older PyTorch.
    forward_g, forward_d = (
        runtime.maybe_compile(distributed.wrap(net, device, world, broadcast_buffers=False), device)
        for net in (generator, discriminator)
    )
    conditional = recipe.model.n_classes > 0
    data_generator = torch.Generator().manual_seed(config.seed)
    fixed_noise = torch.randn(
        40, recipe.model.latent_dim, generator=torch.Generator().manual_seed(123)
    ).to(device)
    fixed_labels = (torch.arange(40) % 10).to(device) if conditional else None
    run = GANRun(
        generator, recipe, History(budget_minutes=config.minutes), {}, discriminator=discriminator
    )
    current = {"step": 0}  # the step being taken
    discriminator_watch = DiscriminatorWatch(device)

    def batches():
        """The global batch of every step, the same on every rank: image indices, and z from the
        global generator (every rank seeds it alike and draws from it alike; rank 0's
        evaluations draw from generators of their own)."""
        while True:
            index = torch.randint(0, len(train_set), (recipe.batch_size,), generator=data_generator)
            yield index, torch.randn(recipe.batch_size, recipe.model.latent_dim, device=device)

    def update(step: int, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One step of D and one of G on this rank's slice of the batch (gan_theory.gan_step)."""
        index, z = batch
        current["step"] = step
        real = to_signed_range(train_set.images[index]).to(device)
        labels = train_set.labels[index].to(device) if conditional else None
        result = gan_theory.gan_step(
            forward_g, forward_d, optimizer_g, optimizer_d, real, z, labels,
            precision=precision, scalers=scalers, grad_clip=config.grad_clip,
        )  # fmt: skip
        # Nothing here reads a number back from the device (the loop reads these on logged steps).
        d_fake = torch.sigmoid(result.fake_logits.detach().float()).mean()
        discriminator_watch.observe(d_fake, step)
        if step % config.log_every == 0:
            warn_if_the_discriminator_won()
        return watched_loss(result.loss_d, result.loss_g), {
            "loss_d": result.loss_d.detach(),
            "loss_g": result.loss_g.detach(),
            "d_real": torch.sigmoid(result.real_logits.detach().float()).mean(),
            "d_fake": d_fake,
        }

    def warn_if_the_discriminator_won() -> None:
        step = discriminator_watch.win_to_report()
        if step is None:
            return
        message = _(
            "step {step}: the discriminator has rejected every fake (mean D(G(z)) < "
            "{threshold}) for {steps} steps: training has likely failed. Try a lower "
            "discriminator learning rate, fewer D steps, or restart with another seed."
        ).format(step=step, threshold=D_WINS_THRESHOLD, steps=D_WINS_STEPS)
        run.warnings.append(message)
        if world.is_main:
            tqdm.write(_("warning: {message}").format(message=message))

    def snapshot(step: int) -> None:
        was_training = generator.training
        generator.eval()  # BatchNorm with its running statistics, which it leaves as they are
        with torch.no_grad():
            run.snapshots.append((step, to_unit_range(generator(fixed_noise, fixed_labels)).cpu()))
        generator.train(was_training)

    def shared_evaluation() -> dict[str, float]:
        # FID needs every image's features in one place: rank 0 computes it, the others wait.
        result = (
            evaluate(generator, classifier, real_test, real_statistics) if world.is_main else {}
        )
        if not world.distributed:
            return result
        names = ["fid", "class_entropy"]
        values = [result.get(name, 0.0) for name in names]
        return dict(zip(names, distributed.broadcast_floats(values, device, world), strict=True))

    def evaluation(_generator) -> dict[str, float]:
        """A sample grid of the fixed noise, and (with a classifier) the FID of new samples."""
        snapshot(current["step"])
        return shared_evaluation() if classifier is not None else {}

    def trained(history: History) -> None:
        run.history = history
        run.metrics = training.training_figures(history)
        if on_trained is not None:
            on_trained(run)

    if config.minutes is None:
        snapshot(0)  # a timed run evaluates at step 0 (to measure the cost of the last one)
    run.history = training.train(
        generator,
        None,
        batches(),
        config,
        evaluate=evaluation,
        device=device,
        progress=progress,
        description="GAN",
        on_trained=trained,
        update=update,
    )
    warn_if_the_discriminator_won()  # after the last step, which may not have been a logged one
    generator.eval()
    run.metrics = training.training_figures(run.history)
    if classifier is not None:
        run.metrics.update({f"test_{k}": v[-1] for k, v in run.history.eval_metrics.items()})
        if conditional:
            labels = torch.arange(recipe.fid_images) % 10
            images = generate(generator, recipe.fid_images, seed=2, labels=labels)
            run.metrics["conditional_accuracy"] = metrics.accuracy(classifier, images, labels)
    return run


def summary(run: GANRun) -> dict[str, object]:
    m = run.metrics
    rows = training.training_rows(run)
    if "test_fid" in m:
        rows[_("FID vs {images} test images").format(images=run.recipe.fid_images)] = m["test_fid"]
        rows[_("class-histogram entropy [nats]")] = m["test_class_entropy"]
    if "conditional_accuracy" in m:
        rows[_("classifier accuracy on labelled samples")] = m["conditional_accuracy"]
    return rows


def save_run(run: GANRun, path: str | Path, command: str) -> str:
    """Save the generator (the part a lesson samples from) with its config, metrics and curves."""
    return training.save_run(run, path, command)


def load(
    path: str | Path | None = None,
    expected_sha256: str | None = None,
    conditional: bool = False,
) -> training.Loaded:
    """A generator from a checkpoint file, or the course's pretrained one (verified) by default:
    the class-conditional one with ``conditional``."""
    return training.Loaded(
        *checkpoints.load_model(
            lambda config: Generator(GANConfig(**config)),
            pretrained_name(conditional),
            path,
            expected_sha256,
            kind=Generator.__name__,
        )
    )
