"""Fine-tuning the course's pretrained GPT on one speaker of Tiny Shakespeare (lesson 09).

Two methods, in the one trainer interface (``aigc-course train finetune --method full|lora``):

- ``full``: every weight of the pretrained GPT trains (AdamW with weight decay on matrices, as in
  pre-training), and the checkpoint is a whole GPT;
- ``lora``: the pretrained weights are frozen and low-rank adapters (:mod:`aigc_course.models.lora`)
  train beside the chosen linear layers; the checkpoint holds only the adapters, with the sha256 of
  the base GPT they were trained on, and refuses to load onto any other base.

The data, held out honestly (:func:`load_speaker_data`): by default the speaker's speeches in the
last 10% of the corpus, which the GPT never saw, split in two: the first half trains, the second
half measures the **speaker loss**; the other speakers' speeches there measure the **general
loss**, whose rise is forgetting. (``data="pretraining"`` fine-tunes instead on the speaker's
speeches inside the pre-training text; the model has read those already, and fine-tuning on them
barely helps: benchmarks/RESULTS.md.) Speeches are joined as the script writes them,
``NAME:\\ntext`` separated by blank lines.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from aigc_course import checkpoints, data, distributed, runtime, training
from aigc_course.checkpoints import CheckpointError
from aigc_course.errors import SettingError
from aigc_course.i18n import N_, _
from aigc_course.models import lora
from aigc_course.models.gpt import GPT
from aigc_course.trainers import gpt as gpt_trainer
from aigc_course.training import Run, TrainConfig
from aigc_course.validators import check_choices, count, positive_float, setting, speaker_name

PRETRAINED_NAME = "gpt_lora_petruchio"
BASE_NAME = gpt_trainer.PRETRAINED_NAME
#: The speaker with the most held-out text among those who speak on both sides of the 90% cut
#: (the last 10% of Tiny Shakespeare is The Taming of the Shrew): 134 speeches after it.
SPEAKER = "PETRUCHIO"
METHODS = ("full", "lora")
DATA_SOURCES = ("pretraining", "held-out")


@dataclass(frozen=True)
class FinetuneConfig:
    """What to adapt and how: ``method`` (``full`` or ``lora``), and for LoRA its ``rank``,
    ``alpha`` and ``targets`` (see :class:`~aigc_course.models.lora.LoRAConfig`)."""

    method: str = setting("lora", N_("full (every weight) or lora"), choices=METHODS)
    rank: int = setting(4, N_("LoRA's rank r"), count)
    alpha: float = setting(
        8.0, N_("LoRA's alpha: the update is scaled by alpha / r"), positive_float
    )
    targets: str = setting("both", N_("the layers LoRA adapts"), choices=tuple(lora.TARGET_LAYERS))
    speaker: str = setting(SPEAKER, N_("the speaker to fine-tune on"), speaker_name)
    data: str = setting(  # see load_speaker_data
        "held-out",
        N_(
            "held-out (half of the speaker's unseen speeches; the other half validates) or "
            "pretraining (the speaker's speeches the GPT was pre-trained on)"
        ),
        choices=DATA_SOURCES,
    )

    def __post_init__(self) -> None:
        check_choices(self)
        self.lora()  # checks rank and alpha

    def lora(self) -> lora.LoRAConfig:
        return lora.LoRAConfig(rank=self.rank, alpha=self.alpha, targets=self.targets)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class FinetuneRecipe:
    model: FinetuneConfig
    train: TrainConfig
    batch_size: int
    eval_batches: int = 20


#: The recipe settings that only LoRA has (a full fine-tune refuses them rather than ignore them).
LORA_SETTINGS = {"rank", "alpha", "targets"}


def recipe_for(
    profile: runtime.Profile | None = None, method: str = "lora", **overrides
) -> FinetuneRecipe:
    """The fine-tuning recipe of a profile for ``method``; any field may be overridden (see
    :func:`training.override`).

    The speaker's fine-tuning text is small (PETRUCHIO's first 67 unseen speeches, 13,200
    characters), so 80 steps of 16 blocks read it about twelve times. Measured on it
    (benchmarks/RESULTS.md): all weights at 3e-5 lower the speaker loss through 80 steps, while at
    1e-4 they overfit after 40; LoRA's adapters start at zero and are few, and learn at ten times
    that rate, 3e-4."""
    lora_only = sorted(set(overrides) & LORA_SETTINGS)
    if method == "full" and lora_only:
        names = f"{lora_only[0]} (--{lora_only[0]})"
        for name in lora_only[1:]:
            names = _("{names} and {name}").format(names=names, name=f"{name} (--{name})")
        if len(lora_only) == 1:
            message = _(
                "{settings} is a setting of LoRA's adapters, and method 'full' (every weight) has "
                "none: leave it out, or use method 'lora'"
            )
        else:
            message = _(
                "{settings} are settings of LoRA's adapters, and method 'full' (every weight) has "
                "none: leave them out, or use method 'lora'"
            )
        raise SettingError(message.format(settings=names))
    profile = profile or runtime.get_profile()
    finetune = FinetuneConfig(method=method)
    lr = 3e-4 if method == "lora" else 3e-5
    decay = 0.0 if method == "lora" else 0.1
    base = profile.select(
        smoke=FinetuneRecipe(
            finetune,
            TrainConfig(steps=6, lr=lr, weight_decay=decay, eval_every=3, log_every=2),
            batch_size=4,
            eval_batches=2,
        ),
        cpu=FinetuneRecipe(
            finetune,
            TrainConfig(steps=80, lr=lr, weight_decay=decay, eval_every=20, log_every=5),
            batch_size=16,
            eval_batches=20,
        ),
        gpu=FinetuneRecipe(
            finetune,
            TrainConfig(steps=80, lr=lr, weight_decay=decay, eval_every=10, log_every=5),
            batch_size=16,
            eval_batches=100,
        ),
    )
    return training.override(base, **overrides)


def describe(recipe: FinetuneRecipe) -> str:
    c = recipe.model
    if c.method != "lora":
        how = _("all weights")
    else:
        layers = {  # one of lora.TARGET_LAYERS (FinetuneConfig checks it)
            "attention": _("LoRA rank {rank}, alpha {alpha}, on the attention layers"),
            "mlp": _("LoRA rank {rank}, alpha {alpha}, on the MLP layers"),
            "both": _("LoRA rank {rank}, alpha {alpha}, on the attention and MLP layers"),
        }[c.targets]
        how = layers.format(rank=c.rank, alpha=f"{c.alpha:g}")
    return _("{speaker}'s speeches, {how}, {length} of {batch_size} sequences").format(
        speaker=c.speaker,
        how=how,
        length=training.describe_length(recipe.train),
        batch_size=recipe.batch_size,
    )


def variant(recipe: FinetuneRecipe) -> str:
    """The file-name variant of a run's checkpoint: its method (``lora`` or ``full``), so that a full
    fine-tune and an adapter never share a file."""
    return recipe.model.method


def checkpoint_name(recipe: FinetuneRecipe) -> str:
    if recipe.model.method != "lora":
        raise SettingError(
            _(
                "the course ships a LoRA adapter only; --pretrained needs --method lora "
                "(a full fine-tune is a whole GPT: save it with --out)"
            )
        )
    return PRETRAINED_NAME


# --------------------------------------------------------------------------------------------
# The data: one speaker, held out honestly
# --------------------------------------------------------------------------------------------


@dataclass
class SpeakerData:
    speaker: str
    tokenizer: data.CharTokenizer
    train_speeches: list[data.Speech]  # the speaker's speeches in the pre-training text
    val_speeches: list[data.Speech]  # ... in the held-out last 10%
    train_ids: torch.Tensor  # those speeches as the script writes them, joined
    val_ids: torch.Tensor
    general_val_ids: torch.Tensor  # the whole held-out 10%: every speaker


def script_text(speeches: list[data.Speech]) -> str:
    """Speeches as the script writes them: ``NAME:\\ntext``, separated by blank lines."""
    return "".join(f"{speech.speaker}:\n{speech.text}\n\n" for speech in speeches)


def speakers_on_both_sides(corpus: str) -> list[tuple[str, int, int]]:
    """(speaker, characters before the cut, characters after) for every speaker with speeches on
    both sides of lesson 02's 90% cut, most held-out text first."""
    before, after = data.split_speeches(data.parse_speeches(corpus), int(0.9 * len(corpus)))
    sizes: dict[str, list[int]] = {}
    for side, speeches in enumerate((before, after)):
        for speech in speeches:
            sizes.setdefault(speech.speaker, [0, 0])[side] += len(speech.text)
    both = [(name, b, a) for name, (b, a) in sizes.items() if b and a]
    return sorted(both, key=lambda row: -row[2])


