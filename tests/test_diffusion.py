"""Diffusion (aigc_course.models.diffusion, models.unet, trainers.diffusion): the forward process
against its closed form, the schedules, one reverse step against the formula, DDIM, a short training
run, the checkpoint, and the command line."""

from __future__ import annotations

import math

import pytest
import torch

from aigc_course import cli, runtime
from aigc_course.errors import SettingError
from aigc_course.models import diffusion
from aigc_course.models.diffusion import NoiseSchedule
from aigc_course.models.unet import UNet, UNetConfig
from aigc_course.trainers import diffusion as trainer

SMOKE = runtime.get_profile("smoke")


@pytest.mark.parametrize("kind", diffusion.SCHEDULES)
def test_alpha_bar_falls_from_nearly_one_to_nearly_zero(kind):
    schedule = NoiseSchedule.make(kind, 1000)
    a = schedule.alpha_bars
    assert ((a > 0) & (a < 1)).all()
    assert (a[1:] < a[:-1]).all()  # strictly decreasing: every step adds noise
    assert a[0] > 0.99 and a[-1] < 1e-3
    torch.testing.assert_close(a, torch.cumprod(1 - schedule.betas.double(), 0).float())
    assert (schedule.snr()[1:] < schedule.snr()[:-1]).all()


def test_the_cosine_schedule_keeps_more_signal_midway():
    linear, cosine = (NoiseSchedule.make(kind, 1000) for kind in ("linear", "cosine"))
    assert cosine.alpha_bars[500] > linear.alpha_bars[500] + 0.1


def test_q_sample_matches_the_closed_form_statistics():
    schedule = NoiseSchedule.make("linear", 1000)
    x0 = torch.full((20_000, 1, 2, 2), 0.6)
    for step in (0, 250, 999):
        t = torch.full((len(x0),), step)
        x_t = diffusion.q_sample(
            x0, t, torch.randn(x0.shape, generator=torch.Generator().manual_seed(step)), schedule
        )
        a = schedule.alpha_bars[step].item()
        assert x_t.mean().item() == pytest.approx(math.sqrt(a) * 0.6, abs=0.01)
        assert x_t.std().item() == pytest.approx(math.sqrt(1 - a), rel=0.02, abs=0.002)


def test_one_ddpm_step_is_the_formula_on_hand_made_numbers():
    schedule = NoiseSchedule.make("linear", 20)
    t = 6
    beta, alpha, alpha_bar = (
        v[t].item() for v in (schedule.betas, schedule.alphas, schedule.alpha_bars)
    )
    x_t, eps, z = torch.tensor([[[[0.5]]]]), torch.tensor([[[[0.2]]]]), torch.tensor([[[[-1.0]]]])
    mean = (0.5 - beta / math.sqrt(1 - alpha_bar) * 0.2) / math.sqrt(alpha)
    got = diffusion.ddpm_step(x_t, t, eps, schedule, noise=z)
    assert got.item() == pytest.approx(mean - math.sqrt(beta), rel=1e-5)
    # the last step adds no noise
    assert diffusion.ddpm_step(x_t, 0, eps, schedule, noise=z).item() == pytest.approx(
        (0.5 - schedule.betas[0].item() / math.sqrt(1 - schedule.alpha_bars[0].item()) * 0.2)
        / math.sqrt(schedule.alphas[0].item()),
        rel=1e-5,
    )


def test_ddim_with_eta_one_has_the_ddpm_mean_and_with_eta_zero_no_noise():
    schedule = NoiseSchedule.make("cosine", 50)
    generator = torch.Generator().manual_seed(0)
    x_t, eps = (
        torch.randn(3, 1, 4, 4, generator=generator),
        torch.randn(3, 1, 4, 4, generator=generator),
    )
    zero = torch.zeros_like(x_t)
    for t in (1, 20, 49):
        ddpm_mean = diffusion.ddpm_step(x_t, t, eps, schedule, noise=zero)
        ddim_mean = diffusion.ddim_step(x_t, t, t - 1, eps, schedule, eta=1.0, noise=zero)
        torch.testing.assert_close(ddim_mean, ddpm_mean, rtol=1e-4, atol=1e-5)
        noisy = torch.randn(x_t.shape, generator=generator)
        torch.testing.assert_close(
            diffusion.ddim_step(x_t, t, t - 1, eps, schedule, eta=0.0, noise=noisy),
            diffusion.ddim_step(x_t, t, t - 1, eps, schedule, eta=0.0, noise=zero),
        )
    # the last step predicts the clean image: x0_hat
    a = schedule.alpha_bars[0].item()
    torch.testing.assert_close(
        diffusion.ddim_step(x_t, 0, -1, eps, schedule),
        (x_t - math.sqrt(1 - a) * eps) / math.sqrt(a),
    )


