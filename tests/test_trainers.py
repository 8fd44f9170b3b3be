"""The one trainer interface: every trainer module has it, recipes take overrides where they live
(and refuse unknown ones), and runs save and load through the same helpers."""

from __future__ import annotations

import importlib

import pytest
import torch

from aigc_course import checkpoints, cli, runtime, training
from aigc_course.errors import SettingError
from aigc_course.models.gpt import GPT, GPTConfig
from aigc_course.training import TrainConfig
from tests.helpers import ROOT, require

TRAINER_MODULES = {name: importlib.import_module(t.module) for name, t in cli.TRAINERS.items()}
INTERFACE = ("recipe_for", "train", "save_run", "load", "describe", "summary", "checkpoint_name")


@pytest.mark.parametrize("name", sorted(TRAINER_MODULES))
@pytest.mark.parametrize("profile", runtime.PROFILE_NAMES)
def test_every_trainer_has_the_one_interface(name, profile):
    trainer = TRAINER_MODULES[name]
    missing = [function for function in INTERFACE if not callable(getattr(trainer, function, None))]
    assert missing == []
    recipe = trainer.recipe_for(runtime.Profile(profile))
    assert isinstance(recipe.train, TrainConfig)
    assert recipe.batch_size > 0 and recipe.train.steps > 0
    assert callable(getattr(recipe.model, "to_dict", None)), "the model config is saved as a dict"
    assert str(recipe.train.steps) in trainer.describe(recipe)
    assert isinstance(trainer.checkpoint_name(recipe), str)


def test_override_puts_each_setting_where_it_lives():
    trainer = TRAINER_MODULES["vae"]
    base = trainer.recipe_for(runtime.Profile("smoke"))
    recipe = trainer.recipe_for(
        runtime.Profile("smoke"), steps=7, lr=5e-4, latent_dim=2, beta=4.0, batch_size=None
    )
    assert (recipe.train.steps, recipe.train.lr) == (7, 5e-4)
    assert recipe.model.latent_dim == 2 and recipe.beta == 4.0
    assert recipe.batch_size == base.batch_size, "None keeps the profile's value"
    assert recipe.train.eval_every == base.train.eval_every


@pytest.mark.parametrize("name", sorted(TRAINER_MODULES))
def test_override_refuses_a_setting_that_does_not_exist(name):
    with pytest.raises(ValueError, match="no setting 'bogus'.*steps"):
        TRAINER_MODULES[name].recipe_for(runtime.Profile("smoke"), bogus=1)


def test_gpt_weight_decay_is_the_train_config_s_and_reaches_the_optimizer():
    trainer = TRAINER_MODULES["gpt"]
    recipe = trainer.recipe_for(runtime.Profile("smoke"), weight_decay=0.05)
    assert recipe.train.weight_decay == 0.05
    assert not hasattr(recipe, "weight_decay"), "one place for one setting"


def test_learning_rate_schedule_anneals_to_its_floor():
    rates = [training.warmup_cosine(step, 1.0, 10, 100, 0.1) for step in range(120)]
    assert rates[9] == pytest.approx(1.0) and rates[0] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(rates[10:100], rates[11:101], strict=True)), "decays"
    assert rates[55] == pytest.approx(0.55), "half-way down: (0.1 + 1.0) / 2"
    assert rates[100:] == [0.1] * 20


def test_classifier_trains_honours_its_batch_size_and_round_trips(tmp_path):
    from aigc_course import data

    require(
        all(s.ready for s in data.dataset_status(["fashion-mnist"])), "Fashion-MNIST is missing"
    )
    trainer = TRAINER_MODULES["classifier"]
    recipe = trainer.recipe_for(runtime.Profile("smoke"), steps=15, batch_size=16)
    run = trainer.train(recipe, device=torch.device("cpu"), progress=False)
    assert run.history.examples == 15 * 16, "--batch-size is honoured"
    assert run.metrics["test_accuracy"] > 0.2, "15 steps already beat chance (0.1): 0.33 seeded"
    path = tmp_path / "classifier.safetensors"
    digest = trainer.save_run(run, path, "test")
    restored = trainer.load(path, expected_sha256=digest)
    loaded, checkpoint = restored.model, restored.checkpoint
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(loaded(x), run.model.eval()(x), rtol=0, atol=0)
    assert checkpoint.extra["steps"] == 15 and checkpoint.extra["batch_size"] == 16


def test_loading_a_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=8))
    path = tmp_path / "gpt.safetensors"
    checkpoints.save(path, model, model.config.to_dict())
    with pytest.raises(checkpoints.CheckpointError, match="holds a GPT model, not a VAE"):
        TRAINER_MODULES["vae"].load(path)
    with pytest.raises(checkpoints.CheckpointError, match="no tokenizer"):
        TRAINER_MODULES["gpt"].load(path)


