"""Training by the clock: a run of ``minutes`` takes as many steps as fit, evaluations included,
and its learning-rate schedule follows the share of the time spent.

The loop is driven by a fake clock that the loss function advances, so these tests are exact and
never depend on this machine's speed.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from aigc_course import cli, training
from aigc_course.errors import SettingError
from aigc_course.training import RunClock, TrainConfig
from tests.helpers import require_data


class FakeClock:
    """``time.perf_counter`` for the training module: moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(training.time, "perf_counter", fake)
    return fake


def run_linear_model(
    clock, config, step_seconds=1.0, eval_seconds=0.0, lr_schedule=None, events=None
):
    """A tiny regression trained under ``config``; each step costs ``step_seconds`` of fake time,
    each evaluation ``eval_seconds``. ``events`` (a list) records "step", "eval" and "trained"."""
    events = [] if events is None else events
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    x, y = torch.randn(64, 3), torch.randn(64, 1)

    def batches():
        while True:
            yield x, y

    def loss_fn(m, batch):
        events.append("step")
        clock.now += step_seconds
        inputs, targets = batch
        return nn.functional.mse_loss(m(inputs), targets), {}

    def evaluate(m):
        events.append("eval")
        clock.now += eval_seconds
        return {"val_loss": nn.functional.mse_loss(m(x), y).item()}

    history = training.train(
        model,
        loss_fn,
        batches(),
        config,
        evaluate=evaluate,
        device=torch.device("cpu"),
        compile_model=False,
        progress=False,
        lr_schedule=lr_schedule,
        on_trained=lambda history: events.append(("trained", history.steps_done)),
    )
    return history, clock.now


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(steps=7, eval_every=3, log_every=2),
        TrainConfig(steps=6, eval_every=3, log_every=1),
        TrainConfig(minutes=0.5, eval_every=8, log_every=4),
        TrainConfig(minutes=0.5, eval_every=5, log_every=1),
    ],
    ids=["steps", "steps-eval-on-last", "timed", "timed-logged-last"],
)
def test_on_trained_comes_once_after_the_last_step_before_the_final_evaluation(clock, config):
    """The caller saves the weights there: an interrupt in the final evaluation loses only it."""
    events = []
    history, _ = run_linear_model(clock, config, eval_seconds=2.5, events=events)
    trained = [index for index, event in enumerate(events) if isinstance(event, tuple)]
    assert len(trained) == 1, events
    (at,) = trained
    assert events[at] == ("trained", history.steps_done)
    assert events[:at].count("step") == history.steps_done  # every step came before it
    assert events[at + 1 :] == ["eval"]  # the final evaluation, after it


def test_a_timed_run_takes_the_steps_that_fit_with_its_final_evaluation(clock):
    start = clock.now
    config = TrainConfig(steps=5, minutes=0.5, eval_every=8, log_every=4)  # 30 s
    history, end = run_linear_model(clock, config, step_seconds=1.0, eval_seconds=2.5)
    # An evaluation at the start (2.5 s) measures the cost kept free for the last one. A step
    # starts while time spent + 2.5 s < 30 s: after 20 steps and 3 evaluations 27.5 s are spent,
    # so the run stops there (more steps than `steps`), and its final evaluation ends at 30 s.
    assert history.steps_done == 20
    assert history.eval_steps == [0, 8, 16, 20]
    assert end - start == 30.0
    assert history.steps[-1] == 20 and history.examples == 20 * 64
    assert history.budget_minutes == 0.5


def test_a_timed_run_always_takes_one_step(clock):
    history, _ = run_linear_model(clock, TrainConfig(minutes=0.01), step_seconds=5.0)
    assert history.steps_done == 1 and history.eval_steps == [0, 1]


def test_a_run_by_steps_is_unchanged(clock):
    history, _ = run_linear_model(clock, TrainConfig(steps=7, eval_every=3, log_every=2))
    assert history.steps_done == 7
    assert history.eval_steps == [3, 6, 7], "no evaluation at the start without a budget"
    assert history.steps == [1, 2, 4, 6, 7]


