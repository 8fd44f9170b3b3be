"""Training the lesson-08 GPT on Tiny Shakespeare, under a run profile.

Used by ``aigc-course train gpt``, ``benchmarks/gpt.py`` and the lesson. The data are lesson 02's:
the character tokenizer and the 90/10 split, so the validation loss compares directly with the
bigram baseline (:func:`bigram_baseline`), which every run also reports.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aigc_course import checkpoints, data, distributed, runtime, training
from aigc_course.data.text import train_val_ids
from aigc_course.i18n import N_, _
from aigc_course.models import bigram
from aigc_course.models.gpt import GPT, GPTConfig
from aigc_course.training import Run, TrainConfig

PRETRAINED_NAME = "gpt_tiny_shakespeare"


@dataclass(frozen=True)
class GPTRecipe:
    model: GPTConfig
    train: TrainConfig
    batch_size: int
    warmup_steps: int
    min_lr: float
    eval_batches: int = 50  # fixed validation batches for the loss estimate


#: The cpu profile's GPT for a run by the clock (``--minutes M``): the best measured for the budget
#: on a 2-core CPU. The rule the sweep found: at a fixed budget, a smaller model that sees more
#: tokens per second, with a shorter context and more, smaller steps, wins, until the budget is
#: large enough for the data, not the compute, to be the limit (then the larger model catches up).
CPU_BUDGETS: tuple[training.BudgetRecipe, ...] = (
    training.BudgetRecipe(
        5.0,
        {"n_layer": 2, "block_size": 64, "batch_size": 16, "lr": 3e-3},
        "GPT by budget against nanoGPT's CPU command",
    ),
    training.BudgetRecipe(
        10.0,
        {"n_layer": 3, "block_size": 64, "batch_size": 16},
        "GPT recipes per CPU-minute",
    ),
)


def recipe_for(profile: runtime.Profile | None = None, **overrides) -> GPTRecipe:
    """The GPT recipe of a profile; any field may be overridden (see :func:`training.override`).
    A run by the clock on the cpu profile (``minutes=M``) starts from the best recipe measured for
    that budget (:data:`CPU_BUDGETS`) instead of the step-count recipe cut short. A peak ``lr`` of
    one's own scales ``min_lr`` with it (unless that is given too): the schedule keeps its shape."""
    profile = profile or runtime.get_profile()
    base = profile.select(
        smoke=GPTRecipe(
            GPTConfig(block_size=32, n_layer=2, n_head=2, n_embd=32, dropout=0.0),
            TrainConfig(steps=20, lr=3e-3, weight_decay=0.1, eval_every=10, log_every=5),
            batch_size=8,
            warmup_steps=5,
            min_lr=3e-4,
            eval_batches=4,
        ),
        # The pretrained GPT's recipe: the context of 128 that lessons 09 and 12 read, and the
        # sweep's smaller batch at a larger rate (twice the steps of 16 sequences, the same
        # characters as 2,000 of 32: 1.73 against 1.94 nats/char after 7 CPU-minutes; 1.533
        # against 1.596 at the end). Three layers tie with four at this budget
        # (benchmarks/RESULTS.md); four keep the lessons' shape.
        cpu=GPTRecipe(
            GPTConfig(block_size=128, n_layer=4, n_head=4, n_embd=128, dropout=0.0),
            TrainConfig(steps=4_000, lr=3e-3, weight_decay=0.1, eval_every=500, log_every=50),
            batch_size=16,
            warmup_steps=200,
            min_lr=2e-4,
        ),
        # nanoGPT's "baby GPT" on Shakespeare characters, for the steps before it overfits: on one
        # H200 its validation loss is lowest after about 2,000 steps and rises after (5,000 steps
        # end at 1.74), so a run ends at 2,500 however long its budget (benchmarks/RESULTS.md).
        # CUDA graphs (reduce-overhead): 1.58x the steady tokens/s of the default mode there.
        gpu=GPTRecipe(
            GPTConfig(block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2),
            TrainConfig(
                steps=2_500,
                max_steps=2_500,
                lr=1e-3,
                weight_decay=0.1,
                eval_every=500,
                log_every=50,
                compile_mode="reduce-overhead",
            ),
            batch_size=64,
            warmup_steps=100,
            min_lr=1e-4,
            eval_batches=200,
        ),
    )
    if profile.name == "cpu":
        base = training.for_budget(base, CPU_BUDGETS, overrides.get("minutes"))
    peak = overrides.get("lr")
    if isinstance(peak, (int, float)) and peak > 0 and overrides.get("min_lr") is None:
        # A peak of the learner's own (--lr): the floor keeps its ratio to the peak, so the
        # schedule keeps its shape (and never decays upwards to a floor above a lower peak).
        overrides = {**overrides, "min_lr": base.min_lr * peak / base.train.lr}
    return training.override(base, **overrides)