def load_speaker_data(
    speaker: str = SPEAKER,
    shakespeare: gpt_trainer.ShakespeareData | None = None,
    source: str = "held-out",
) -> SpeakerData:
    """One speaker's fine-tuning and validation text, and the general validation text.

    ``source="held-out"`` (the default): only text the GPT never saw: the first half of the
    speaker's speeches in the last 10% train, the second half validate, and the other speakers'
    speeches there are the general text (fine-tuning on new data, as one usually does).
    ``source="pretraining"``: the speaker's speeches in the first 90% (text the GPT was pre-trained
    on) train, those in the last 10% validate, and the whole last 10% is the general text."""
    if source not in DATA_SOURCES:
        raise SettingError(
            _("source must be one of {choices}, got {value}").format(
                choices=", ".join(DATA_SOURCES), value=repr(source)
            )
        )
    corpus = data.load_tiny_shakespeare()
    shakespeare = shakespeare or gpt_trainer.load_data()
    boundary = len(shakespeare.train_ids)  # one token per character: lesson 02's cut
    before, after = data.split_speeches(data.parse_speeches(corpus), boundary)
    mine = [s for s in before if s.speaker == speaker], [s for s in after if s.speaker == speaker]
    if not (mine[0] and mine[1]):
        names = ", ".join(name for name, _before, _after in speakers_on_both_sides(corpus)[:8])
        if not (mine[0] or mine[1]):
            raise SettingError(
                _(
                    "no speaker is called {speaker} in Tiny Shakespeare (names are in capitals, "
                    "as the play prints them); speakers who can be fine-tuned on: {speakers}"
                ).format(speaker=repr(speaker), speakers=names)
            )
        if mine[0]:
            message = _(
                "{speaker} speaks only before the 90% cut, so it cannot be fine-tuned on and "
                "validated honestly; speakers on both sides (most held-out text first): {speakers}"
            )
        else:
            message = _(
                "{speaker} speaks only after the 90% cut, so it cannot be fine-tuned on and "
                "validated honestly; speakers on both sides (most held-out text first): {speakers}"
            )
        raise SettingError(message.format(speaker=repr(speaker), speakers=names))

    def encode(speeches: list[data.Speech]) -> torch.Tensor:
        return gpt_trainer.ids_tensor(shakespeare.tokenizer.encode(script_text(speeches)))

    general = shakespeare.val_ids
    if source == "held-out":
        half = len(mine[1]) // 2
        mine = mine[1][:half], mine[1][half:]
        general = encode([s for s in after if s.speaker != speaker])
    return SpeakerData(
        speaker, shakespeare.tokenizer, mine[0], mine[1], encode(mine[0]), encode(mine[1]), general
    )


