"""The DCGAN of lesson 07 (model, training step, trainer) and the FID machinery of aigc_course.metrics."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from aigc_course import checkpoints, cli, data, gan_theory, metrics, runtime, training
from aigc_course.models.dcgan import (
    Discriminator,
    GANConfig,
    Generator,
    to_signed_range,
    to_unit_range,
)
from aigc_course.trainers import classifier as classifier_trainer
from aigc_course.trainers import gan as trainer

SMALL = GANConfig(latent_dim=8, channels=8)


def test_shapes_ranges_and_conditioning():
    torch.manual_seed(0)
    generator, discriminator = Generator(SMALL), Discriminator(SMALL)
    images = generator(torch.randn(5, 8))
    assert images.shape == (5, 1, 28, 28) and images.min() >= -1 and images.max() <= 1
    assert discriminator(images).shape == (5,)
    conditional = GANConfig(latent_dim=8, channels=8, n_classes=10)
    labels = torch.arange(5)
    images = Generator(conditional)(torch.randn(5, 8), labels)
    assert Discriminator(conditional)(images, labels).shape == (5,)
    with pytest.raises(ValueError, match="pass labels"):
        Generator(conditional)(torch.randn(2, 8))
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(to_unit_range(to_signed_range(x)), x)


def test_dcgan_initialisation():
    torch.manual_seed(1)
    generator = Generator(GANConfig(latent_dim=64, channels=64))
    conv = generator.net[2].weight
    assert conv.std().item() == pytest.approx(0.02, rel=0.1)
    assert generator.net[0].weight.mean().item() == pytest.approx(1.0, abs=0.01)


def test_one_step_updates_only_what_it_should():
    torch.manual_seed(2)
    generator, discriminator = Generator(SMALL), Discriminator(SMALL)
    precision = runtime.Precision("fp32", "cpu")
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=1e-2)
    real, z = torch.rand(8, 1, 28, 28) * 2 - 1, torch.randn(8, 8)
    # The discriminator's loss never reaches the generator: the fakes are detached.

    fake = generator(z)
    gan_theory.discriminator_loss(discriminator(real), discriminator(fake.detach())).backward()
    assert all(p.grad is None for p in generator.parameters())
    # A full step changes both networks, each by its own optimiser only.
    before_g = [p.detach().clone() for p in generator.parameters()]
    before_d = [p.detach().clone() for p in discriminator.parameters()]
    frozen_d = torch.optim.Adam(discriminator.parameters(), lr=0.0)
    gan_theory.gan_step(
        generator,
        discriminator,
        optimizer_g,
        frozen_d,
        real,
        z,
        precision=precision,
        scalers=(precision.grad_scaler(), precision.grad_scaler()),
    )
    assert all(
        torch.equal(a, b) for a, b in zip(before_d, discriminator.parameters(), strict=True)
    ), "D frozen"
    assert any(
        not torch.equal(a, b) for a, b in zip(before_g, generator.parameters(), strict=True)
    ), "G moved"


def test_frechet_distance_identities():
    generator = torch.Generator().manual_seed(3)
    mean = torch.randn(6, generator=generator, dtype=torch.float64)
    root = torch.randn(6, 6, generator=generator, dtype=torch.float64)
    cov = root @ root.T + 0.1 * torch.eye(6, dtype=torch.float64)
    assert metrics.frechet_distance(mean, cov, mean, cov) == pytest.approx(0.0, abs=1e-8)
    variances_1, variances_2 = (
        torch.rand(6, dtype=torch.float64) + 0.5,
        torch.rand(6, dtype=torch.float64) + 0.5,
    )
    mean_2 = mean + 1.0
    closed_form = (mean - mean_2).pow(2).sum() + (variances_1.sqrt() - variances_2.sqrt()).pow(
        2
    ).sum()
    got = metrics.frechet_distance(mean, torch.diag(variances_1), mean_2, torch.diag(variances_2))
    assert got == pytest.approx(closed_form.item(), rel=1e-9)
    assert metrics.frechet_distance(mean, cov, mean_2, cov) == pytest.approx(6.0, rel=1e-9)


def test_fid_of_real_images_and_its_growth_with_noise():
    classifier = classifier_trainer.load_pretrained()
    test = data.load_fashion_mnist("test", limit=500).images
    train = data.load_fashion_mnist("train", val_size=0, limit=500).images
    assert metrics.fid(classifier, test, test) == pytest.approx(0.0, abs=1e-6)
    real_vs_real = metrics.fid(classifier, train, test)
    # A trainer scores its samples against the test images' statistics, computed once a run: the
    # same figures as from the images themselves.
    reference = metrics.image_statistics(classifier, test)
    scores = metrics.sample_scores(classifier, train, reference)
    assert scores["fid"] == real_vs_real
    assert scores["class_entropy"] == metrics.class_histogram(classifier, train).entropy
    # The class histogram is made from the FID's features (the classifier's body runs once): its
    # logits are the whole classifier's to the bit, batch by batch (700 images: two batches).
    images = torch.cat([train, test[:200]])
    whole = metrics.batched(classifier, images)
    assert torch.equal(
        metrics.batched(classifier.logits, metrics.classifier_features(classifier, images)), whole
    )
    counts = metrics.class_histogram(classifier, images).counts
    assert torch.equal(counts, torch.bincount(whole.argmax(1), minlength=10).double())
    test_set = data.load_fashion_mnist("test", limit=500)
    with pytest.raises(TypeError, match=r"got tuple \[\(500, 1, 28, 28\), \(500,\)\]"):
        metrics.sample_scores(classifier, train, test_set[:500])  # images and labels
    with pytest.raises(ValueError, match="of 3 features, the classifier gives 128"):
        metrics.sample_scores(classifier, train, [torch.zeros(3), torch.eye(3)])
    generator = torch.Generator().manual_seed(4)
    noisy = [
        metrics.sample_scores(
            classifier,
            (train + s * torch.randn(train.shape, generator=generator)).clamp(0, 1),
            test,
        )["fid"]
        for s in (0.1, 0.3)
    ]
    assert real_vs_real < noisy[0] < noisy[1]
    histogram = metrics.class_histogram(classifier, test)
    assert histogram.counts.sum() == 500 and histogram.entropy > 0.95 * math.log(10)


def test_classifier_reaches_its_recorded_accuracy():
    recorded = checkpoints.manifest()[classifier_trainer.PRETRAINED_NAME]["metrics"][
        "test_accuracy"
    ]
    assert recorded > 0.88
    test = data.load_fashion_mnist("test")
    subset = torch.randperm(len(test), generator=torch.Generator().manual_seed(5))[:2000]
    measured = metrics.accuracy(
        classifier_trainer.load_pretrained(), test.images[subset], test.labels[subset]
    )
    assert abs(measured - recorded) < 0.02


def test_short_training_lowers_fid_and_checkpoint_round_trips(tmp_path):
    # The cpu recipe's learning rate: 100 steps take FID to 0.67 of the start, where the paper's
    # 2e-4 needs 300 for 0.59 (measured, seeded)
    recipe = trainer.recipe_for(
        runtime.Profile("smoke"), steps=100, lr=1e-3, eval_every=100, fid_images=500
    )
    run = trainer.train(recipe, progress=False)
    classifier = classifier_trainer.load_pretrained()
    real = data.load_fashion_mnist("test").images[:500]
    torch.manual_seed(0)
    untrained = Generator(recipe.model)
    start_fid = trainer.evaluate(untrained, classifier, real)["fid"]
    assert run.metrics["test_fid"] < 0.8 * start_fid, (run.metrics["test_fid"], start_fid)
    assert [step for step, _ in run.snapshots] == [0, 100]
    path = tmp_path / "gan.safetensors"
    digest = trainer.save_run(run, path, "test")
    restored = trainer.load(path, expected_sha256=digest)
    loaded, checkpoint = restored.model, restored.checkpoint
    torch.testing.assert_close(
        trainer.generate(loaded, 4), trainer.generate(run.generator, 4), rtol=0, atol=0
    )
    assert checkpoint.extra["steps"] == 100


def test_cli_train_gan_smoke(tmp_path, capsys):
    assert cli.main(["train", "gan", "--profile", "smoke", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert (
        "GAN trained:" in out
        and "FID vs 200 test images" in out
        and "class-histogram entropy" in out
    )
    assert (tmp_path / "gan.safetensors").is_file()
    assert (
        cli.main(
            [
                "train",
                "gan",
                "--profile",
                "smoke",
                "--conditional",
                "--out",
                str(tmp_path),
                "--quiet",
            ]
        )
        == 0
    )
    assert "classifier accuracy on labelled samples" in capsys.readouterr().out
    assert (tmp_path / "gan.safetensors").is_file(), "the conditional run kept the first"
    assert (tmp_path / "gan_conditional.safetensors").is_file()


def test_gan_step_clips_both_networks_when_asked():
    moved = {}
    for clip in (None, 1e-8):
        torch.manual_seed(3)
        generator, discriminator = Generator(SMALL), Discriminator(SMALL)
        optimizers = [
            torch.optim.SGD(network.parameters(), lr=0.1) for network in (generator, discriminator)
        ]
        before = [
            p.detach().clone() for p in (*generator.parameters(), *discriminator.parameters())
        ]
        real, z = torch.rand(8, 1, 28, 28) * 2 - 1, torch.randn(8, SMALL.latent_dim)
        gan_theory.gan_step(generator, discriminator, *optimizers, real, z, grad_clip=clip)
        after = [*generator.parameters(), *discriminator.parameters()]
        moved[clip] = max((a - b).abs().max().item() for a, b in zip(after, before, strict=True))
    assert moved[None] > 1e-4 and moved[1e-8] < 1e-8, moved


def test_frechet_distance_of_correlated_covariances_matches_the_2x2_closed_form():
    """For 2 x 2 PSD matrices, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)) with M = S_1 S_2 (its
    eigenvalues are those of S_1^1/2 S_2 S_1^1/2): an independent route to the trace term, on
    covariances that neither commute nor are diagonal."""
    mean_1, mean_2 = torch.tensor([0.0, 1.0]), torch.tensor([1.5, -0.5])
    cov_1 = torch.tensor([[2.0, 1.2], [1.2, 1.0]], dtype=torch.float64)
    cov_2 = torch.tensor([[1.0, -0.4], [-0.4, 3.0]], dtype=torch.float64)
    product = cov_1 @ cov_2
    trace_sqrt = math.sqrt(product.trace().item() + 2 * math.sqrt(torch.det(product).item()))
    expected = (
        (mean_1 - mean_2).pow(2).sum().item() + (cov_1 + cov_2).trace().item() - 2 * trace_sqrt
    )
    got = metrics.frechet_distance(mean_1, cov_1, mean_2, cov_2)
    assert got == pytest.approx(expected, rel=1e-9)


def test_the_shipped_generators_load_verified_and_the_cgan_draws_the_class_asked_for():
    generator = trainer.load().model
    loaded = trainer.load(conditional=True)
    conditional, conditional_checkpoint = loaded.model, loaded.checkpoint
    assert generator.config.n_classes == 0 and conditional.config.n_classes == 10
    assert conditional_checkpoint.extra["command"].startswith("aigc-course train gan --conditional")
    classifier = classifier_trainer.load_pretrained()
    labels = torch.arange(200) % 10
    images = trainer.generate(conditional, 200, seed=0, labels=labels)
    recorded = conditional_checkpoint.metrics["conditional_accuracy"]
    assert metrics.accuracy(classifier, images, labels) > recorded - 0.1  # far above chance, 0.1


def test_the_discriminator_watch_counts_on_the_device_and_names_the_first_win():
    watch = trainer.DiscriminatorWatch(torch.device("cpu"))
    low, high = torch.tensor(trainer.D_WINS_THRESHOLD / 2), torch.tensor(0.5)
    for step in range(1, trainer.D_WINS_STEPS):  # one step short of a win, then D is fooled again
        watch.observe(low, step)
    watch.observe(high, trainer.D_WINS_STEPS)
    assert watch.won_at() is None and watch.win_to_report() is None
    start = trainer.D_WINS_STEPS + 1
    for step in range(start, start + 2 * trainer.D_WINS_STEPS):
        watch.observe(low, step)
    assert watch.won_at() == start + trainer.D_WINS_STEPS - 1  # the first win, not a later one
    assert watch.win_to_report() == watch.won_at(), "reported the first time it is asked"
    assert watch.win_to_report() is None and watch.won_at() is not None, "and only once"


def test_the_watched_loss_is_ds_unless_gs_is_not_finite():
    loss_d, loss_g = torch.tensor(0.7, requires_grad=True), torch.tensor(1.3)
    watched = trainer.watched_loss(loss_d, loss_g)
    assert watched.item() == pytest.approx(0.7) and not watched.requires_grad
    assert math.isinf(trainer.watched_loss(loss_d, torch.tensor(math.inf)).item())
    assert math.isnan(trainer.watched_loss(torch.tensor(math.nan), loss_g).item())


def test_a_run_warns_once_when_the_discriminator_wins_outright(monkeypatch):
    # Every step counts as "D rejected every fake" (threshold 1): the watch must fire after 5 steps,
    # be read at the logged step 10, and warn once although the count goes on.
    monkeypatch.setattr(trainer, "D_WINS_THRESHOLD", 1.0)
    monkeypatch.setattr(trainer, "D_WINS_STEPS", 5)
    recipe = trainer.recipe_for(runtime.Profile("smoke"), steps=25, eval_every=10**9)
    run = trainer.train(recipe, progress=False, evaluate_fid=False)
    assert len(run.warnings) == 1 and run.warnings[0].startswith("step 5:"), run.warnings
    assert set(run.history.metrics) >= {"loss", "loss_d", "loss_g", "d_real", "d_fake"}
    assert run.history.metrics["loss"] == run.history.metrics["loss_d"]  # G's loss stayed finite


def test_a_non_finite_generator_loss_stops_the_run_naming_its_step(monkeypatch):
    real_step, steps = gan_theory.gan_step, []

    def step_whose_third_generator_loss_is_nan(*args, **kwargs):
        result = real_step(*args, **kwargs)
        steps.append(len(steps) + 1)
        if len(steps) == 3:
            result = dataclasses.replace(result, loss_g=torch.tensor(math.nan))
        return result

    monkeypatch.setattr(trainer.gan_theory, "gan_step", step_whose_third_generator_loss_is_nan)
    recipe = trainer.recipe_for(runtime.Profile("smoke"), steps=20, eval_every=10**9)
    with pytest.raises(training.NonFiniteLossError, match="at step 3"):
        trainer.train(recipe, progress=False, evaluate_fid=False)
    assert len(steps) == 10  # read on the next logged step (log_every 10), not on every step
