"""Lesson 10: the samplers of a trained diffusion model compared (DDPM, DDIM, stochastic DDIM)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from aigc_course import metrics
from aigc_course.models.diffusion import NoiseSchedule
from aigc_course.models.unet import UNet
from aigc_course.trainers.diffusion import generate


@dataclass(frozen=True)
class SamplerFigures:
    """One sampler setting: its course FID, KID (with its standard error), class entropy and time
    for ``count`` images."""

    name: str
    steps: int
    fid: float
    class_entropy: float
    seconds: float
    count: int
    kid: metrics.KID | None = None

    @property
    def seconds_per_1000(self) -> float:
        return 1000 * self.seconds / self.count


def compare_samplers(
    model: UNet,
    schedule: NoiseSchedule,
    classifier,
    real: torch.Tensor,
    steps: tuple[int, ...] = (10, 50, 250, 1000),
    seed: int = 1,
    kid_blocks: int = 5,
) -> list[SamplerFigures]:
    """At each number of ``steps`` (those up to T): deterministic DDIM (eta = 0) and stochastic
    DDIM (eta = 1: ancestral sampling with the posterior variance of the shortened chain); at all T
    steps also DDPM (ancestral, sigma_t^2 = beta_t). ``len(real)`` samples each, from the same seed,
    timed on the model's device; KID over ``kid_blocks`` disjoint blocks."""
    device = next(model.parameters()).device
    real_features = metrics.classifier_features(classifier, real)  # the same for every setting
    real_statistics = metrics.feature_statistics(real_features)
    rows = []
    for count_steps in (s for s in steps if s <= schedule.steps):
        names = ["DDIM", "DDIM, eta = 1"] + (["DDPM"] if count_steps == schedule.steps else [])
        for name in names:
            method = "ddpm" if name == "DDPM" else "ddim"
            eta = 0.0 if name == "DDIM" else 1.0
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            fake = generate(model, schedule, len(real), method, count_steps, seed, eta=eta)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            fake_features = metrics.classifier_features(classifier, fake)  # once: FID, KID, classes
            fid = metrics.frechet_distance(
                *metrics.feature_statistics(fake_features), *real_statistics
            )
            kid = metrics.kernel_inception_distance(fake_features, real_features, kid_blocks)
            entropy = metrics.class_histogram_of_features(classifier, fake_features).entropy
            rows.append(SamplerFigures(name, count_steps, fid, entropy, seconds, len(real), kid))
    return rows
