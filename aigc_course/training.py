"""The training loop every model shares, and the parts every trainer module shares.

:func:`train` does for every model what the lessons should not have to show: device placement,
mixed precision per :mod:`aigc_course.runtime` (bf16 autocast, or fp16 with a gradient scaler),
``torch.compile`` where it works, gradient clipping, a ``tqdm`` progress bar, periodic evaluation,
and a loss that becomes NaN or infinite stops the run at once with a message that names the step
and what to try. A model provides ``loss_fn(model, batch) -> (loss, metrics)``: a scalar to
minimise and a dict of floats to log.

Every trainer module in :mod:`aigc_course.trainers` has the same interface, built on the pieces
here: a recipe dataclass holding ``model`` (the model's config), ``train`` (a :class:`TrainConfig`)
and ``batch_size``; ``recipe_for(profile, **overrides)`` (overrides go through :func:`override`);
``train(recipe, device, progress)`` returning a :class:`Run`; ``save_run(run, path, command)``
(:func:`save_run`) and ``load(path)`` (:func:`aigc_course.checkpoints.load_model`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from tqdm.auto import tqdm

from aigc_course import checkpoints, distributed, runtime, settings
from aigc_course.errors import CourseError, SettingError
from aigc_course.i18n import N_, _
from aigc_course.validators import CommandOption

R = TypeVar("R")


class NonFiniteLossError(CourseError, RuntimeError):
    """The loss became NaN or infinite; training stopped."""


@dataclass(frozen=True)
class TrainConfig:
    """How long and how fast to train.

    A run takes ``steps`` steps, or, when ``minutes`` is set, as many steps as fit in that much
    wall-clock time (evaluations included): the same minutes on every machine, a faster machine
    taking more steps. The learning-rate schedule then runs on the share of the time spent, so the
    run ends annealed when the time is up (see :class:`RunClock`). ``steps`` stays the way to
    reproduce a run exactly.

    ``max_steps`` ends a run by the clock there even with time left: where the data, not the
    compute, is the limit (a model that overfits its data after that many steps, as the gpu GPT
    does Tiny Shakespeare on one H200 after about 2,000), more minutes buy nothing; the schedule
    then runs on whichever end is nearer, the time's or the steps'. None: no such limit.

    ``accumulation_steps`` splits each step's batch into that many micro-batches whose gradients
    add up before the one update: the same step with less memory (``docs/SCALING.md``).

    ``compile_mode`` is the recipe's ``torch.compile`` mode where the model is compiled (e.g.
    ``reduce-overhead``: CUDA graphs, for a small model whose steps are kernel launches); None:
    PyTorch's default. A data-parallel run or one with micro-batches does not take the recipe's
    mode (CUDA graphs are measured for neither); ``AIGC_COMPILE_MODE``, the user's own choice,
    applies to every run.
    """

    steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    eval_every: int = 250
    log_every: int = 10
    seed: int = 0
    minutes: float | None = None
    max_steps: int | None = None
    accumulation_steps: int = 1
    compile_mode: str | None = None

    def __post_init__(self) -> None:
        if self.minutes is not None and not (math.isfinite(self.minutes) and self.minutes > 0):
            raise SettingError(
                _("minutes must be a positive number of minutes, got {value}").format(
                    value=repr(self.minutes)
                )
            )
        counts = {
            "steps": self.steps,
            "eval_every": self.eval_every,
            "log_every": self.log_every,
            "accumulation_steps": self.accumulation_steps,
            **({} if self.max_steps is None else {"max_steps": self.max_steps}),
        }
        for name, value in counts.items():
            if not isinstance(value, int) or value < 1:
                raise SettingError(
                    _("{name} must be a whole number of at least 1, got {value}").format(
                        name=name, value=repr(value)
                    )
                )
        modes = settings.VARIABLES["AIGC_COMPILE_MODE"].choices
        if self.compile_mode is not None and self.compile_mode not in modes:
            raise SettingError(
                _("compile_mode must be one of {choices} (or None), got {value}").format(
                    choices=", ".join(modes), value=repr(self.compile_mode)
                )
            )
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise SettingError(
                _("the learning rate must be positive, got {value}").format(value=repr(self.lr))
            )
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise SettingError(
                _("weight_decay must be 0 or more, got {value}").format(
                    value=repr(self.weight_decay)
                )
            )
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise SettingError(
                _("grad_clip must be positive (or None: no clipping), got {value}").format(
                    value=repr(self.grad_clip)
                )
            )


@dataclass
class History:
    """What a run recorded."""

    steps: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    step_seconds: list[float] = field(default_factory=list)  # the run's time at each logged step
    eval_steps: list[int] = field(default_factory=list)
    eval_seconds: list[float] = field(default_factory=list)  # the run's time when each began
    eval_metrics: dict[str, list[float]] = field(default_factory=dict)
    examples: int = 0
    seconds: float = 0.0
    steps_done: int = 0
    budget_minutes: float | None = None

    def log(
        self, step: int, metrics: dict[str, float | torch.Tensor], seconds: float = math.nan
    ) -> None:
        """Record a step's figures, ``seconds`` into the run; a tensor (a loss or norm left on the
        device by the step) is read here, on the logged steps only."""
        self.steps.append(step)
        self.step_seconds.append(seconds)
        for name, value in metrics.items():
            self.metrics.setdefault(name, []).append(float(value))

    def log_eval(self, step: int, metrics: dict[str, float], seconds: float = math.nan) -> None:
        """Record an evaluation after ``step`` steps, begun ``seconds`` into the run."""
        self.eval_steps.append(step)
        self.eval_seconds.append(seconds)
        for name, value in metrics.items():
            self.eval_metrics.setdefault(name, []).append(value)

    @property
    def examples_per_second(self) -> float:
        return self.examples / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self, points: int = 200) -> dict:
        """The curves, thinned to at most ``points`` logged steps, for saving with a model."""
        stride = max(1, len(self.steps) // points)
        return {
            "steps": self.steps[::stride],
            "metrics": {name: values[::stride] for name, values in self.metrics.items()},
            "eval_steps": self.eval_steps,
            "eval_metrics": self.eval_metrics,
        }


def check_finite(loss: torch.Tensor, step: int, lr: float) -> None:
    """Raise :class:`NonFiniteLossError` with advice if ``loss`` is NaN or infinite."""
    value = loss.detach().float().item()
    if not math.isfinite(value):
        raise NonFiniteLossError(
            _(
                "the loss became {value} at step {step}; training stopped. Try: a lower learning "
                "rate (now {lr}), gradient clipping (TrainConfig.grad_clip), checking the inputs "
                "for NaN, or full precision (AIGC_DEVICE=cpu, or a GPU with bf16)."
            ).format(value=value, step=step, lr=f"{lr:g}")
        )


class LossWatch:
    """Catches a loss that is NaN or infinite without reading it every step: reading a GPU
    tensor on the host waits for the GPU (a sync), which would stall a small model's steps. The
    first bad step and its loss are kept on the device; :meth:`check` reads them (the loop does at
    its logged steps and at the end) and raises :class:`NonFiniteLossError` naming that step."""

    def __init__(self, device: torch.device) -> None:
        self.first_bad_step = torch.zeros((), dtype=torch.long, device=device)  # 0: none yet
        self.bad_loss = torch.zeros((), device=device)

    def observe(self, loss: torch.Tensor, step: int) -> None:
        loss = loss.detach().float()
        first = ~torch.isfinite(loss) & (self.first_bad_step == 0)
        self.first_bad_step = torch.where(first, step, self.first_bad_step)
        self.bad_loss = torch.where(first, loss, self.bad_loss)

    def check(self, lr: float) -> None:
        step = int(self.first_bad_step)
        if step:
            check_finite(self.bad_loss, step, lr)


#: In a timed data-parallel run, the most steps taken between two agreements of the ranks on the
#: clock (see :class:`RunClock`): each is a broadcast that waits for the device.
AGREE_EVERY = 8

#: Under a time budget, a learning-rate schedule sees the share of the budget spent as a position on
#: a grid of this many points (see :meth:`RunClock.position`).
SCHEDULE_RESOLUTION = 10_000


class RunClock:
    """The steps a run takes: ``config.steps`` of them, or, with ``config.minutes``, as many as fit
    in that wall-clock budget.

    Iterate over it for the step numbers (1, 2, ...). Under a budget a step starts only while the
    time spent plus the duration of the last evaluation (measured with :meth:`evaluate`, kept for
    the evaluation after the last step) is inside the budget, so the run, final evaluation
    included, ends on time; at least one step is always taken. ``done`` is the steps taken.

    In a data-parallel run (``world``, see :mod:`aigc_course.distributed`) each process reads its own
    clock, so under a budget rank 0 decides, and the other ranks follow: every :data:`AGREE_EVERY`
    steps at most (an agreement is a broadcast, which waits for the device), rank 0 says how many
    more steps fit (from its time per step so far), how much of the budget is spent and how much
    a step spends. All ranks stop on the same step, with the same learning rate at every step.

    The learning-rate schedule's share of the budget is counted from the end of the first step:
    that step holds the one-off costs (``torch.compile``'s compilation, 25-35 s for the gpu GPT on
    an H200), which would otherwise push the schedule past its warm-up before a second step.
    """

    def __init__(
        self,
        config: TrainConfig,
        device: torch.device | None = None,
        world: distributed.World | None = None,
    ) -> None:
        self.steps = config.steps
        self.budget = None if config.minutes is None else 60.0 * config.minutes
        self.max_steps = None if self.budget is None else config.max_steps
        self.start = time.perf_counter()
        self.reserve = 0.0  # seconds kept for the final evaluation
        self.done = 0
        self.world = world or distributed.World()
        self.device = device or torch.device("cpu")
        self.agreed_spent: float | None = None  # rank 0's share of the budget spent, in a group
        self.agreed_step_share = 0.0  # and the share one step spends
        self.agreed_at = 0  # the steps done at the last agreement
        self.agreed_steps_left = 0  # the steps still to take before the next one
        self.first_step_ended: float | None = None  # when the schedule's time begins

    @property
    def timed(self) -> bool:
        """True when the run is bounded by a time budget rather than a step count."""
        return self.budget is not None

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def __iter__(self) -> Iterator[int]:
        while True:
            if self.done == 1 and self.first_step_ended is None:
                self.first_step_ended = self.elapsed()
            if self.budget is None:
                if self.done >= self.steps:
                    return
            elif self.max_steps is not None and self.done >= self.max_steps:
                return  # every rank has taken the same steps: they all stop here
            elif self.world.distributed:
                if self.agreed_steps_left == 0:
                    self.agree()
                    if self.agreed_steps_left == 0:
                        return
                self.agreed_steps_left -= 1
            elif self.done >= 1 and self.elapsed() + self.reserve >= self.budget:
                return
            self.done += 1
            yield self.done

    def agree(self) -> None:
        """Rank 0's decision for the next steps of a timed data-parallel run, sent to every rank:
        how many fit (at least one while time is left, at most :data:`AGREE_EVERY`; 0: stop),
        the share of the budget spent, and the share a step spends."""
        elapsed = self.elapsed()
        remaining = self.budget - elapsed - self.reserve
        if self.done == 0:
            fit, step_share = 1.0, 0.0  # the first step is always taken, and timed
        else:
            per_step = elapsed / self.done
            fit = 0.0 if remaining <= 0 else max(1, min(AGREE_EVERY, int(remaining // per_step)))
            # done >= 1: the first step has ended (__iter__ noted when, before this agreement)
            later = (
                (elapsed - self.first_step_ended) / (self.done - 1) if self.done > 1 else per_step
            )
            step_share = self.schedule_share(self.first_step_ended + later)
        spent = self.schedule_share(elapsed)
        agreed = distributed.broadcast_floats([fit, spent, step_share], self.device, self.world)
        self.agreed_steps_left = int(agreed[0])
        self.agreed_spent, self.agreed_step_share = agreed[1], agreed[2]
        self.agreed_at = self.done

    def is_last(self, step: int) -> bool:
        """True for the last step of a run by steps, or of a timed run's ``max_steps`` (a run
        that the time ends learns its last step only after)."""
        if self.budget is None:
            return step == self.steps
        return step == self.max_steps

    def schedule_share(self, elapsed: float) -> float:
        """The share of the budget the schedule has spent at ``elapsed`` seconds: counted from the
        end of the first step (0 until then), against the budget left at that moment."""
        if self.first_step_ended is None:
            return 0.0
        left = self.budget - self.first_step_ended
        return min(max(elapsed - self.first_step_ended, 0.0) / left, 1.0) if left > 0 else 1.0

    def position(self, step: int) -> tuple[int, int]:
        """Where ``step`` (1-based) is in the run, as ``(index, total)`` for a learning-rate schedule:
        the 0-based step index and the step count; under a budget, the share of the budget spent,
        as a point of a grid of :data:`SCHEDULE_RESOLUTION`."""
        if self.budget is None:
            return step - 1, self.steps
        if self.agreed_spent is not None:  # the same on every rank: the agreement, stepped on
            spent = self.agreed_spent + (step - 1 - self.agreed_at) * self.agreed_step_share
        else:
            spent = self.schedule_share(self.elapsed())
        if self.max_steps is not None:  # the nearer end: the time's or the steps'
            spent = max(spent, (step - 1) / self.max_steps)
        spent = min(spent, 1.0)
        return min(int(spent * SCHEDULE_RESOLUTION), SCHEDULE_RESOLUTION - 1), SCHEDULE_RESOLUTION

    def evaluate(self, evaluate: Callable[[], R]) -> R:
        """``evaluate()``, timed: its duration is kept free at the end of a timed run."""
        began = time.perf_counter()
        result = evaluate()
        self.reserve = time.perf_counter() - began
        return result


def batch_size_of(batch) -> int:
    first = batch[0] if isinstance(batch, list | tuple) else batch
    return int(first.shape[0])


def to_device(batch, device: torch.device):
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(item, device) for item in batch)
    return batch.to(device, non_blocking=True) if isinstance(batch, torch.Tensor) else batch


#: One optimisation step done by the caller: ``update(step, batch)`` with this rank's slice of the
#: step's batch; it runs the forward and backward passes and its optimisers' steps, and returns the
#: loss to log and watch for NaN (a tensor) and any other figures (floats, or 0-d tensors left on
#: the device: the loop reads them on logged steps only). The GAN's two networks take one.
Update = Callable[[int, object], tuple[torch.Tensor, dict[str, float | torch.Tensor]]]


def train(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, object], tuple[torch.Tensor, dict[str, float]]] | None,
    batches: Iterator,
    config: TrainConfig,
    *,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    device: torch.device | None = None,
    precision: runtime.Precision | None = None,
    compile_model: bool | None = None,
    progress: bool = True,
    description: str = N_("training"),
    lr_schedule: Callable[[int, int], float] | None = None,
    units_per_example: int = 1,
    unit: str = "examples",
    on_trained: Callable[[History], None] | None = None,
    update: Update | None = None,
) -> History:
    """Train ``model`` on ``batches`` (an endless iterator) for ``config.steps`` steps, or for
    ``config.minutes`` of wall-clock time (see :class:`RunClock`).

    ``evaluate(model)`` runs every ``config.eval_every`` steps and after the last, in eval mode
    without gradients (under a time budget also before the first, to measure its cost).
    ``compile_model=None`` compiles where :func:`runtime.compile_support` allows it.
    ``lr_schedule(index, total)`` sets the learning rate of every parameter group before each
    step, from the step's position in the run (:meth:`RunClock.position`). The progress bar,
    titled ``description`` (marked with ``N_``, shown translated), shows the loss and the rate in
    ``unit``s per second (``units_per_example`` of them per example, e.g. tokens per sequence).
    ``on_trained(history)`` is called once, after the last optimizer step and before the final
    evaluation (the caller saves the weights there, so that an interrupt during the evaluation
    loses only the evaluation). Returns the :class:`History`; the model is trained in place.

    The step itself is ``loss_fn``'s gradient, averaged over the ranks, clipped, and one step of
    ``optimizer`` (AdamW by default; see :func:`gradient_update`). A model trained otherwise (two
    networks, two optimisers) passes its own ``update`` instead, with ``loss_fn=None``: it then
    owns its networks' wrapping, optimisers and randomness, and this loop brings the rest (the
    clock, progress, evaluation, logging, the data-parallel slices, ``on_trained``).
    """
    device = device or runtime.get_device()
    world = distributed.world(device)
    model.to(device)
    if update is None:
        optimizer = optimizer or torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        update = gradient_update(
            model, loss_fn, optimizer, config, device, world, precision, compile_model
        )
    history = History(budget_minutes=config.minutes)
    clock = RunClock(config, device, world)
    bar = tqdm(
        clock,
        total=None if clock.timed else config.steps,
        desc=_(description),
        disable=not (progress and world.is_main),
    )

    def log_evaluation(step: int, measured: bool = True) -> None:
        """Evaluate and log it with the time it began (``measured``: its duration is kept free
        at the end of a timed run, see :meth:`RunClock.evaluate`)."""
        began = clock.elapsed()
        evaluation = functools.partial(run_evaluation, model, evaluate)
        history.log_eval(step, clock.evaluate(evaluation) if measured else evaluation(), began)

    if clock.timed and evaluate is not None:
        log_evaluation(0)
    watch = LossWatch(device)
    for step in bar:
        model.train()
        global_batch = next(batches)
        if lr_schedule is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_schedule(*clock.position(step))
        loss, metrics = update(step, distributed.shard(global_batch, world))
        watch.observe(loss, step)
        history.examples += batch_size_of(global_batch)
        learning_rate = {"lr": optimizer.param_groups[0]["lr"]} if optimizer is not None else {}
        last = {"loss": loss, **learning_rate, **metrics}
        # Nothing above reads a number back from the device: on a GPU the steps queue up. The
        # loss is read (and checked) on the logged steps only.
        if step % config.log_every == 0 or step == 1 or clock.is_last(step):
            watch.check(config.lr)
            logged = mean_over_ranks(loss, device, world)
            history.log(step, {**last, "loss": logged}, seconds=clock.elapsed())
            rate = history.examples * units_per_example / clock.elapsed()
            bar.set_postfix({"loss": f"{logged:.4g}", f"{unit}/s": f"{rate:,.0f}"})
        if clock.is_last(step):
            finish_training(history, clock, on_trained)
        if evaluate is not None and (step % config.eval_every == 0 or clock.is_last(step)):
            log_evaluation(step)
    if history.steps_done != clock.done:  # a timed run: its last step, now known
        watch.check(config.lr)
        if history.steps[-1] != clock.done:
            logged = mean_over_ranks(last["loss"], device, world)
            history.log(clock.done, {**last, "loss": logged}, seconds=clock.elapsed())
        finish_training(history, clock, on_trained)
    if evaluate is not None and (not history.eval_steps or history.eval_steps[-1] != clock.done):
        log_evaluation(clock.done, measured=False)
    history.seconds = clock.elapsed()  # the run's time, its final evaluation included
    return history


def gradient_update(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, object], tuple[torch.Tensor, dict[str, float]]],
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    device: torch.device,
    world: distributed.World,
    precision: runtime.Precision | None = None,
    compile_model: bool | None = None,
) -> Update:
    """The usual step: ``loss_fn``'s gradients (in micro-batches if asked, see
    :func:`accumulate_gradients`), clipped, one step of ``optimizer``. Under torchrun the model is
    wrapped in DDP (which copies rank 0's weights to every rank and averages the gradients in
    backward) and randomness inside the model (dropout, sampling) differs per rank; it is compiled
    where :func:`runtime.compile_support` allows (or as ``compile_model`` says)."""
    precision = precision or runtime.choose_precision(device)
    parallel_model = distributed.wrap(model, device, world)
    if world.distributed:
        torch.manual_seed(config.seed * 100_003 + 1 + world.rank)
    single = not world.distributed and config.accumulation_steps == 1
    forward_model = runtime.maybe_compile(
        parallel_model, device, enabled=compile_model, mode=config.compile_mode if single else None
    )
    scaler = precision.grad_scaler()

    def update(step: int, batch) -> tuple[torch.Tensor, dict[str, float]]:
        loss, metrics = accumulate_gradients(
            forward_model, parallel_model, loss_fn, batch, config, step, device, precision, scaler
        )
        grad_norm = runtime.clip_and_step(
            optimizer, scaler, config.grad_clip, parameters=model.parameters()
        )
        if grad_norm is not None:
            metrics["grad_norm"] = grad_norm
        return loss, metrics

    return update


def finish_training(
    history: History, clock: RunClock, on_trained: Callable[[History], None] | None
) -> None:
    """Record the steps taken and the time so far in ``history``, then tell ``on_trained``: the
    weights are final."""
    history.steps_done = clock.done
    history.seconds = clock.elapsed()
    if on_trained is not None:
        on_trained(history)


def mean_over_ranks(loss: torch.Tensor, device: torch.device, world: distributed.World) -> float:
    """The step's loss for the log: the mean over the ranks' slices (its own, for one process)."""
    return distributed.average({"loss": loss.item()}, 1.0, device, world)["loss"]


def accumulate_gradients(
    forward_model: nn.Module,
    parallel_model: nn.Module,
    loss_fn: Callable[[nn.Module, object], tuple[torch.Tensor, dict[str, float]]],
    batch,
    config: TrainConfig,
    step: int,
    device: torch.device,
    precision: runtime.Precision,
    scaler: torch.amp.GradScaler | None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clear the gradients, then add those of ``batch`` (this rank's share of the step), one
    micro-batch at a time when ``config.accumulation_steps`` > 1: each micro-batch's mean loss
    divided by their number, so the sum is the gradient of the batch's mean loss. Under DDP the
    ranks average their gradients only after the last micro-batch (``no_sync`` before it).
    Returns the batch's mean loss (detached) and the mean of each metric."""
    parts = config.accumulation_steps
    for parameter in parallel_model.parameters():
        parameter.grad = None
    no_sync = getattr(parallel_model, "no_sync", None)  # DDP's; a plain module has none
    total_loss = torch.zeros((), device=device)
    sums: dict[str, float] = {}
    # The words of the errors below, looked up once per step rather than per micro-batch.
    micro_batches, options = _("micro-batches"), _("--batch-size or --accumulation-steps")
    averaging = _("gradient averaging")
    for index in range(parts):
        micro = distributed.slice_rows(batch, index, parts, micro_batches, options)
        micro = to_device(micro, device)
        last = index == parts - 1
        with contextlib.nullcontext() if last or no_sync is None else no_sync():
            with precision.autocast():
                loss, metrics = loss_fn(forward_model, micro)
            scaled = loss / parts if parts > 1 else loss
            # Under DDP the last backward also averages the gradients over the ranks.
            backward = functools.partial(runtime.backward, scaled, scaler)
            distributed.collective(backward, averaging)
        total_loss += loss.detach().float()
        for name, value in metrics.items():
            sums[name] = sums.get(name, 0.0) + value
    return total_loss / parts, {name: value / parts for name, value in sums.items()}


