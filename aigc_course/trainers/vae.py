"""Training the lesson-06 VAE on binarised Fashion-MNIST, under a run profile.

Used by ``aigc-course train vae``, by ``benchmarks/vae.py`` and by the lesson, so the three train
the same way.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from aigc_course import checkpoints, data, distributed, runtime, training
from aigc_course.errors import SettingError
from aigc_course.i18n import N_, _
from aigc_course.models.vae import (
    MLPVAE,
    VAE,
    BernoulliVAE,
    MLPVAEConfig,
    VAEConfig,
    binarize,
    build_vae,
    nats_to_bits_per_dim,
)
from aigc_course.training import Run, TrainConfig
from aigc_course.validators import check_choices, non_negative_float, setting

PRETRAINED_NAME = "vae_fashion_mnist"

#: The two networks: lesson 06's conv VAE, and Kingma & Welling's fully connected 784-400-20.
NETWORKS = ("conv", "mlp")
LR_DECAYS = ("constant", "cosine")
WARMUP_SHARE = 0.02  # of the run, for lr_decay="cosine"

#: The best VAE measured for a cpu run by the clock, by budget (benchmarks/RESULTS.md): on two CPU
#: cores an MLP step costs a sixth of a conv step, and up to 10 minutes the MLP's many cheap steps
#: reach the better bound (241.46 against 244.63 nats at 1 minute, 239.05 against 242.46 at 3, level
#: at 10: 237.08 against 237.16). Beyond it, and by steps, the conv VAE: per step it learns more.
#: And the MLP learns faster still at 5 times the rate, decayed to 0 with the clock (241.7 against
#: 245.2 nats at 1 minute, 238.3 against 241.1 at 3, 237.2 against 238.1 at 10, on one machine).
CPU_BUDGETS = (
    training.BudgetRecipe(
        10.0,
        {"network": "mlp", "lr": 5e-3, "lr_decay": "cosine"},
        measured="The MLP VAE's learning rate by the clock",
    ),
)


@dataclass(frozen=True)
class VAERecipe:
    """Everything a VAE run needs, per profile. ``model`` is the conv VAE's config, or an
    :class:`MLPVAEConfig` for the fully connected one; :func:`recipe_for` makes it the one
    ``network`` names."""

    model: VAEConfig | MLPVAEConfig
    train: TrainConfig
    batch_size: int
    beta: float = setting(1.0, N_("weight of the KL term (1: the ELBO)"), non_negative_float)
    network: str = setting(
        "conv",
        N_(
            "conv (lesson 06's) or mlp (784-400-20); a cpu run of up to 10 minutes by the clock "
            "trains the mlp, measured better there"
        ),
        choices=NETWORKS,
    )
    lr_decay: str = setting(
        "constant",
        N_(
            "the learning rate over the run: constant, or cosine (a short linear warm-up, then "
            "a cosine decay to 0 at the run's end, by steps or by the clock); a cpu run of up to "
            "10 minutes by the clock trains the mlp with cosine, at lr 5e-3"
        ),
        choices=LR_DECAYS,
    )
    train_limit: int | None = None  # use only the first N training images (smoke)
    eval_images: int = 10_000  # test images for the negative ELBO
    iwae_images: int = 1_000  # test images for the IWAE estimate
    iwae_k: int = 100

    def __post_init__(self) -> None:
        check_choices(self)


def recipe_for(profile: runtime.Profile | None = None, **overrides) -> VAERecipe:
    """The VAE recipe of a profile; any field may be overridden (see :func:`training.override`)."""
    profile = profile or runtime.get_profile()
    base = profile.select(
        smoke=VAERecipe(
            VAEConfig(),
            TrainConfig(steps=20, lr=1e-3, eval_every=10, log_every=5),
            batch_size=32,
            train_limit=512,
            eval_images=256,
            iwae_images=32,
            iwae_k=5,
        ),
        cpu=VAERecipe(
            VAEConfig(), TrainConfig(steps=4_000, lr=1e-3, eval_every=1_000), batch_size=128
        ),
        gpu=VAERecipe(
            VAEConfig(),
            TrainConfig(steps=20_000, lr=1e-3, eval_every=2_000),
            batch_size=256,
            iwae_images=10_000,
            iwae_k=1_000,
        ),
    )
    if profile.name == "cpu" and overrides.get("network") in (None, "mlp"):
        # A row was measured as a whole: naming the conv VAE leaves all of it out.
        base = training.for_budget(base, CPU_BUDGETS, overrides.get("minutes"))
    return with_network(training.override(base, **overrides), overrides.get("latent_dim"))


def with_network(recipe: VAERecipe, latent_dim: int | None = None) -> VAERecipe:
    """``recipe`` with the model config its ``network`` names: the MLP (latent ``latent_dim``, or
    Kingma & Welling's 20) in place of the conv VAE's config, or the conv VAE's (latent
    ``latent_dim``, or 16) in place of the MLP's; unchanged when they already agree."""
    if recipe.network == "mlp" and not isinstance(recipe.model, MLPVAEConfig):
        conv_only = {
            name: value
            for name, value in dataclasses.asdict(recipe.model).items()
            if name != "latent_dim" and value != getattr(VAEConfig(), name)
        }
        if conv_only:
            raise SettingError(
                _(
                    "{settings} set for the conv VAE, but this run trains the MLP (a cpu run by "
                    "the clock of up to 10 minutes does, measured better there): add "
                    "network='conv' (--network conv) to train the conv VAE"
                ).format(
                    settings=", ".join(f"{name}={value!r}" for name, value in conv_only.items())
                )
            )
        model = MLPVAEConfig(latent_dim=latent_dim or MLPVAEConfig.latent_dim)
    elif recipe.network == "conv" and isinstance(recipe.model, MLPVAEConfig):
        model = VAEConfig(latent_dim=latent_dim or VAEConfig.latent_dim)
    else:
        return recipe
    return dataclasses.replace(recipe, model=model)