QUICK_TRAINING = {  # each trainer's cheapest run: no FID, no test set where it can be skipped
    "classifier": {},
    "vae": {"test_evaluation": False},
    "gan": {"evaluate_fid": False},
    "diffusion": {"evaluate_fid": False},
    "gpt": {},
    "finetune": {},
}


@pytest.mark.parametrize("name", sorted(TRAINER_MODULES))
def test_every_trainer_hands_over_its_trained_model_before_the_final_evaluation(name, tmp_path):
    """``on_trained`` gets the run once, with the final weights and the training figures, and the
    trainer's ``save_run`` can save it (what ``aigc-course train`` does before evaluating)."""
    from aigc_course import data

    require(
        all(s.ready for s in data.dataset_status(["fashion-mnist", "tinyshakespeare"])),
        "a data set is missing",
    )
    assert set(QUICK_TRAINING) == set(TRAINER_MODULES), "a new trainer: add its quick run"
    trainer = TRAINER_MODULES[name]
    recipe = trainer.recipe_for(runtime.Profile("smoke"), steps=3)
    handed = []

    def on_trained(run):
        handed.append((run, {k: v.clone() for k, v in run.model.state_dict().items()}))

    run = trainer.train(
        recipe, torch.device("cpu"), progress=False, on_trained=on_trained, **QUICK_TRAINING[name]
    )
    assert len(handed) == 1
    early, weights = handed[0]
    assert early.model is run.model and early.history.steps_done == 3
    assert early.metrics["train_seconds"] > 0
    for key, value in run.model.state_dict().items():  # the evaluation changed no weight
        torch.testing.assert_close(weights[key], value, rtol=0, atol=0)
    digest = trainer.save_run(early, tmp_path / "early.safetensors", "test")
    assert checkpoints.load(tmp_path / "early.safetensors").extra["steps"] == 3
    assert digest


def test_a_cpu_run_by_the_clock_starts_from_the_recipe_measured_for_its_budget():
    """``train gpt --minutes M`` on the cpu profile trains the best recipe measured for M minutes
    (its row of CPU_BUDGETS), not the step-count recipe cut short; a learner's option still wins,
    and a run by steps or on another profile is unchanged."""
    from aigc_course import runtime
    from aigc_course.trainers import gpt

    cpu, gpu = runtime.get_profile("cpu"), runtime.get_profile("gpu")
    (row,) = [row for row in gpt.CPU_BUDGETS if 2.0 <= row.up_to_minutes][:1]
    timed = gpt.recipe_for(cpu, minutes=2.0)
    for name, value in row.changes.items():
        assert {**timed.model.__dict__, **timed.train.__dict__, **timed.__dict__}[name] == value
    assert gpt.recipe_for(cpu, minutes=2.0, batch_size=40).batch_size == 40
    assert gpt.recipe_for(cpu) == gpt.recipe_for(cpu, steps=4_000)
    assert gpt.recipe_for(cpu).model.block_size != timed.model.block_size
    beyond = max(row.up_to_minutes for row in gpt.CPU_BUDGETS) + 1
    assert gpt.recipe_for(cpu, minutes=beyond).model == gpt.recipe_for(cpu).model
    assert gpt.recipe_for(gpu, minutes=2.0).model == gpt.recipe_for(gpu).model


def test_a_gpu_gpt_run_stops_where_the_data_stops_being_the_limit():
    """On a GPU the baby GPT overfits Tiny Shakespeare after about 2,000 steps (one H200: lowest
    validation loss at 1,750-2,000 of 2,500, and 1.74 after 6,200 steps of a 2.8-minute budget):
    a run by the clock ends at the step recipe's length however many minutes it is given, and the
    recipe compiles with CUDA graphs; the cpu recipes, compute-bound, have no such limit."""
    from aigc_course import runtime
    from aigc_course.trainers import gpt

    cpu, gpu = runtime.get_profile("cpu"), runtime.get_profile("gpu")
    for minutes in (None, 1.0, 10.0):
        train = gpt.recipe_for(gpu, minutes=minutes).train
        assert train.max_steps == train.steps == 2_500 and train.minutes == minutes
        assert train.compile_mode == "reduce-overhead"
    assert gpt.recipe_for(cpu, minutes=2.0).train.max_steps is None
    assert gpt.recipe_for(cpu).train.compile_mode is None