def run_evaluation(
    model: nn.Module, evaluate: Callable[[nn.Module], dict[str, float]]
) -> dict[str, float]:
    """``evaluate(model)`` in eval mode without gradients; the model returns to train mode after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return evaluate(model)
    finally:
        model.train(was_training)


def random_batches(
    tensors: tuple[torch.Tensor, ...], batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Endless random mini-batches (without replacement within an epoch) of in-memory tensors.

    A batch larger than the data would never fill (the loop would spin without yielding): it is
    refused at once, saying how large a batch the data allows."""
    check_batch_fits(batch_size, tensors[0].shape[0])  # now, not at the first batch
    return _endless_batches(tensors, batch_size, generator)


def check_batch_fits(batch_size: int, examples: int) -> None:
    """Refuse a batch larger than the training data, saying which sizes it allows."""
    if examples < 1:
        raise SettingError(_("there are no training examples to draw batches from"))
    if not 1 <= batch_size <= examples:
        raise SettingError(
            _(
                "a batch of {batch_size} examples does not fit in the {examples} training "
                "examples: use --batch-size {suggested} or another value from 1 to {examples}"
            ).format(
                batch_size=f"{batch_size:,}", examples=f"{examples:,}", suggested=min(examples, 64)
            )
        )


def _endless_batches(
    tensors: tuple[torch.Tensor, ...], batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, ...]]:
    n = tensors[0].shape[0]
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            yield tuple(t[index] for t in tensors)


