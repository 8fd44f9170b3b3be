"""Training the lesson-10 diffusion model (a U-Net predicting noise) on Fashion-MNIST, under a run profile.

Used by ``aigc-course train diffusion``, by ``benchmarks/diffusion.py`` and by the lesson, so the
three train the same way: the simple noise-prediction loss at a uniformly random step, AdamW with a
warm-up and cosine decay, gradient clipping, and on a GPU mixed precision and ``torch.compile``
(the shared loop). The course FID of DDIM samples (against test images, with the course classifier)
is the evaluation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from aigc_course import checkpoints, data, metrics, runtime, training
from aigc_course.errors import SettingError
from aigc_course.i18n import N_, _
from aigc_course.models.diffusion import SCHEDULES, NoiseSchedule, diffusion_loss, sample
from aigc_course.models.unet import UNet, UNetConfig
from aigc_course.trainers import classifier as classifier_trainer
from aigc_course.training import Run, TrainConfig
from aigc_course.validators import check_choices, count, setting

PRETRAINED_NAME = "diffusion_fashion_mnist"


@dataclass(frozen=True)
class DiffusionRecipe:
    model: UNetConfig
    train: TrainConfig
    batch_size: int
    schedule: str = setting("linear", N_("the noise schedule"), choices=SCHEDULES)
    diffusion_steps: int = setting(1000, N_("the noising steps T"), count)
    warmup_steps: int = 100
    train_limit: int | None = None  # use only the first N training images (smoke)
    fid_images: int = 1000  # generated and test images for the FID
    fid_sampling_steps: int = setting(
        50,
        N_("DDIM steps for the samples the FID is measured on"),
        count,
        flag="--sampling-steps",
    )

    def __post_init__(self) -> None:
        if not isinstance(self.diffusion_steps, int) or self.diffusion_steps < 2:
            raise SettingError(
                _("a diffusion needs at least 2 steps, got {value}").format(
                    value=repr(self.diffusion_steps)
                )
            )
        check_choices(self)
        if not 1 <= self.fid_sampling_steps <= self.diffusion_steps:
            raise SettingError(
                _(
                    "fid_sampling_steps must be 1 to diffusion_steps ({diffusion_steps}), "
                    "got {value}"
                ).format(diffusion_steps=self.diffusion_steps, value=self.fid_sampling_steps)
            )

    def noise_schedule(self) -> NoiseSchedule:
        return NoiseSchedule.make(self.schedule, self.diffusion_steps)


def recipe_for(profile: runtime.Profile | None = None, **overrides) -> DiffusionRecipe:
    """The diffusion recipe of a profile; any field may be overridden (see :func:`training.override`)."""
    profile = profile or runtime.get_profile()
    base = profile.select(
        smoke=DiffusionRecipe(
            UNetConfig(channels=8, groups=4),
            TrainConfig(steps=8, lr=1e-3, eval_every=4, log_every=2),
            batch_size=16,
            warmup_steps=2,
            train_limit=256,
            fid_images=64,
            fid_sampling_steps=5,
        ),
        cpu=DiffusionRecipe(
            UNetConfig(channels=24),
            TrainConfig(steps=5_000, lr=1e-3, eval_every=5_000, log_every=20),
            batch_size=64,
            fid_images=500,
        ),
        gpu=DiffusionRecipe(
            UNetConfig(channels=64),
            TrainConfig(steps=20_000, lr=5e-4, eval_every=5_000, log_every=50),
            batch_size=128,
            warmup_steps=500,
            fid_images=5_000,
        ),
    )
    if "diffusion_steps" in overrides and "fid_sampling_steps" not in overrides:
        # A shorter diffusion than the profile's sampling steps: sample with all of its steps.
        overrides["fid_sampling_steps"] = min(base.fid_sampling_steps, overrides["diffusion_steps"])
    return training.override(base, **overrides)


def describe(recipe: DiffusionRecipe) -> str:
    return _(
        "U-Net width {channels}, {schedule} schedule over {diffusion_steps} steps, {length} of "
        "{batch_size} images"
    ).format(
        channels=recipe.model.channels,
        schedule=recipe.schedule,
        diffusion_steps=recipe.diffusion_steps,
        length=training.describe_length(recipe.train),
        batch_size=recipe.batch_size,
    )


def checkpoint_name(recipe: DiffusionRecipe) -> str:
    return PRETRAINED_NAME


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]: the diffusion's pure noise N(0, I) is centred, so the data is too."""
    return images * 2 - 1