def evaluate(
    model: GPT,
    speaker_data: SpeakerData,
    batches: int,
    batch_size: int,
    world: distributed.World | None = None,
) -> dict:
    """The speaker loss and the general loss (nats per character, fixed blocks; with a
    data-parallel ``world``, every rank must call it)."""
    return {
        "speaker_loss": gpt_trainer.estimate_loss(
            model, speaker_data.val_ids, batches, batch_size, world=world
        ),
        "general_loss": gpt_trainer.estimate_loss(
            model, speaker_data.general_val_ids, batches, batch_size, world=world
        ),
    }


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


@dataclass
class FinetuneRun(Run):
    """A fine-tuning run also carries the tokenizer and the base GPT's sha256."""

    tokenizer: data.CharTokenizer | None = None
    base_sha256: str = ""


def base_sha256() -> str:
    """The sha256 of the course's pretrained GPT: the base every adapter is trained on."""
    return checkpoints.manifest()[BASE_NAME]["sha256"]


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """The memory of the optimizer's state (AdamW: two moments per trainable number)."""
    return sum(
        value.numel() * value.element_size()
        for state in optimizer.state.values()
        for value in state.values()
        if isinstance(value, torch.Tensor) and value.dim() > 0
    )


def prepare(model: GPT, config: FinetuneConfig, lr: float, weight_decay: float):
    """Make ``model`` ready for ``config.method`` and return its optimizer: LoRA freezes the model
    and adds adapters (the optimizer sees only them); full trains every weight."""
    if config.method == "lora":
        lora.add_lora(model, config.lora())
        trainable = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    return model.configure_optimizer(lr, weight_decay)


