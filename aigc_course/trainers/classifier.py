"""Training the course's Fashion-MNIST classifier, whose features the course's FID uses.

``aigc-course train classifier`` runs it; the GAN and diffusion trainers and lesson 07 load the
pretrained one with :func:`load`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from aigc_course import checkpoints, data, metrics, runtime, training
from aigc_course.i18n import N_, _
from aigc_course.models.classifier import ClassifierConfig, FashionClassifier
from aigc_course.training import Run, TrainConfig

PRETRAINED_NAME = "fashion_classifier"


@dataclass(frozen=True)
class ClassifierRecipe:
    model: ClassifierConfig
    train: TrainConfig
    batch_size: int = 128
    test_images: int = 10_000  # the first N of the test set score the accuracy


def recipe_for(profile: runtime.Profile | None = None, **overrides) -> ClassifierRecipe:
    """The classifier recipe of a profile; any field may be overridden (see :func:`training.override`)."""
    profile = profile or runtime.get_profile()
    steps = profile.select(smoke=20, cpu=3_000, gpu=6_000)
    base = ClassifierRecipe(
        ClassifierConfig(),
        TrainConfig(steps=steps, lr=1e-3, log_every=max(steps // 20, 1)),
        test_images=profile.select(smoke=1_000, cpu=10_000, gpu=10_000),  # smoke: the code path
    )
    return training.override(base, **overrides)


def describe(recipe: ClassifierRecipe) -> str:
    return _("{length} of {batch_size} images").format(
        length=training.describe_length(recipe.train), batch_size=recipe.batch_size
    )


def checkpoint_name(recipe: ClassifierRecipe) -> str:
    return PRETRAINED_NAME


def train(
    recipe: ClassifierRecipe,
    device: torch.device | None = None,
    progress: bool = True,
    *,
    on_trained: training.OnTrained | None = None,
) -> Run:
    """Train the classifier on Fashion-MNIST's 60,000 training images; measure it on the first
    ``recipe.test_images`` of the test set (all 10,000 but under the smoke profile)."""
    runtime.seed_everything(recipe.train.seed)
    device = device or runtime.get_device()
    train_set = data.load_fashion_mnist("train", val_size=0)
    test_set = data.load_fashion_mnist("test")
    test_images, test_labels = (t[: recipe.test_images] for t in (test_set.images, test_set.labels))
    model = FashionClassifier(recipe.model)
    batches = training.random_batches(
        (train_set.images, train_set.labels),
        recipe.batch_size,
        torch.Generator().manual_seed(recipe.train.seed),
    )
    history = training.train(
        model,
        lambda m, batch: (F.cross_entropy(m(batch[0]), batch[1]), {}),
        batches,
        recipe.train,
        device=device,
        progress=progress,
        description=N_("classifier"),
        on_trained=training.report_trained(
            on_trained, lambda h: Run(model, recipe, h, training.training_figures(h))
        ),
    )
    model.eval()
    accuracy = metrics.accuracy(model, test_images, test_labels)
    return Run(
        model,
        recipe,
        history,
        {
            "test_accuracy": accuracy,
            "test_images": len(test_labels),
            **training.training_figures(history),
        },
    )


def summary(run: Run) -> dict[str, object]:
    label = _("test accuracy ({images} images)").format(images=run.metrics["test_images"])
    return {**training.training_rows(run), label: run.metrics["test_accuracy"]}


def save_run(run: Run, path: str | Path, command: str) -> str:
    """Save the classifier with its config, accuracy and curves; returns the sha256."""
    return training.save_run(run, path, command)


def load(path: str | Path | None = None, expected_sha256: str | None = None) -> training.Loaded:
    """The classifier from a checkpoint file, or the course's pretrained one (verified) by default."""
    return training.Loaded(
        *checkpoints.load_model(
            lambda config: FashionClassifier(ClassifierConfig(**config)),
            PRETRAINED_NAME,
            path,
            expected_sha256,
            kind=FashionClassifier.__name__,
        )
    )


def load_pretrained(device: torch.device | None = None) -> FashionClassifier:
    """The pretrained classifier alone, in eval mode, on ``device``: what FID needs."""
    model = load().model
    return model.to(device) if device is not None else model