def test_sampling_steps_run_from_the_last_step_to_zero():
    assert diffusion.sampling_steps(1000, 1000) == list(range(999, -1, -1))
    steps = diffusion.sampling_steps(1000, 10)
    assert (
        len(steps) == 10
        and steps[0] == 999
        and steps[-1] == 0
        and steps == sorted(steps, reverse=True)
    )
    with pytest.raises(SettingError, match="sampling steps must be 1 to 1000"):
        diffusion.sampling_steps(1000, 0)
    assert diffusion.sampling_steps(1000, 1) == [999]  # one step starts from pure noise


def test_ddim_sampling_is_deterministic_given_the_start_noise():
    model = UNet(UNetConfig(channels=8, groups=4))
    schedule = NoiseSchedule.make("linear", 20)
    one, two = (
        diffusion.sample(model, schedule, 2, "ddim", 5, generator=torch.Generator().manual_seed(3))
        for _ in range(2)
    )
    torch.testing.assert_close(one, two)
    assert one.shape == (2, 1, 28, 28) and one.min() >= -1 and one.max() <= 1
    with pytest.raises(SettingError, match="DDPM takes every one"):
        diffusion.sample(model, schedule, 2, "ddpm", 5)


def test_unet_shapes_time_dependence_and_conditioning():
    model = UNet(UNetConfig(channels=8, groups=4, n_classes=10))
    torch.nn.init.normal_(model.out[-1].weight, std=0.1)  # the zero-initialised output, opened
    x = torch.randn(3, 1, 28, 28)
    labels = torch.tensor([0, 1, 2])
    early, late = (
        model(x, torch.tensor([0, 0, 0]), labels),
        model(x, torch.tensor([900] * 3), labels),
    )
    assert early.shape == x.shape and not torch.allclose(early, late)
    with pytest.raises(ValueError, match="class-conditional"):
        model(x, torch.tensor([0, 0, 0]))


def test_a_short_seeded_run_lowers_the_loss_and_the_checkpoint_round_trips(tmp_path):
    recipe = trainer.recipe_for(SMOKE, steps=60, eval_every=60, batch_size=32, train_limit=512)
    run = trainer.train(recipe, torch.device("cpu"), progress=False, evaluate_fid=False)
    losses = run.history.metrics["loss"]  # every log_every steps
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:3]) / 3, losses
    path = tmp_path / "diffusion.safetensors"
    trainer.save_run(run, path, command="test")
    loaded = trainer.load(path)
    model, schedule, checkpoint = loaded.model, loaded.schedule, loaded.checkpoint
    assert schedule.steps == recipe.diffusion_steps and checkpoint.extra["schedule"] == "linear"
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([10, 500])
    with torch.no_grad():
        torch.testing.assert_close(model(x, t), run.model.eval()(x, t))


def test_the_recipe_checks_its_settings():
    with pytest.raises(SettingError, match="schedule must be one of linear, cosine"):
        trainer.recipe_for(SMOKE, schedule="quadratic")
    with pytest.raises(SettingError, match="fid_sampling_steps must be 1 to diffusion_steps"):
        trainer.recipe_for(SMOKE, fid_sampling_steps=0)


@pytest.mark.parametrize(
    "options, message",
    [
        (["--schedule", "quadratic"], "invalid choice: 'quadratic'"),
        (["--sampling-steps", "0"], "expected a whole number of at least 1, got '0'"),
        (["--diffusion-steps", "1"], "at least 2 steps"),
    ],
)
def test_cli_train_diffusion_rejects_bad_options(tmp_path, capsys, options, message):
    try:
        code = cli.main(
            ["train", "diffusion", "--profile", "smoke", "--out", str(tmp_path), *options]
        )
    except SystemExit as stop:  # argparse refuses a malformed option
        code = stop.code
    assert code != 0 and not any(tmp_path.iterdir())
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_clipping_keeps_the_implied_clean_image_in_range_and_leaves_a_perfect_prediction_alone():
    schedule = NoiseSchedule.make("linear", 1000)
    generator = torch.Generator().manual_seed(5)
    x0 = torch.rand(4, 1, 28, 28, generator=generator) * 2 - 1
    noise = torch.randn(x0.shape, generator=generator)
    t = 900
    x_t = diffusion.q_sample(x0, torch.full((4,), t), noise, schedule)
    torch.testing.assert_close(
        diffusion.clipped_noise(x_t, t, noise, schedule), noise, rtol=1e-3, atol=1e-3
    )
    wrong = noise + 0.5  # an imperfect network: its implied x0 leaves [-1, 1]
    corrected = diffusion.clipped_noise(x_t, t, wrong, schedule)
    a = schedule.alpha_bars[t].item()
    implied = (x_t - math.sqrt(1 - a) * corrected) / math.sqrt(a)
    assert implied.abs().max() <= 1 + 1e-4