def train(
    recipe: FinetuneRecipe,
    device: torch.device | None = None,
    progress: bool = True,
    *,
    speaker_data: SpeakerData | None = None,
    on_trained: training.OnTrained | None = None,
) -> FinetuneRun:
    """Fine-tune the pretrained GPT with ``recipe`` on its speaker's speeches."""
    config = recipe.model
    runtime.seed_everything(recipe.train.seed)
    device = device or runtime.get_device()
    speaker_data = speaker_data or load_speaker_data(config.speaker, source=config.data)
    model = gpt_trainer.load().model
    model.to(device).train()
    block_size = model.config.block_size
    world = distributed.world(device)

    def evaluation(m: GPT) -> dict:
        return evaluate(m, speaker_data, recipe.eval_batches, recipe.batch_size, world)

    before = training.run_evaluation(model, evaluation)
    optimizer = prepare(model, config, recipe.train.lr, recipe.train.weight_decay)
    generator = torch.Generator().manual_seed(recipe.train.seed)
    batches = gpt_trainer.random_blocks(
        speaker_data.train_ids, block_size, recipe.batch_size, generator
    )
    history = training.train(
        model,
        lambda m, batch: (m(*batch)[1], {}),
        batches,
        recipe.train,
        evaluate=evaluation,
        optimizer=optimizer,
        device=device,
        progress=progress,
        description=N_("fine-tune (full)") if config.method == "full" else N_("fine-tune (lora)"),
        units_per_example=block_size,
        unit="tokens",
        on_trained=training.report_trained(
            on_trained,
            lambda h: FinetuneRun(
                model,
                recipe,
                h,
                training.training_figures(h, block_size, "tokens_per_second"),
                speaker_data.tokenizer,
                base_sha256=base_sha256(),
            ),
        ),
    )
    model.eval()
    trainable, total = lora.parameter_counts(model)
    after = {name: values[-1] for name, values in history.eval_metrics.items()}
    metrics = {
        "speaker_loss": after["speaker_loss"],
        "general_loss": after["general_loss"],
        "base_speaker_loss": before["speaker_loss"],
        "base_general_loss": before["general_loss"],
        "trainable_parameters": trainable,
        "parameters": total,
        "optimizer_state_bytes": optimizer_state_bytes(optimizer),
        **training.training_figures(history, block_size, "tokens_per_second"),
    }
    return FinetuneRun(
        model, recipe, history, metrics, speaker_data.tokenizer, base_sha256=base_sha256()
    )