def warmup_cosine(
    step: int, max_lr: float, warmup_steps: int, total_steps: int, min_lr: float
) -> float:
    """The learning rate at ``step`` (0-based): a linear warm-up from 0 to ``max_lr`` over
    ``warmup_steps``, then a cosine decay to ``min_lr`` at ``total_steps`` (and ``min_lr`` after)."""
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (max_lr - min_lr)


# --------------------------------------------------------------------------------------------
# What every trainer module shares: recipes, runs, checkpoints
# --------------------------------------------------------------------------------------------


def _recipe_parts(recipe: Any) -> dict[str, Any]:
    """Where a recipe's settings live: the recipe itself, its ``train`` and its ``model`` config."""
    return {"recipe": recipe, "train": recipe.train, "model": recipe.model}


def command_options(recipe: Any) -> list[tuple[str, CommandOption, Any]]:
    """The settings of ``recipe`` that ``aigc-course train`` offers, as ``(name, option, value)``:
    every field declared with :func:`aigc_course.validators.setting`, in the recipe, its ``train``
    or its ``model`` config (``value`` is this recipe's). :func:`override` takes them by ``name``."""
    found = []
    for obj in _recipe_parts(recipe).values():
        for setting in dataclasses.fields(obj):
            if "option" in setting.metadata:
                found.append((setting.name, setting.metadata["option"], getattr(obj, setting.name)))
    return found


