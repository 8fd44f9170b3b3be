"""One training loop for the model lessons (VAE now; GAN and GPT reuse it where it fits).

What it does for every model, so the lessons can show the model and not the plumbing:
device placement, mixed precision per :mod:`aigc_course.runtime` (bf16 autocast, or fp16 with a
gradient scaler), ``torch.compile`` where it works, gradient clipping, a ``tqdm`` progress bar,
periodic evaluation, and a loss that becomes NaN or infinite stops the run at once with a message
that names the step and what to try.

A model lesson provides ``loss_fn(model, batch) -> (loss, metrics)``: a scalar to minimise and a
dict of floats to log.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from aigc_course import runtime


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; training stopped."""


@dataclass(frozen=True)
class TrainConfig:
    """How long and how fast to train."""

    steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    eval_every: int = 250
    log_every: int = 10
    seed: int = 0


@dataclass
class History:
    """What a run recorded."""

    steps: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    eval_steps: list[int] = field(default_factory=list)
    eval_metrics: dict[str, list[float]] = field(default_factory=dict)
    examples: int = 0
    seconds: float = 0.0

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.steps.append(step)
        for name, value in metrics.items():
            self.metrics.setdefault(name, []).append(value)

    def log_eval(self, step: int, metrics: dict[str, float]) -> None:
        self.eval_steps.append(step)
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
            f"the loss became {value} at step {step}; training stopped. Try: a lower learning rate "
            f"(now {lr:g}), gradient clipping (TrainConfig.grad_clip), checking the inputs for NaN, "
            "or full precision (AIGC_DEVICE=cpu, or a GPU with bf16)."
        )


def batch_size_of(batch) -> int:
    first = batch[0] if isinstance(batch, list | tuple) else batch
    return int(first.shape[0])


def to_device(batch, device: torch.device):
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(item, device) for item in batch)
    return batch.to(device, non_blocking=True) if isinstance(batch, torch.Tensor) else batch


def train(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, object], tuple[torch.Tensor, dict[str, float]]],
    batches: Iterator,
    config: TrainConfig,
    *,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    device: torch.device | None = None,
    precision: runtime.Precision | None = None,
    compile_model: bool | None = None,
    progress: bool = True,
    description: str = "training",
    lr_schedule: Callable[[int], float] | None = None,
    units_per_example: int = 1,
    unit: str = "examples",
) -> History:
    """Train ``model`` for ``config.steps`` steps on ``batches`` (an endless iterator).

    ``evaluate(model)`` runs every ``config.eval_every`` steps and at the end, in eval mode
    without gradients. ``compile_model=None`` compiles where :func:`runtime.compile_support`
    allows it. ``lr_schedule(step)`` (0-based) sets the learning rate of every parameter group
    before each step. The progress bar shows the loss and the rate in ``unit``s per second
    (``units_per_example`` of them per example, e.g. tokens per sequence).
    Returns the :class:`History`; the model is trained in place.
    """
    device = device or runtime.get_device()
    precision = precision or runtime.choose_precision(device)
    model.to(device)
    optimizer = optimizer or torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    use_compile = (
        runtime.compile_support(device.type)[0] if compile_model is None else compile_model
    )
    forward_model = torch.compile(model) if use_compile else model
    scaler = precision.grad_scaler()
    history = History()
    bar = tqdm(range(1, config.steps + 1), desc=description, disable=not progress)
    start = time.perf_counter()
    for step in bar:
        model.train()
        batch = to_device(next(batches), device)
        if lr_schedule is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr_schedule(step - 1)
        with precision.autocast():
            loss, metrics = loss_fn(forward_model, batch)
        check_finite(loss, step, config.lr)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if config.grad_clip is not None:
            scaler.unscale_(optimizer)
            metrics["grad_norm"] = float(
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            )
        scaler.step(optimizer)
        scaler.update()
        history.examples += batch_size_of(batch)
        if step % config.log_every == 0 or step == 1 or step == config.steps:
            history.log(
                step, {"loss": loss.item(), "lr": optimizer.param_groups[0]["lr"], **metrics}
            )
            rate = history.examples * units_per_example / (time.perf_counter() - start)
            bar.set_postfix({"loss": f"{loss.item():.4g}", f"{unit}/s": f"{rate:,.0f}"})
        if evaluate is not None and (step % config.eval_every == 0 or step == config.steps):
            history.log_eval(step, run_evaluation(model, evaluate))
    history.seconds = time.perf_counter() - start
    return history


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


def endless(loader) -> Iterator:
    """Cycle over a DataLoader (or any iterable) forever, one epoch after another."""
    while True:
        yield from loader


def random_batches(
    tensors: tuple[torch.Tensor, ...], batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Endless random mini-batches (without replacement within an epoch) of in-memory tensors."""
    n = tensors[0].shape[0]
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            yield tuple(t[index] for t in tensors)