def describe(recipe: VAERecipe) -> str:
    network = "MLP" if isinstance(recipe.model, MLPVAEConfig) else "conv"
    text = _("{network}, latent {latent_dim}, beta {beta}, {length} of {batch_size} images").format(
        network=network,
        latent_dim=recipe.model.latent_dim,
        beta=f"{recipe.beta:g}",
        length=training.describe_length(recipe.train),
        batch_size=recipe.batch_size,
    )
    if recipe.lr_decay == "cosine":
        text += _(", learning rate {lr:g} with a cosine decay").format(lr=recipe.train.lr)
    return text


def learning_rate_schedule(recipe: VAERecipe) -> Callable[[int, int], float] | None:
    """The ``lr_schedule`` of :func:`training.train` that ``recipe.lr_decay`` names (None: constant):
    a linear warm-up over the first ``WARMUP_SHARE`` of the run, then a cosine decay to 0."""
    if recipe.lr_decay == "constant":
        return None
    return lambda index, total: training.warmup_cosine(
        index, recipe.train.lr, round(WARMUP_SHARE * total), total, 0.0
    )


def checkpoint_name(recipe: VAERecipe) -> str:
    return PRETRAINED_NAME


def fixed_test_set(images: int, seed: int = 0) -> torch.Tensor:
    """The first ``images`` test images, binarised once with a fixed seed: the same for every run."""
    test = data.load_fashion_mnist("test", limit=images)
    return binarize(test.images, torch.Generator().manual_seed(seed))


@torch.no_grad()
def evaluate(
    model: BernoulliVAE,
    x: torch.Tensor,
    batch_size: int = 500,
    world: distributed.World | None = None,
) -> dict[str, float]:
    """Mean negative ELBO, reconstruction and KL (nats per image) over ``x``. With the ``world`` of
    a data-parallel run, every rank must call it: each scores its share of ``x`` and the means are
    combined."""
    device = next(model.parameters()).device
    world = world or distributed.World()
    share = distributed.my_share(x, world)
    totals = torch.zeros(3)
    for start in range(0, len(share), batch_size):
        batch = share[start : start + batch_size].to(device)
        reconstruction, kl = model.loss_terms(batch)
        totals += torch.stack([(reconstruction + kl).sum(), reconstruction.sum(), kl.sum()]).cpu()
    negative_elbo, reconstruction, kl = (totals / max(len(share), 1)).tolist()
    means = {"neg_elbo": negative_elbo, "reconstruction": reconstruction, "kl": kl}
    return distributed.average(means, len(share), device, world)