@dataclass(frozen=True)
class BudgetRecipe:
    """A row of a trainer's table of recipes by time budget: for a run of at most ``up_to_minutes``
    on the profile the table is for, the recipe with ``changes`` (any :func:`override` names) is
    the best measured (the measurement: ``measured``, a section of benchmarks/RESULTS.md)."""

    up_to_minutes: float
    changes: dict[str, Any]
    measured: str = ""


def budget_row(table: tuple[BudgetRecipe, ...], minutes: float | None) -> BudgetRecipe | None:
    """The first row of ``table`` whose budget covers ``minutes`` (a run by the clock); None for a
    run by steps or beyond the table's last budget."""
    if minutes is None:
        return None
    return next((row for row in table if minutes <= row.up_to_minutes), None)


def for_budget(recipe: R, table: tuple[BudgetRecipe, ...], minutes: float | None) -> R:
    """``recipe`` with the changes of :func:`budget_row`'s row, or unchanged without one. A
    learner's own options are applied after it, so they always win."""
    row = budget_row(table, minutes)
    return recipe if row is None else override(recipe, **row.changes)


def override(recipe: R, **overrides: Any) -> R:
    """``recipe`` with some fields replaced, each where it lives: a field of the recipe itself,
    of its ``train`` config (:class:`TrainConfig`: ``steps``, ``lr``, ...) or of its ``model``
    config (e.g. ``latent_dim``). ``None`` means "keep the recipe's value". A name found nowhere
    raises :class:`~aigc_course.errors.SettingError` (a ``ValueError``) listing the names that
    exist, so no option is ever silently ignored; so does a batch size below 1.
    """
    overrides = {name: value for name, value in overrides.items() if value is not None}
    parts = _recipe_parts(recipe)
    fields = {part: {f.name for f in dataclasses.fields(obj)} for part, obj in parts.items()}
    fields["recipe"] -= {"train", "model"}
    changes: dict[str, dict[str, Any]] = {part: {} for part in parts}
    for name, value in overrides.items():
        owner = next((part for part in parts if name in fields[part]), None)
        if owner is None:
            known = sorted(set().union(*fields.values()))
            raise SettingError(
                _("{recipe} has no setting {name}; the settings are: {settings}").format(
                    recipe=type(recipe).__name__, name=repr(name), settings=", ".join(known)
                )
            )
        changes[owner][name] = value
    changed = dataclasses.replace(
        recipe,
        train=dataclasses.replace(recipe.train, **changes["train"]),
        model=dataclasses.replace(recipe.model, **changes["model"]),
        **changes["recipe"],
    )
    batch_size = getattr(changed, "batch_size", 1)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise SettingError(
            _("batch_size must be a whole number of at least 1, got {value}").format(
                value=repr(batch_size)
            )
        )
    return changed