def test_a_cpu_vae_run_by_the_clock_trains_the_mlp_up_to_10_minutes():
    """On two CPU cores the MLP's cheap steps reach the better bound up to 10 minutes (RESULTS.md):
    a cpu run by the clock within that budget trains it (784-400-20), unless the learner names the
    network; by steps, beyond 10 minutes and on the other profiles, the conv VAE."""
    from aigc_course.models.vae import MLPVAEConfig, VAEConfig
    from aigc_course.trainers import vae

    cpu, gpu, smoke = (runtime.get_profile(name) for name in ("cpu", "gpu", "smoke"))
    for minutes in (0.5, 1.0, 3.0, 10.0):
        recipe = vae.recipe_for(cpu, minutes=minutes)
        assert recipe.network == "mlp" and recipe.model == MLPVAEConfig(), minutes
    assert vae.recipe_for(cpu, minutes=1.0, latent_dim=2).model == MLPVAEConfig(latent_dim=2)
    for recipe in (
        vae.recipe_for(cpu),
        vae.recipe_for(cpu, minutes=10.5),
        vae.recipe_for(cpu, minutes=1.0, network="conv"),
        vae.recipe_for(gpu, minutes=1.0),
        vae.recipe_for(smoke, minutes=1.0),
    ):
        assert recipe.network == "conv" and recipe.model == VAEConfig()
    assert vae.recipe_for(cpu, minutes=1.0, network="conv", latent_dim=2).model == VAEConfig(
        latent_dim=2
    )
    assert vae.recipe_for(cpu, network="mlp").model == MLPVAEConfig()
    with pytest.raises(
        SettingError, match=r"channels=\(16, 32\) set for the conv VAE.*--network conv"
    ):
        vae.recipe_for(cpu, minutes=5.0, channels=(16, 32))
    assert vae.recipe_for(cpu, minutes=5.0, channels=(16, 32), network="conv").model.channels == (
        16,
        32,
    )
    assert vae.describe(vae.recipe_for(cpu, minutes=1.0)).startswith("MLP, latent 20")


def test_a_short_cpu_vae_run_by_the_clock_decays_a_larger_rate():
    """Up to 10 minutes the MLP VAE trains at 5e-3 decayed to 0 with the clock (RESULTS.md, "The
    MLP VAE's learning rate by the clock"); longer, by steps and for the conv VAE a constant 1e-3.
    The row is one measurement: naming the conv VAE leaves all of it out; a learner's rate or
    decay still wins."""
    from aigc_course.trainers import vae

    cpu = runtime.get_profile("cpu")

    def course(recipe):
        return recipe.network, recipe.train.lr, recipe.lr_decay

    for minutes in (0.5, 1.0, 3.0, 10.0):
        assert course(vae.recipe_for(cpu, minutes=minutes)) == ("mlp", 5e-3, "cosine"), minutes
        assert course(vae.recipe_for(cpu, minutes=minutes, network="mlp"))[1:] == (5e-3, "cosine")
    assert course(vae.recipe_for(cpu, minutes=10.5)) == ("conv", 1e-3, "constant")
    assert course(vae.recipe_for(cpu)) == ("conv", 1e-3, "constant")
    assert course(vae.recipe_for(cpu, minutes=1.0, network="conv")) == ("conv", 1e-3, "constant")
    assert course(vae.recipe_for(cpu, minutes=1.0, lr=1e-3)) == ("mlp", 1e-3, "cosine")
    assert vae.recipe_for(cpu, minutes=1.0, lr_decay="constant").lr_decay == "constant"
    assert "learning rate 0.005 with a cosine decay" in vae.describe(vae.recipe_for(cpu, minutes=1))
    with pytest.raises(SettingError, match="lr_decay"):
        vae.recipe_for(cpu, lr_decay="linear")


def test_the_cpu_dcgan_is_the_recipe_the_sweep_chose_by_steps_and_by_the_clock():
    """The cpu profile's DCGAN is the one the sweep chose (RESULTS.md, "DCGAN recipes per
    CPU-minute"): 32 channels at Adam's lr 1e-3, 4000 steps; by the clock it trains
    the same network; a learner's option still wins; the class-conditional GAN keeps the paper's
    64 channels at 2e-4, and the gpu profile its own."""
    from aigc_course.trainers import gan

    cpu, gpu = runtime.get_profile("cpu"), runtime.get_profile("gpu")
    recipe = gan.recipe_for(cpu)
    assert (recipe.model.channels, recipe.train.lr, recipe.train.steps) == (32, 1e-3, 4000)
    assert "DCGAN recipes per CPU-minute" in (ROOT / "benchmarks" / "RESULTS.md").read_text()
    for minutes in (0.5, 5.0, 30.0):
        timed = gan.recipe_for(cpu, minutes=minutes)
        assert (timed.model, timed.train.lr, timed.train.minutes) == (recipe.model, 1e-3, minutes)
    assert gan.recipe_for(cpu, minutes=5.0, channels=48).model.channels == 48
    assert gan.recipe_for(cpu, minutes=5.0, lr=1e-4).train.lr == 1e-4
    conditional = gan.recipe_for(cpu, conditional=True, minutes=1.0)
    assert (conditional.model.channels, conditional.train.lr) == (64, 2e-4)
    assert gan.recipe_for(gpu).model.channels == 128
    assert gan.describe(gan.recipe_for(cpu, minutes=5.0)).startswith("32 channels")