@torch.no_grad()
def generate(
    model: UNet,
    schedule: NoiseSchedule,
    count: int,
    method: str = "ddim",
    steps: int | None = 50,
    seed: int = 0,
    batch_size: int = 500,
    eta: float = 0.0,
) -> torch.Tensor:
    """``count`` images in [0, 1] ``(count, 1, 28, 28)``, on the CPU, made in batches."""
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    schedule = schedule.to(device)
    steps = None if method == "ddpm" else steps
    images = [
        sample(
            model, schedule, min(batch_size, count - start), method, steps, eta, generator=generator
        ).cpu()
        for start in range(0, count, batch_size)
    ]
    return (torch.cat(images) + 1) / 2


def evaluate(
    model: UNet,
    schedule: NoiseSchedule,
    classifier,
    real: torch.Tensor,
    sampling_steps: int,
    real_statistics: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, float]:
    """The course FID of ``len(real)`` DDIM samples against ``real``, and their class entropy
    (``real_statistics``: ``real``'s :func:`metrics.image_statistics`, if already computed)."""
    fake = generate(model, schedule, len(real), "ddim", sampling_steps, seed=1)
    return metrics.sample_scores(
        classifier, fake, real if real_statistics is None else real_statistics
    )


def train(
    recipe: DiffusionRecipe,
    device: torch.device | None = None,
    progress: bool = True,
    *,
    evaluate_fid: bool = True,
    on_trained: training.OnTrained | None = None,
) -> Run:
    """Train a noise-predicting U-Net with ``recipe`` on Fashion-MNIST; evaluate its course FID."""
    runtime.seed_everything(recipe.train.seed)
    device = device or runtime.get_device()
    images = to_model_range(data.load_fashion_mnist("train", limit=recipe.train_limit).images)
    schedule = recipe.noise_schedule()
    generator = torch.Generator().manual_seed(recipe.train.seed)
    batches = (x for (x,) in training.random_batches((images,), recipe.batch_size, generator))
    model = UNet(recipe.model)
    classifier = classifier_trainer.load_pretrained(device) if evaluate_fid else None
    real = data.load_fashion_mnist("test").images[: recipe.fid_images] if evaluate_fid else None
    real_statistics = metrics.image_statistics(classifier, real) if evaluate_fid else None
    device_schedule = schedule.to(device)

    def loss_fn(m, x):
        return diffusion_loss(m, x, device_schedule), {}

    def evaluation(m) -> dict[str, float]:
        return evaluate(m, schedule, classifier, real, recipe.fid_sampling_steps, real_statistics)

    cfg = recipe.train
    history = training.train(
        model,
        loss_fn,
        batches,
        cfg,
        evaluate=evaluation if evaluate_fid else None,
        device=device,
        progress=progress,
        description=N_("diffusion"),
        lr_schedule=lambda index, total: training.warmup_cosine(
            index, cfg.lr, min(recipe.warmup_steps, total // 10), total, cfg.lr / 10
        ),
        unit="images",
        on_trained=training.report_trained(
            on_trained, lambda h: Run(model, recipe, h, training.training_figures(h))
        ),
    )
    model.eval()
    run_metrics = training.training_figures(history)
    if evaluate_fid:
        started = time.perf_counter()
        final = evaluation(model)
        run_metrics |= {
            "test_fid": final["fid"],
            "test_class_entropy": final["class_entropy"],
            "fid_images": recipe.fid_images,
            "fid_sampling_steps": recipe.fid_sampling_steps,
            "fid_seconds": time.perf_counter() - started,
        }
    return Run(model, recipe, history, run_metrics)


def summary(run: Run) -> dict[str, object]:
    m = run.metrics
    rows = training.training_rows(run)
    if "test_fid" in m:
        fid = _("FID, {images} DDIM-{sampling_steps} samples vs test").format(
            images=m["fid_images"], sampling_steps=m["fid_sampling_steps"]
        )
        rows[fid] = m["test_fid"]
        rows[_("class entropy [nats] (uniform: 2.303)")] = m["test_class_entropy"]
    return rows


def save_run(run: Run, path: str | Path, command: str) -> str:
    """Save a trained U-Net with its config, the noise schedule's settings and the metrics."""
    r = run.recipe
    return training.save_run(
        run, path, command, schedule=r.schedule, diffusion_steps=r.diffusion_steps
    )


def load(path: str | Path | None = None, expected_sha256: str | None = None) -> training.Loaded:
    """A U-Net and its noise schedule from a checkpoint file, or the course's pretrained one."""
    model, checkpoint = checkpoints.load_model(
        lambda config: UNet(UNetConfig(**config)),
        PRETRAINED_NAME,
        path,
        expected_sha256,
        kind=UNet.__name__,
    )
    extra = checkpoint.extra
    schedule = NoiseSchedule.make(extra["schedule"], extra["diffusion_steps"])
    return training.Loaded(model, checkpoint, schedule=schedule)