@torch.no_grad()
def iwae_nll(
    model: BernoulliVAE,
    x: torch.Tensor,
    k: int,
    batch_size: int = 250,
    world: distributed.World | None = None,
) -> float:
    """Mean -log p(x) (IWAE estimate with ``k`` samples) over ``x``, in nats per image (with the
    ``world`` of a data-parallel run, every rank must call it and scores its share of ``x``)."""
    device = next(model.parameters()).device
    world = world or distributed.World()
    share = distributed.my_share(x, world)
    total = 0.0
    for start in range(0, len(share), batch_size):
        batch = share[start : start + batch_size].to(device)
        total += -model.iwae_log_likelihood(batch, k=k).sum().item()
    mean = {"nll": total / max(len(share), 1)}
    return distributed.average(mean, len(share), device, world)["nll"]


def train(
    recipe: VAERecipe,
    device: torch.device | None = None,
    progress: bool = True,
    *,
    test_evaluation: bool = True,
    on_trained: training.OnTrained | None = None,
) -> Run:
    """Train a VAE with ``recipe`` on binarised Fashion-MNIST (dynamic binarisation) and evaluate it.

    ``test_evaluation=False`` skips every test-set evaluation, during training and after: a quick run
    (all of its time goes to training) whose model the caller looks at itself."""
    runtime.seed_everything(recipe.train.seed)
    device = device or runtime.get_device()
    train_images = data.load_fashion_mnist("train", limit=recipe.train_limit).images
    test_x = fixed_test_set(recipe.eval_images)
    generator = torch.Generator().manual_seed(recipe.train.seed)

    # A fresh binarisation every time an image is used (dynamic binarisation).
    batches = (
        binarize(x, generator)
        for (x,) in training.random_batches((train_images,), recipe.batch_size, generator)
    )

    def loss_fn(model, x):
        loss, reconstruction, kl = model(x, recipe.beta)
        return loss, {"reconstruction": reconstruction.detach(), "kl": kl.detach()}

    model = build_vae(recipe.model)
    world = distributed.world(device)
    history = training.train(
        model,
        loss_fn,
        batches,
        recipe.train,
        evaluate=(lambda m: evaluate(m, test_x, world=world)) if test_evaluation else None,
        device=device,
        progress=progress,
        description="VAE",
        lr_schedule=learning_rate_schedule(recipe),
        on_trained=training.report_trained(
            on_trained, lambda h: Run(model, recipe, h, training.training_figures(h))
        ),
    )
    model.eval()
    metrics = training.training_figures(history)
    if test_evaluation:
        metrics.update({f"test_{k}": v for k, v in evaluate(model, test_x, world=world).items()})
        started = time.perf_counter()
        iwae_x = fixed_test_set(recipe.iwae_images)
        nll = iwae_nll(model, iwae_x, recipe.iwae_k, world=world)
        metrics.update(
            test_iwae_nll=nll,
            test_iwae_bits_per_dim=float(nats_to_bits_per_dim(nll)),
            iwae_k=recipe.iwae_k,
            iwae_images=recipe.iwae_images,
            iwae_seconds=time.perf_counter() - started,
        )
    return Run(model, recipe, history, metrics)


def summary(run: Run) -> dict[str, object]:
    m = run.metrics
    rows = training.training_rows(run)
    if "test_neg_elbo" in m:
        rows.update(
            {
                _("test -ELBO [nats]"): m["test_neg_elbo"],
                "  " + _("reconstruction"): m["test_reconstruction"],
                "  KL": m["test_kl"],
                _("test IWAE NLL, k={k} [nats]").format(k=m["iwae_k"]): m["test_iwae_nll"],
                "  [bits/dim]": m["test_iwae_bits_per_dim"],
            }
        )
    return rows


def save_run(run: Run, path: str | Path, command: str) -> str:
    """Save a trained VAE with its config, recipe and metrics; returns the sha256."""
    return training.save_run(run, path, command, beta=run.recipe.beta)


def build_from_config(config: dict) -> BernoulliVAE:
    """The empty VAE a checkpoint's config describes: the MLP's has its fields, the conv VAE's more."""
    if set(config) == {field.name for field in dataclasses.fields(MLPVAEConfig)}:
        return MLPVAE(MLPVAEConfig.from_dict(config))
    return VAE(VAEConfig.from_dict(config))


def load(path: str | Path | None = None, expected_sha256: str | None = None) -> training.Loaded:
    """A VAE (conv or MLP) from a checkpoint file, or the course's pretrained one
    (sha256-verified) by default."""
    return training.Loaded(
        *checkpoints.load_model(
            build_from_config,
            PRETRAINED_NAME,
            path,
            expected_sha256,
            kind=(VAE.__name__, MLPVAE.__name__),
        )
    )