def learning_rate_schedule(recipe: GPTRecipe) -> Callable[[int, int], float]:
    """The ``lr_schedule`` of :func:`training.train`: a linear warm-up to ``recipe.train.lr`` over
    ``warmup_steps``, then a cosine decay to ``min_lr``. By steps, ``(index, total)`` is
    ``(step - 1, steps)``; by the clock, the share of the time spent on a grid of ``total`` points,
    with the warm-up the same share of the run."""
    steps = recipe.train.steps
    return lambda index, total: training.warmup_cosine(
        index, recipe.train.lr, round(recipe.warmup_steps * total / steps), total, recipe.min_lr
    )


def describe(recipe: GPTRecipe) -> str:
    c = recipe.model
    return _(
        "{layers} layers x {heads} heads x {width}, context {context}, {length} of {batch_size} "
        "sequences"
    ).format(
        layers=c.n_layer,
        heads=c.n_head,
        width=c.n_embd,
        context=c.block_size,
        length=training.describe_length(recipe.train),
        batch_size=recipe.batch_size,
    )


def checkpoint_name(recipe: GPTRecipe) -> str:
    return PRETRAINED_NAME


@dataclass
class ShakespeareData:
    tokenizer: data.CharTokenizer
    train_ids: torch.Tensor
    val_ids: torch.Tensor


def ids_tensor(ids: Sequence[int]) -> torch.Tensor:
    """Token ids as a new int64 tensor ``(N,)``. Through NumPy: for Tiny Shakespeare's million ids,
    16 ms, where ``torch.tensor`` on the list takes 114 ms."""
    return torch.from_numpy(np.array(ids, dtype=np.int64))


def load_data() -> ShakespeareData:
    """Tiny Shakespeare, its character tokenizer, and lesson 02's split: first 90% / last 10%."""
    text = data.load_tiny_shakespeare()
    tokenizer = data.CharTokenizer.from_text(text)
    train_ids, val_ids = train_val_ids(text, tokenizer)
    return ShakespeareData(tokenizer, ids_tensor(train_ids), ids_tensor(val_ids))


def bigram_baseline(
    shakespeare: ShakespeareData | None = None, alpha: float = bigram.DEFAULT_ALPHA
) -> bigram.Baseline:
    """The bigram model fitted on Tiny Shakespeare's first 90%, scored on the last 10%: lesson
    02's first language model and the number every later model must beat."""
    shakespeare = shakespeare or load_data()
    train_ids, val_ids = shakespeare.train_ids, shakespeare.val_ids
    vocab_size = shakespeare.tokenizer.vocab_size
    probabilities = bigram.probabilities_from_counts(
        bigram.pair_counts(train_ids, vocab_size), alpha
    )
    return bigram.Baseline(
        alpha=alpha,
        vocab_size=vocab_size,
        train_characters=len(train_ids),
        val_characters=len(val_ids),
        train_nll=bigram.average_nll(probabilities, train_ids),
        val_nll=bigram.average_nll(probabilities, val_ids),
    )


def random_blocks(ids: torch.Tensor, block_size: int, batch_size: int, generator: torch.Generator):
    """Endless batches of random contiguous blocks: inputs ``(B, T)`` and targets shifted by one."""
    offsets = torch.arange(block_size + 1)
    while True:
        starts = torch.randint(0, len(ids) - block_size - 1, (batch_size,), generator=generator)
        blocks = ids[starts[:, None] + offsets]  # (B, T + 1): one gather, no Python loop
        yield blocks[:, :-1], blocks[:, 1:]


@torch.no_grad()
def estimate_loss(
    model: GPT,
    ids: torch.Tensor,
    batches: int,
    batch_size: int,
    seed: int = 1234,
    world: distributed.World | None = None,
) -> float:
    """Mean next-token loss (nats) over ``batches`` fixed random blocks of ``ids``: the same blocks
    every call, so estimates during and after training compare. With the ``world`` of a
    data-parallel run, every rank must call it: each scores its share of the batches and the mean
    is taken over all of them."""
    device = next(model.parameters()).device
    world = world or distributed.World()
    generator = torch.Generator().manual_seed(seed)
    blocks = random_blocks(ids, model.config.block_size, batch_size, generator)
    all_batches = [next(blocks) for _index in range(batches)]
    losses = [
        model(x.to(device), y.to(device))[1].item()
        for x, y in distributed.my_share(all_batches, world)
    ]
    mean = {"loss": sum(losses) / max(len(losses), 1)}
    return distributed.average(mean, len(losses), device, world)["loss"]