def summary(run: FinetuneRun) -> dict[str, object]:
    m = run.metrics
    return {
        **training.training_rows(run, N_("tokens/s"), "tokens_per_second"),
        _("trainable parameters"): _("{trainable} of {total}").format(
            trainable=f"{m['trainable_parameters']:,}", total=f"{m['parameters']:,}"
        ),
        _("optimizer state [KiB]"): m["optimizer_state_bytes"] / 1024,
        _("{speaker} loss [nats/char]").format(speaker=run.recipe.model.speaker): (
            f"{m['base_speaker_loss']:.4f} -> {m['speaker_loss']:.4f}"
        ),
        _("general loss [nats/char]"): f"{m['base_general_loss']:.4f} -> {m['general_loss']:.4f}",
    }


# --------------------------------------------------------------------------------------------
# Checkpoints: a whole GPT (full), or the adapters alone with their base's sha256 (LoRA)
# --------------------------------------------------------------------------------------------


def save_run(run: FinetuneRun, path: str | Path, command: str) -> str | None:
    """Save a fine-tuned model: LoRA saves only the adapters (and the base's sha256); full saves
    the whole GPT, which ``aigc-course generate gpt --checkpoint`` also reads."""
    config = run.recipe.model
    extra = {"finetune": config.to_dict(), "tokenizer": run.tokenizer.to_dict()}
    if config.method == "full":
        return training.save_run(run, path, command, **extra)
    extra |= {"base": BASE_NAME, "base_sha256": run.base_sha256}
    return training.save_run(run, path, command, keep=lambda name: ".lora_" in name, **extra)


def load(path: str | Path | None = None, base: str | Path | None = None) -> training.Loaded:
    """A fine-tuned GPT: from ``path``, or the course's pretrained adapter by default.

    A LoRA checkpoint goes onto its base GPT: the course's pretrained one, or the GPT checkpoint
    at ``base``; a base whose sha256 is not the one the adapter was trained on is refused (an
    adapter is a change to particular weights, meaningless on others)."""
    checkpoint = (
        checkpoints.load_pretrained(PRETRAINED_NAME) if path is None else checkpoints.load(path)
    )
    where = path if path is not None else PRETRAINED_NAME
    finetune = checkpoint.extra.get("finetune")
    if not finetune:
        raise CheckpointError(
            _(
                "{checkpoint} is not a fine-tuning checkpoint; write one with aigc-course train "
                "finetune"
            ).format(checkpoint=where)
        )
    if finetune["method"] == "full":
        return gpt_trainer.load(path)
    expected = checkpoint.extra["base_sha256"]
    actual = base_sha256() if base is None else checkpoints.sha256_file(Path(base))
    if actual != expected:
        raise CheckpointError(
            _(
                "{checkpoint} holds LoRA adapters trained on the base GPT with sha256 "
                "{expected}..., but this base is {actual}...: adapters fit only the weights they "
                "were trained on. Load them onto that base, or train new ones on this base "
                "(aigc-course train finetune --method lora)."
            ).format(checkpoint=where, expected=expected[:16], actual=actual[:16])
        )
    based = gpt_trainer.load(base, expected_sha256=expected)
    model = based.model
    lora.add_lora(model, FinetuneConfig(**finetune).lora())
    adapters = lora.adapter_state_dict(model)
    if adapters.keys() != checkpoint.state_dict.keys():
        raise CheckpointError(
            _(
                "{checkpoint}: its adapters do not match the layers its settings name ({settings})"
            ).format(checkpoint=where, settings=finetune)
        )
    model.load_state_dict(checkpoint.state_dict, strict=False)
    return training.Loaded(model.eval(), checkpoint, tokenizer=based.tokenizer)