def test_the_benchmark_trains_and_compares_the_samplers(monkeypatch, capsys):
    from tests.helpers import run_benchmark

    out = run_benchmark(
        "diffusion",
        "--profile", "smoke", "--train", "--samples", "16", "--sampling-steps", "2", "5",
        monkeypatch=monkeypatch,
        capsys=capsys,
    )  # fmt: skip
    rows = [line.split() for line in out.splitlines() if line.startswith("DDIM")]
    assert [(row[0], row[-4]) for row in rows] == [
        ("DDIM", "2"), ("DDIM,", "2"), ("DDIM", "5"), ("DDIM,", "5")
    ]  # fmt: skip
    assert not any(line.startswith("DDPM") for line in out.splitlines())  # only at all T steps
    assert "images/s (training)" in out and "16 samples per setting" in out


def test_the_discretised_decoder_gives_the_256_levels_probabilities_that_sum_to_one():
    levels = torch.linspace(-1, 1, 256, dtype=torch.float64).view(256, 1)
    for mean, std in ((0.3, 0.01), (-0.99, 0.2), (1.5, 0.05)):
        nll = diffusion.discretised_gaussian_nll(levels, torch.full_like(levels, mean), std)
        assert abs(torch.exp(-nll).sum().item() - 1) < 1e-9


class _Oracle(torch.nn.Module):
    """Knows the clean image, so it predicts the noise exactly: eps = (x_t - sqrt(a) x0) / sqrt(1 - a)."""

    def __init__(self, x0: torch.Tensor, schedule: NoiseSchedule) -> None:
        super().__init__()
        self.x0, self.schedule = x0, schedule
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.schedule.alpha_bars[t].view(-1, 1, 1, 1)
        x0 = self.x0.repeat(len(x_t) // len(self.x0), 1, 1, 1)  # several steps to a pass
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()


def test_the_variational_bound_of_an_exact_noise_predictor_is_its_variance_mismatch_alone():
    schedule = NoiseSchedule.make("linear", 20)
    x0 = (
        torch.randint(0, 256, (2, 1, 3, 3), generator=torch.Generator().manual_seed(0)) / 255 * 2
        - 1
    )
    terms = diffusion.variational_bound_terms(_Oracle(x0, schedule), schedule, x0, clip=False)
    assert terms.shape == (2, 21)
    b, a = schedule.betas.double(), schedule.alpha_bars.double()
    posterior_var = b[1:] * (1 - a[:-1]) / (1 - a[1:])
    # the means agree exactly; only the variances differ (beta_t against the posterior's)
    per_pixel = 0.5 * ((b[1:] / posterior_var).log() + posterior_var / b[1:] - 1)
    torch.testing.assert_close(terms[:, 1:20], (9 * per_pixel).expand(2, 19))
    # the decoder's mean is x0 itself: each pixel has the mass of its bin, edge bins reaching out
    half, std = 1 / 255, b[0].sqrt()
    normal = torch.distributions.Normal(0.0, 1.0)
    inside = normal.cdf(half / std) - normal.cdf(-half / std)
    edge = normal.cdf(half / std)
    x = x0.double().flatten(1)
    expected = -torch.where((x.abs() > 1 - half), edge.log(), inside.log()).sum(1)
    torch.testing.assert_close(terms[:, 0], expected)
    prior = 0.5 * (a[-1] * x**2 + (1 - a[-1]) - 1 - (1 - a[-1]).log()).sum(1)
    torch.testing.assert_close(terms[:, 20], prior)
    assert (terms >= 0).all()


def test_the_bound_takes_several_steps_to_a_pass_with_the_terms_of_one_step_at_a_time():
    """Small batches share a network pass between steps; the draws and the terms stay the same."""
    schedule = NoiseSchedule.make("linear", 7)
    model = UNet(UNetConfig(channels=8, groups=4)).eval()
    x0 = torch.randint(0, 256, (3, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    x0 = x0 / 255 * 2 - 1

    def terms(images_per_pass: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(1)
        return diffusion.variational_bound_terms(
            model, schedule, x0, generator, images_per_pass=images_per_pass
        )

    one_step_a_pass = terms(3)
    assert one_step_a_pass.shape == (3, 8) and (one_step_a_pass[:, 1:] >= 0).all()
    for images_per_pass in (6, 9, 64):  # 2 and 3 steps to a pass (the last pass shorter), all 7
        torch.testing.assert_close(terms(images_per_pass), one_step_a_pass, rtol=1e-5, atol=1e-6)