@torch.no_grad()
def corpus_loss(model: GPT, ids: torch.Tensor, batch_size: int = 32) -> float:
    """The mean next-token loss (nats per token) over *every* token of ``ids`` ``(N,)`` but the
    first, each predicted once, from at least half a context of the tokens before it (all of them
    near the start). Windows of ``block_size`` overlap by half; each scores only the tokens the
    previous window did not. Unlike :func:`estimate_loss` (random blocks, where the first tokens
    of each block see almost nothing), this is the figure to report for a whole text."""
    block = model.config.block_size
    if len(ids) < 2:
        raise ValueError(
            _("the text needs at least two tokens: one to predict from, one to predict")
        )
    device = next(model.parameters()).device
    stride = max(block // 2, 1)
    windows: list[tuple[int, int]] = []  # (start of the window, first target position it scores)
    scored = 0  # targets ids[1:] scored so far
    while scored < len(ids) - 1:
        start = max(0, min(scored + stride - block, len(ids) - 1 - block))
        windows.append((start, scored - start))
        scored = min(start + block, len(ids) - 1)
    length = min(block, len(ids) - 1)  # every window's length
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        for first in range(0, len(windows), batch_size):
            group = windows[first : first + batch_size]
            x = torch.stack([ids[s : s + length] for s, _skip in group]).to(device)
            y = torch.stack([ids[s + 1 : s + 1 + length] for s, _skip in group]).to(device)
            logits, _loss = model(x)
            losses = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="none")
            keep = (
                torch.arange(length, device=device)[None, :]
                >= torch.tensor([skip for _start, skip in group], device=device)[:, None]
            )
            total += losses.view(len(group), length)[keep].double().sum().item()
    finally:
        model.train(was_training)
    return total / (len(ids) - 1)


@dataclass
class GPTRun(Run):
    """A GPT run also carries its tokenizer (saved with the weights)."""

    tokenizer: data.CharTokenizer | None = None


def train(
    recipe: GPTRecipe,
    device: torch.device | None = None,
    progress: bool = True,
    *,
    shakespeare: ShakespeareData | None = None,
    model_config: GPTConfig | None = None,
    on_trained: training.OnTrained | None = None,
) -> GPTRun:
    """Train a GPT with ``recipe`` (or ``model_config`` in its place) on Tiny Shakespeare."""
    runtime.seed_everything(recipe.train.seed)
    device = device or runtime.get_device()
    shakespeare = shakespeare or load_data()
    config = dataclasses.replace(
        model_config or recipe.model, vocab_size=shakespeare.tokenizer.vocab_size
    )
    model = GPT(config)
    generator = torch.Generator().manual_seed(recipe.train.seed)
    batches = random_blocks(shakespeare.train_ids, config.block_size, recipe.batch_size, generator)

    world = distributed.world(device)

    def evaluate(m: GPT) -> dict[str, float]:
        return {
            "val_loss": estimate_loss(
                m, shakespeare.val_ids, recipe.eval_batches, recipe.batch_size, world=world
            )
        }

    history = training.train(
        model,
        lambda m, batch: (m(*batch)[1], {}),
        batches,
        recipe.train,
        evaluate=evaluate,
        optimizer=model.configure_optimizer(recipe.train.lr, recipe.train.weight_decay),
        device=device,
        progress=progress,
        description="GPT",  # a name: not translated
        lr_schedule=learning_rate_schedule(recipe),
        units_per_example=config.block_size,
        unit="tokens",
        on_trained=training.report_trained(
            on_trained,
            lambda h: GPTRun(
                model,
                recipe,
                h,
                training.training_figures(h, config.block_size, "tokens_per_second"),
                shakespeare.tokenizer,
            ),
        ),
    )
    model.eval()
    metrics = {
        "val_loss": history.eval_metrics["val_loss"][-1],
        "train_loss_estimate": estimate_loss(
            model, shakespeare.train_ids, recipe.eval_batches, recipe.batch_size, world=world
        ),
        **training.training_figures(history, config.block_size, "tokens_per_second"),
        "parameters": model.num_parameters(),
        "bigram_val_loss": bigram_baseline(shakespeare).val_nll,
    }
    return GPTRun(model, recipe, history, metrics, shakespeare.tokenizer)


def summary(run: GPTRun) -> dict[str, object]:
    m = run.metrics
    return {
        _("parameters"): m["parameters"],
        **training.training_rows(run, N_("tokens/s"), "tokens_per_second"),
        _("val loss [nats/char]"): m["val_loss"],
        "  [bits/char]": m["val_loss"] / math.log(2),
        _("bigram baseline [nats/char]"): m["bigram_val_loss"],
    }


def save_run(run: GPTRun, path: str | Path, command: str) -> str:
    """Save a trained GPT with its tokenizer, config, metrics and curves; returns the sha256."""
    return training.save_run(run, path, command, tokenizer=run.tokenizer.to_dict())


def load(path: str | Path | None = None, expected_sha256: str | None = None) -> training.Loaded:
    """The GPT and its tokenizer from a file, or the course's pretrained GPT (verified) by default."""
    model, checkpoint = checkpoints.load_model(
        lambda config: GPT(GPTConfig(**config)),
        PRETRAINED_NAME,
        path,
        expected_sha256,
        kind=GPT.__name__,
    )
    if "tokenizer" not in checkpoint.extra:
        raise checkpoints.CheckpointError(
            _("{checkpoint} has no tokenizer: it is not a GPT checkpoint of the course").format(
                checkpoint=path or PRETRAINED_NAME
            )
        )
    tokenizer = data.CharTokenizer.from_dict(checkpoint.extra["tokenizer"])
    return training.Loaded(model, checkpoint, tokenizer=tokenizer)