@dataclass
class Run:
    """What a trainer's ``train`` returns: the trained model (the part a checkpoint saves), the
    recipe it was trained with, the curves, and the final figures."""

    model: nn.Module
    recipe: Any
    history: History
    metrics: dict[str, float]


#: What a trainer's ``train(..., on_trained=...)`` is given once the weights are final: the run
#: with its training figures only (speed, time), before any final evaluation.
OnTrained = Callable[[Run], None]


def report_trained(
    on_trained: OnTrained | None, make_run: Callable[[History], Run]
) -> Callable[[History], None] | None:
    """The ``on_trained`` hook for :func:`train`: builds the trainer's :class:`Run` from the history
    (with :func:`training_figures`) and hands it to the trainer's caller; None without a caller."""
    if on_trained is None:
        return None
    return lambda history: on_trained(make_run(history))


def training_figures(
    history: History, units_per_example: int = 1, rate: str = "images_per_second"
) -> dict:
    """A run's figures known when training ends: its speed (``rate``) and its time in seconds."""
    return {rate: history.examples_per_second * units_per_example, "train_seconds": history.seconds}


@dataclass(frozen=True)
class Loaded:
    """What every trainer's ``load`` returns: the model (in eval mode), its checkpoint (config,
    metrics, the command that made it), and what using the model needs besides: a GPT's
    ``tokenizer``, a diffusion model's noise ``schedule`` (None for a model that needs neither)."""

    model: nn.Module
    checkpoint: checkpoints.Checkpoint
    tokenizer: Any = None
    schedule: Any = None