def test_the_schedule_follows_the_clock_and_ends_annealed(clock):
    positions = []

    def schedule(index: int, total: int) -> float:
        positions.append((index, total))
        return training.warmup_cosine(index, 1e-2, total // 10, total, 1e-4)

    config = TrainConfig(minutes=1, log_every=1, eval_every=1000)
    history, _ = run_linear_model(clock, config, step_seconds=1.0, lr_schedule=schedule)
    assert history.steps_done == 60
    grid = training.SCHEDULE_RESOLUTION
    assert positions[0] == (0, grid) and all(total == grid for _, total in positions)
    # The schedule's time begins when the first step ends (1 s in): step s >= 2 starts s - 1
    # seconds in, so its position is (s - 2) / 59 of the grid.
    expected = [0] + [int((s - 2) / 59 * grid) for s in range(2, 61)]
    assert [index for index, _ in positions] == expected
    learning_rates = history.metrics["lr"]
    assert max(learning_rates) == pytest.approx(1e-2, rel=1e-3)
    assert learning_rates[-1] < 2e-4, "annealed to near its floor when the time is up"


def test_a_budget_ends_at_max_steps_where_the_data_is_the_limit(clock):
    """A model that overfits its data after ``max_steps`` gains nothing from more minutes: the run
    ends there with time left, and its schedule, on the nearer end (here the steps'), has annealed."""
    positions = []

    def schedule(index: int, total: int) -> float:
        positions.append((index, total))
        return training.warmup_cosine(index, 1e-2, total // 10, total, 1e-4)

    config = TrainConfig(minutes=1, max_steps=12, log_every=1, eval_every=1000)
    history, end = run_linear_model(clock, config, step_seconds=1.0, lr_schedule=schedule)
    assert history.steps_done == 12 and end - 100.0 == 12.0, "12 of the 60 seconds, then stop"
    grid = training.SCHEDULE_RESOLUTION
    # Step s is (s - 1) / 12 of the way through by its steps, far ahead of (s - 1) / 60 by time.
    assert [index for index, _ in positions] == [int((s - 1) / 12 * grid) for s in range(1, 13)]
    assert history.metrics["lr"][-1] < 5e-4, "annealed by the last step"
    assert history.eval_steps == [0, 12]


def test_the_summary_says_when_a_budget_ended_at_the_recipes_limit():
    """A learner who asked for 10 minutes and got 85 seconds is told why."""
    from types import SimpleNamespace

    recipe = SimpleNamespace(train=TrainConfig(minutes=10, max_steps=2_500))
    metrics = {"images_per_second": 1.0, "train_seconds": 85.0}

    def steps_row(done: int) -> str:
        history = training.History(steps_done=done, budget_minutes=10)
        return training.training_rows(training.Run(nn.Linear(1, 1), recipe, history, metrics))[
            "steps"
        ]

    assert steps_row(2_500) == (
        "2,500 in a budget of 10 min: the recipe's limit, where more steps stop paying (the "
        "data, not the time, runs out)"
    )
    assert steps_row(2_499) == "2,499 in a budget of 10 min"


def test_a_slow_first_step_does_not_push_the_schedule_past_its_warm_up(clock):
    """torch.compile compiles inside the first step (25-35 s for the gpu GPT on an H200): the
    schedule's share of the budget is counted from the end of that step, so the warm-up still
    happens, step by step, after it."""
    positions = []
    durations = iter([20.0] + [1.0] * 1000)  # the first step compiles

    def loss_fn(m, batch):
        clock.now += next(durations)
        return nn.functional.mse_loss(m(batch[0]), batch[1]), {}

    training.train(
        nn.Linear(3, 1),
        loss_fn,
        iter(lambda: (torch.randn(4, 3), torch.randn(4, 1)), None),
        TrainConfig(minutes=1, log_every=1000, eval_every=1000),
        device=torch.device("cpu"),
        compile_model=False,
        progress=False,
        lr_schedule=lambda index, total: positions.append(index) or 1e-3,
    )
    grid = training.SCHEDULE_RESOLUTION
    assert len(positions) == 41, "the first step (20 s), then 40 steps of 1 s"
    # Step s >= 2 starts 20 + (s - 2) seconds in: (s - 2) / 40 of the 40 seconds left.
    assert positions[:4] == [0, 0, grid // 40, 2 * grid // 40]


def test_the_last_step_of_max_steps_is_known_as_the_last(clock):
    """The weights are handed over (saved) before the final evaluation, as in a run by steps."""
    events = []
    config = TrainConfig(minutes=1, max_steps=6, eval_every=3, log_every=1)
    history, _ = run_linear_model(clock, config, eval_seconds=0.5, events=events)
    assert history.steps_done == 6 and history.eval_steps == [0, 3, 6]
    assert events[-2:] == [("trained", 6), "eval"]


def test_max_steps_stays_out_of_a_run_by_steps_and_of_a_budget_that_ends_first(clock):
    by_steps, _ = run_linear_model(clock, TrainConfig(steps=7, max_steps=3))
    assert by_steps.steps_done == 7, "a run by steps takes its steps"
    timed, _ = run_linear_model(clock, TrainConfig(minutes=0.25, max_steps=100, log_every=1))
    assert timed.steps_done == 15, "the time's end came first"


def test_a_bad_max_steps_or_compile_mode_is_refused():
    with pytest.raises(SettingError, match="max_steps"):
        TrainConfig(max_steps=0)
    with pytest.raises(SettingError, match="reduce-overhead"):
        TrainConfig(compile_mode="fastest")


@pytest.mark.parametrize(
    ("config", "mode"),
    [
        (TrainConfig(steps=1, compile_mode="reduce-overhead"), "reduce-overhead"),
        (TrainConfig(steps=1), None),
        (TrainConfig(steps=1, compile_mode="reduce-overhead", accumulation_steps=2), None),
    ],
    ids=["recipe-mode", "default", "micro-batches-keep-the-default"],
)
def test_the_recipe_names_the_compile_mode(monkeypatch, config, mode):
    """CUDA graphs are the gpu GPT's mode (measured: 1.58x its steady tokens/s on an H200), passed
    to torch.compile where the loop compiles; with micro-batches, not measured, the default stays."""
    seen = []
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: seen.append(kwargs) or model)
    monkeypatch.delenv("AIGC_COMPILE_MODE", raising=False)
    model = nn.Linear(3, 1)
    batch = (torch.randn(4, 3), torch.randn(4, 1))
    training.train(
        model,
        lambda m, b: (nn.functional.mse_loss(m(b[0]), b[1]), {}),
        iter([batch] * 2),
        config,
        device=torch.device("cpu"),
        compile_model=True,
        progress=False,
    )
    assert seen == [{"mode": mode}]


def test_by_steps_the_schedule_gets_the_step_index_and_count(clock):
    positions = []
    run_linear_model(
        clock,
        TrainConfig(steps=4),
        lr_schedule=lambda index, total: positions.append((index, total)) or 1e-3,
    )
    assert positions == [(0, 4), (1, 4), (2, 4), (3, 4)]


def test_run_clock_refuses_a_bad_budget():
    for minutes in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(SettingError, match="minutes"):
            TrainConfig(minutes=minutes)
    assert not RunClock(TrainConfig()).timed and RunClock(TrainConfig(minutes=2)).budget == 120


def test_cli_trains_by_the_clock_and_records_it(tmp_path, capsys):
    from safetensors import safe_open

    require_data("tinyshakespeare")
    argv = ["train", "gpt", "--profile", "smoke", "--minutes", "0.05", "--quiet"]
    assert cli.main([*argv, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "0.05 minutes of steps of 8 sequences" in out
    assert "in a budget of 0.05 min" in out
    with safe_open(str(tmp_path / "gpt.safetensors"), framework="pt") as handle:
        extra = json.loads(handle.metadata()["extra"])
    assert extra["minutes"] == 0.05 and extra["steps"] >= 1
    assert extra["examples"] == extra["steps"] * 8
    with pytest.raises(SystemExit):
        cli.main([*argv, "--steps", "3"])  # a run is bounded by steps or by minutes, not both
    assert "not allowed with argument" in capsys.readouterr().err


def test_the_sweep_script_prints_a_row_per_candidate_and_budget(monkeypatch, capsys):
    from tests.helpers import run_benchmark

    require_data("tinyshakespeare")
    out = run_benchmark(
        "sweep", "--minutes", "0.01", "--candidates", "recipe", "3layers-ctx64",
        "--scorer", "blocks", "--eval-characters", "4096", monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    rows = [line for line in out.splitlines() if line.startswith("| recipe |")]
    rows += [line for line in out.splitlines() if line.startswith("| 3layers-ctx64 |")]
    assert len(rows) == 2 and all("| 0.01 |" in row for row in rows), out
    loss = float(rows[0].split("|")[8])
    assert 0 < loss < 6, "a scored run: a loss in nats per character (ln 65 = 4.17 untrained)"
    assert "CPU matmul [GFLOP/s, fp32 512x512]" in out


def test_the_sweep_candidates_keep_their_meaning_when_the_step_recipe_changes(monkeypatch):
    """RESULTS.md's GPT tables name candidates as changes to the cpu recipe of their day (batch
    32, lr 2e-3, 2,000 steps). Pinned in the sweep, the names keep their meaning when the step
    recipe changes; ``pretrained`` is the step recipe of the day, and on another profile the
    candidates change that profile's recipe alone."""
    import runpy

    from aigc_course import runtime
    from aigc_course.trainers import gpt
    from tests.helpers import ROOT

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    sweep = runpy.run_path(str(ROOT / "benchmarks" / "sweep.py"))
    cpu, smoke = runtime.get_profile("cpu"), runtime.get_profile("smoke")

    def candidate(name, profile=cpu, **length):
        return sweep["candidate_recipe"](
            gpt, profile, name, sweep["CANDIDATES"], length, sweep["GPT_SWEEP_BASE"]
        )

    recipe, batch16 = candidate("recipe"), candidate("batch16", minutes=3.0)
    assert (recipe.batch_size, recipe.train.lr, recipe.train.steps) == (32, 2e-3, 2_000)
    assert recipe.model == gpt.recipe_for(cpu).model  # the pinned base changes no shape
    assert (batch16.batch_size, batch16.train.lr, batch16.train.minutes) == (16, 2e-3, 3.0)
    assert candidate("pretrained") == gpt.recipe_for(cpu)
    assert candidate("batch16-lr3e-3").train.lr == 3e-3 != recipe.train.lr
    assert candidate("recipe", smoke) == gpt.recipe_for(smoke)


@pytest.mark.parametrize("lesson", ["06_vae", "07_gan"])
def test_the_live_runs_of_the_model_lessons_go_by_the_clock_on_the_cpu_profile(lesson):
    """Every cell that sets a cpu step count for a live run also gives it a cpu time budget, so the
    lesson takes the same minutes on every laptop (the train-it-yourself cells reproduce the
    pretrained run by steps, and lesson 08's ablation compares ingredients at equal steps)."""
    import re

    import nbformat

    from tests.helpers import ROOT

    notebook = nbformat.read(ROOT / "notebooks" / f"{lesson}.ipynb", as_version=4)
    cells = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    live = [
        source for source in cells if re.search(r"steps\w* = profile\.select|steps=profile", source)
    ]
    assert len(live) >= 3, "the lesson's live runs"
    for source in live:
        budget = re.search(
            r"(?:minutes\w*|budget)\s*=\s*profile\.select\(smoke=None, cpu=([\d.]+), gpu=None\)",
            source,
        )
        assert budget, f"a live run without a cpu time budget:\n{source[:300]}"
        assert 0 < float(budget.group(1)) <= 2.5


def test_timed_ranks_agree_every_few_steps_not_every_step(clock, monkeypatch):
    """In a timed data-parallel run rank 0's clock decides; each agreement is a broadcast (a wait
    for the device), so there is one every AGREE_EVERY steps at most, yet the run ends on time and
    the schedule's position still moves at every step."""
    from aigc_course import distributed

    sent = []

    def broadcast(values, device, world):
        sent.append(list(values))
        return list(values)

    monkeypatch.setattr(distributed, "broadcast_floats", broadcast)
    run_clock = RunClock(TrainConfig(minutes=0.5), world=distributed.World(0, 2, 0, True))
    positions = []
    for step in run_clock:
        clock.now += 1.0  # each step takes one second of the 30
        positions.append(run_clock.position(step)[0])
    single = RunClock(TrainConfig(minutes=0.5))
    steps_alone = sum(1 for _ in single if not setattr(clock, "now", clock.now + 1.0))
    assert run_clock.done == steps_alone == 30, "the same steps as one process"
    assert len(sent) <= 2 + run_clock.done // training.AGREE_EVERY + 1
    assert all(0 < count <= training.AGREE_EVERY for count, _, _ in sent[:-1])
    assert sent[-1][0] == 0, "the last agreement: stop"
    # Steps 1 and 2 both start the schedule (its time begins when the first step ends); from
    # there every step moves it on.
    assert positions == sorted(positions) and positions[:2] == [0, 0]
    assert len(set(positions[1:])) == len(positions) - 1
    assert positions[-1] < training.SCHEDULE_RESOLUTION


def test_the_loop_reads_nothing_from_the_device_between_logged_steps(monkeypatch):
    """On a GPU, reading a tensor on the host (``.item()``, ``float()``, ``bool()``, ``tolist()``)
    waits for every queued kernel. The course's loop and step read the loss, the gradient norm and
    the check for NaN only on logged steps; the steps between them queue freely."""
    reads_by_step: list[int] = []
    reads = {"count": 0}

    def counting(method):
        def wrapper(self, *args, **kwargs):
            caller = __import__("sys")._getframe(1).f_globals.get("__name__", "")
            if caller.startswith("aigc_course"):  # not PyTorch's own bookkeeping
                reads["count"] += 1
            return method(self, *args, **kwargs)

        return wrapper

    for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, counting(getattr(torch.Tensor, name)))
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    x, y = torch.randn(16, 3), torch.randn(16, 1)

    def loss_fn(m, batch):
        reads_by_step.append(reads["count"])
        return nn.functional.mse_loss(m(batch[0]), batch[1]), {"scale": batch[1].abs().mean()}

    config = TrainConfig(steps=24, log_every=8, grad_clip=1.0)
    history = training.train(
        model, loss_fn, iter(lambda: (x, y), None), config,
        device=torch.device("cpu"), compile_model=False, progress=False,
    )  # fmt: skip
    per_step = [b - a for a, b in zip(reads_by_step, reads_by_step[1:], strict=False)]
    logged = set(history.steps)
    assert history.steps == [1, 8, 16, 24]
    quiet = [count for step, count in enumerate(per_step, 1) if step not in logged]
    assert quiet == [0] * len(quiet), per_step  # steps 2-7, 9-15, 17-23: no read at all
    assert all(per_step[step - 1] > 0 for step in (1, 8, 16)), "the logged steps read the loss"
    assert set(history.metrics) >= {"loss", "grad_norm", "scale"}
    assert all(isinstance(value, float) for value in history.metrics["grad_norm"])


def test_a_nan_loss_is_reported_at_its_own_step_once_read(monkeypatch):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    steps = iter(range(1, 100))

    def loss_fn(m, batch):
        loss = nn.functional.mse_loss(m(batch[0]), batch[1])
        return (loss * float("nan") if next(steps) == 5 else loss), {}

    config = TrainConfig(steps=24, log_every=8)
    with pytest.raises(training.NonFiniteLossError, match=r"became nan at step 5; training"):
        training.train(
            model, loss_fn, iter(lambda: (x, y), None), config,
            device=torch.device("cpu"), compile_model=False, progress=False,
            on_trained=lambda history: pytest.fail("a diverged run is not handed over"),
        )  # fmt: skip


def test_the_history_records_when_each_logged_step_and_evaluation_happened(clock):
    """Lesson 08 plots loss against seconds: each logged step and each evaluation carries the run's
    time (the fake clock: one second a step, 2.5 s an evaluation)."""
    config = TrainConfig(steps=6, eval_every=3, log_every=2)
    history, _ = run_linear_model(clock, config, step_seconds=1.0, eval_seconds=2.5)
    assert history.steps == [1, 2, 4, 6]
    assert history.step_seconds == [1.0, 2.0, 6.5, 8.5]  # the evaluation after step 3 took 2.5 s
    assert history.eval_steps == [3, 6] and history.eval_seconds == [3.0, 8.5]