def test_each_budget_row_names_the_measurement_that_chose_it():
    from aigc_course.trainers import gpt

    results = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    sections = [line for line in results.splitlines() if line.startswith("#")]
    from aigc_course.trainers import vae

    for row in (*gpt.CPU_BUDGETS, *vae.CPU_BUDGETS):
        assert row.measured and any(row.measured in title for title in sections), row


def test_lesson_08s_race_names_each_shape_as_its_recipe_is():
    """The race's labels are what the learner reads in the plot: each must describe its recipe
    (the cheap shape comes from the budget table, so a new table row cannot leave a stale label)."""
    from aigc_course.lessons import lesson08
    from aigc_course.trainers import gpt

    cpu = runtime.get_profile("cpu")
    for name, changes in lesson08.SHAPES.items():
        recipe = gpt.recipe_for(cpu, **changes)
        c = recipe.model
        assert name == (
            f"{c.n_layer} layers x {c.n_embd}, context {c.block_size}, batch {recipe.batch_size}"
        )


def _choice_settings(recipe) -> list[tuple[str, object]]:
    """``(name, the dataclass holding it)`` for every setting of ``recipe`` declared with choices."""
    parts = (recipe, recipe.train, recipe.model)
    return [
        (name, next(part for part in parts if hasattr(part, name)))
        for name, option, _ in training.command_options(recipe)
        if option.choices is not None
    ]


@pytest.mark.parametrize("name", sorted(TRAINER_MODULES))
def test_a_setting_with_choices_refuses_any_other_value_however_it_is_given(name):
    """Every setting that offers choices on the command line refuses another value given in
    Python too, through ``recipe_for`` or built straight into the dataclass, with one message."""
    import dataclasses

    trainer = TRAINER_MODULES[name]
    recipe = trainer.recipe_for(runtime.get_profile("smoke"))
    for setting_name, holder in _choice_settings(recipe):
        message = f"{setting_name} must be one of .*, got 'nonsense'"
        with pytest.raises(SettingError, match=message):
            trainer.recipe_for(runtime.get_profile("smoke"), **{setting_name: "nonsense"})
        with pytest.raises(SettingError, match=message):
            dataclasses.replace(holder, **{setting_name: "nonsense"})


def test_the_trainers_offer_settings_with_choices():
    """The test above has something to check: the VAE, diffusion and fine-tune recipes offer
    choices (network, lr_decay, schedule, method, targets, data)."""
    names = {
        setting_name
        for trainer in TRAINER_MODULES.values()
        for setting_name, _ in _choice_settings(trainer.recipe_for(runtime.get_profile("smoke")))
    }
    assert {"network", "lr_decay", "schedule", "method", "targets", "data"} <= names


def test_a_gpt_peak_rate_of_ones_own_scales_the_floor_and_keeps_the_schedules_shape():
    """``--lr`` (``recipe_for(lr=...)``): the floor ``min_lr`` keeps its ratio to the peak, so a
    peak below the recipe's floor still warms up, then decays (never upwards to the old floor);
    a floor given too is kept; the budget rows' own rates leave the floor alone."""
    from aigc_course.trainers import gpt

    smoke, cpu = runtime.get_profile("smoke"), runtime.get_profile("cpu")
    base = gpt.recipe_for(smoke)
    low = gpt.recipe_for(smoke, lr=base.min_lr / 3)
    assert low.min_lr == pytest.approx(base.min_lr * low.train.lr / base.train.lr)
    assert gpt.recipe_for(smoke, lr=1e-4, min_lr=5e-5).min_lr == 5e-5
    assert gpt.recipe_for(cpu, minutes=1.0).min_lr == gpt.recipe_for(cpu).min_lr
    steps = low.train.steps
    rates = [gpt.learning_rate_schedule(low)(index, steps) for index in range(steps)]
    peak = rates.index(max(rates))
    assert max(rates) == pytest.approx(low.train.lr) and 0 < peak < steps - 1
    assert all(b <= a for a, b in zip(rates[peak:], rates[peak + 1 :], strict=False))
    assert rates[-1] < low.train.lr / 5, "decays towards the scaled floor, a tenth of the peak"