def describe_length(config: TrainConfig) -> str:
    """How long a run is, for a trainer's one-line description: "2000 steps" or "3 minutes of steps"."""
    if config.minutes is None:
        return _("{steps} steps").format(steps=config.steps)
    if config.minutes == 1:
        return _("{minutes} minute of steps").format(minutes=f"{config.minutes:g}")
    return _("{minutes} minutes of steps").format(minutes=f"{config.minutes:g}")


def training_rows(
    run: Run, rate: str = N_("images/s"), rate_metric: str = "images_per_second"
) -> dict:
    """The first rows of every trainer's summary: steps, training speed and training time (the
    rows' names translated; ``rate``, the speed's, marked with ``N_``)."""
    budget = run.history.budget_minutes
    steps = f"{run.history.steps_done:,}"
    if budget is None:
        steps_row = run.history.steps_done
    elif run.history.steps_done == run.recipe.train.max_steps:
        steps_row = _(
            "{steps} in a budget of {minutes} min: the recipe's limit, where more steps stop "
            "paying (the data, not the time, runs out)"
        ).format(steps=steps, minutes=f"{budget:g}")
    else:
        steps_row = _("{steps} in a budget of {minutes} min").format(
            steps=steps, minutes=f"{budget:g}"
        )
    return {
        _("steps"): steps_row,
        _(rate): run.metrics[rate_metric],
        _("train time [s]"): run.metrics["train_seconds"],
    }


def save_run(
    run: Run,
    path: str | Path,
    command: str,
    keep: Callable[[str], bool] | None = None,
    **extra: Any,
) -> str | None:
    """Save ``run.model`` with its config, the metrics, the steps done (and the time budget, if
    any), the examples seen, the batch size, the curves, the command that made it, and ``extra``
    (JSON-able); returns the file's sha256. ``keep`` saves only the tensors it accepts (see
    :func:`checkpoints.save`). Under torchrun only rank 0 writes (every rank holds the same
    weights); the other ranks write nothing and get None."""
    if not distributed.is_main():
        return None
    return checkpoints.save(
        path,
        run.model,
        config=run.model.config.to_dict(),
        metrics=run.metrics,
        extra={
            "command": command,
            "steps": run.history.steps_done,
            "minutes": run.history.budget_minutes,
            "examples": run.history.examples,
            "batch_size": run.recipe.batch_size,
            "history": run.history.to_dict(),
            **extra,
        },
        keep=keep,
    )
