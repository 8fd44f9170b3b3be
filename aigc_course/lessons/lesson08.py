"""Lesson 08's experiments: the ablation (from a bigram to a GPT, one ingredient at a time),
three shapes of GPT raced for the same minutes (which model is best for a budget), and the same GPT
on 唐诗三百首 (a vocabulary of thousands of characters, a corpus small enough to memorise)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aigc_course import data, metrics, runtime, training
from aigc_course.attention import AttentionConfig, MultiHeadSelfAttention
from aigc_course.data.text import train_val_ids
from aigc_course.i18n import _
from aigc_course.models.gpt import GPT, GPTConfig, sample_text
from aigc_course.trainers import gpt as gpt_trainer
from aigc_course.trainers.gpt import ShakespeareData, estimate_loss, ids_tensor, random_blocks
from aigc_course.training import TrainConfig

INGREDIENTS = (
    "1 embedding only",
    "2 + one attention head",
    "3 + multi-head",
    "4 + MLP",
    "5 + residual, LayerNorm",
    "6 four blocks (GPT)",
)


class IngredientModel(nn.Module):
    """Stages 1-5 of the ablation (stage 6 is the :class:`GPT` itself): each adds one ingredient.

    1 a token embedding and a linear head (a bigram model in neural form); 2 + learned positions and
    one causal attention head; 3 several heads; 4 an MLP after the attention; 5 residual connections
    around both, each reading through a LayerNorm (a pre-LN block).
    """

    def __init__(self, stage: int, vocab_size: int, block_size: int, n_embd: int, n_head: int):
        super().__init__()
        self.stage = stage
        self.config = GPTConfig(vocab_size, block_size, n_embd=n_embd, n_head=n_head)
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.head = nn.Linear(n_embd, vocab_size)
        if stage >= 2:
            self.wpe = nn.Embedding(block_size, n_embd)
            heads = 1 if stage == 2 else n_head
            self.attn = MultiHeadSelfAttention(AttentionConfig(n_embd, heads, causal=True))
        if stage >= 4:
            self.mlp = nn.Sequential(
                nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd)
            )
        if stage >= 5:
            self.ln_1, self.ln_2, self.ln_f = (nn.LayerNorm(n_embd) for _ in range(3))

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Token ids ``(B, T)`` -> logits ``(B, T, V)`` and the mean next-token loss if ``targets``."""
        x = self.wte(idx)
        if self.stage >= 2:
            x = x + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        if self.stage in (2, 3):
            x = self.attn(x)
        elif self.stage == 4:
            x = self.mlp(self.attn(x))
        elif self.stage == 5:
            x = x + self.attn(self.ln_1(x))
            x = self.ln_f(x + self.mlp(self.ln_2(x)))
        logits = self.head(x)
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss


@dataclass(frozen=True)
class AblationRow:
    val_loss: float  # nats per character
    parameters: int  # every parameter, position embeddings included


def ingredient_ablation(
    shakespeare: ShakespeareData,
    steps: int,
    eval_batches: int,
    device: torch.device | None = None,
    block_size: int = 64,
    n_embd: int = 64,
    n_head: int = 4,
    batch_size: int = 32,
    lr: float = 3e-3,
) -> dict[str, AblationRow]:
    """Train each stage of :data:`INGREDIENTS` from the same seed on the same batches for ``steps``
    steps, and measure its validation loss on the same ``eval_batches`` blocks."""
    vocab_size = shakespeare.tokenizer.vocab_size
    size = {"block_size": block_size, "n_embd": n_embd, "n_head": n_head}
    results = {}
    for stage, name in enumerate(INGREDIENTS, start=1):
        torch.manual_seed(0)
        if stage < 6:
            model: nn.Module = IngredientModel(stage, vocab_size, **size)
        else:
            model = GPT(GPTConfig(vocab_size=vocab_size, n_layer=4, dropout=0.0, **size))
        batches = random_blocks(
            shakespeare.train_ids, block_size, batch_size, torch.Generator().manual_seed(0)
        )
        training.train(
            model,
            lambda m, batch: (m(*batch)[1], {}),
            batches,
            TrainConfig(steps=steps, lr=lr, log_every=max(steps // 10, 1)),
            device=device,
            progress=False,
        )
        model.eval()
        results[name] = AblationRow(
            estimate_loss(model, shakespeare.val_ids, eval_batches, batch_size),
            sum(p.numel() for p in model.parameters()),
        )
    return results


#: Three shapes raced for the same minutes, as changes to the cpu profile's GPT recipe: the
#: step-count recipe itself (the pretrained GPT's), the recipe the sweep found best for a few
#: CPU-minutes (the first row of trainers.gpt.CPU_BUDGETS: fewer layers and a shorter context:
#: more, cheaper steps), and a larger model.
SHAPES: dict[str, dict[str, float]] = {
    "4 layers x 128, context 128, batch 16": {},
    "2 layers x 128, context 64, batch 16": gpt_trainer.CPU_BUDGETS[0].changes,
    "6 layers x 192, context 128, batch 16": {"n_layer": 6, "n_embd": 192, "n_head": 6},
}


def race(
    profile: runtime.Profile,
    shakespeare: ShakespeareData,
    minutes: float | None,
    steps: int | None = None,
    device: torch.device | None = None,
) -> dict[str, gpt_trainer.GPTRun]:
    """Train each of :data:`SHAPES` for the same wall-clock ``minutes`` (or ``steps``: the smoke
    profile's quick check), scored once at the end on the same 20 fixed validation batches.
    Each run's ``history`` holds its training loss against ``step_seconds``."""
    runs = {}
    for name, changes in SHAPES.items():
        recipe = gpt_trainer.recipe_for(profile, **changes)  # by steps: not the budget's recipe
        recipe = training.override(
            recipe, minutes=minutes, steps=steps or recipe.train.steps, eval_every=10**9,
            eval_batches=20, log_every=5,
        )  # fmt: skip
        # Every shape the same minutes, compiled alike: no step limit (the gpu recipe's ends at
        # 2,500 steps, which a cheap shape could reach inside the race) and PyTorch's default
        # compile mode (CUDA graphs' longer compilation would eat a short race's minutes).
        train = dataclasses.replace(recipe.train, max_steps=None, compile_mode=None)
        recipe = dataclasses.replace(recipe, train=train)
        runs[name] = gpt_trainer.train(recipe, device, progress=False, shakespeare=shakespeare)
    return runs


# --------------------------------------------------------------------------------------------
# The same GPT on 唐诗三百首
# --------------------------------------------------------------------------------------------


@dataclass
class PoemCorpus:
    """The poems as one text, its character tokenizer, and lesson 02's split (first 90% trains)."""

    poems: list[data.Poem]
    text: str
    split: ShakespeareData  # tokenizer, train_ids, val_ids: what the GPT trainer reads
    train_text: str
    val_text: str


def load_poem_corpus() -> PoemCorpus | None:
    """唐诗三百首 ready to train on, or ``None`` (with a one-line note of why and how to get it)
    when it is not on this machine and cannot be downloaded: the section is then skipped."""
    try:
        poems = data.load_tang_poems()
    except data.DataError as error:
        print(_("唐诗三百首 is not here, so this section is skipped. {error}").format(error=error))
        return None
    text = data.poems_corpus(poems)
    tokenizer = data.CharTokenizer.from_text(text)
    train_ids, val_ids = train_val_ids(text, tokenizer)
    split = ShakespeareData(tokenizer, ids_tensor(train_ids), ids_tensor(val_ids))
    return PoemCorpus(poems, text, split, text[: len(train_ids)], text[len(train_ids) :])


@dataclass
class EmbeddingShare:
    """How much of a GPT is its token embedding (tied to the output layer: one ``V x C`` matrix)."""

    corpus: str
    vocab_size: int
    parameters: int
    embedding: int

    @property
    def share(self) -> float:
        return self.embedding / self.parameters


def embedding_shares(config: GPTConfig, vocabularies: dict[str, int]) -> list[EmbeddingShare]:
    """The same GPT shape with each vocabulary: its parameters (the position table left out) and
    those of the token embedding, which is also the output layer (weight tying)."""
    rows = []
    for corpus, vocab_size in vocabularies.items():
        model = GPT(GPTConfig(**{**config.__dict__, "vocab_size": vocab_size}))
        rows.append(
            EmbeddingShare(corpus, vocab_size, model.num_parameters(), model.wte.weight.numel())
        )
    return rows


def train_on_poems(
    profile: runtime.Profile, corpus: PoemCorpus, steps: int, device: torch.device | None = None
) -> gpt_trainer.GPTRun:
    """Section 9's winner (2 layers x 128, context 64, batch 16, lr 3e-3) trained on the poems for
    ``steps`` steps (seeded: the same run on every machine, only its time differs), its validation
    loss measured every 100 steps on 20 fixed batches of the held-out poems."""
    recipe = gpt_trainer.recipe_for(profile, **gpt_trainer.CPU_BUDGETS[0].changes)
    recipe = training.override(
        recipe, steps=steps, eval_every=100, eval_batches=20, log_every=10
    )  # fmt: skip
    return gpt_trainer.train(recipe, device, progress=False, shakespeare=corpus.split)


@dataclass
class Recitation:
    """How much of a poem's next characters the model writes word for word when given its title,
    author and first line: for poems it trained on (``seen``) and for held-out ones (``unseen``),
    each the length of the longest verbatim piece (lesson 11's measure) of ``length`` characters."""

    seen: list[int]
    unseen: list[int]
    example: tuple[
        str, str, str
    ]  # (prompt, the model's continuation, the poem's own) of a seen poem


def recitation(
    run: gpt_trainer.GPTRun, corpus: PoemCorpus, count: int = 12, length: int = 24
) -> Recitation:
    """Ask for ``length`` characters after the title, author and first line of ``count`` training
    poems and ``count`` held-out ones (spread over each set), sampled at temperature 0.8."""
    seen = [poem for poem in corpus.poems if str(poem) in corpus.train_text]
    unseen = [poem for poem in corpus.poems if str(poem) in corpus.val_text]
    measured: dict[str, list[int]] = {"seen": [], "unseen": []}
    example = ("", "", "")
    for group, poems in (("seen", seen), ("unseen", unseen)):
        for index, poem in enumerate(poems[:: max(1, len(poems) // count)][:count]):
            first, _newline, rest = poem.text.partition("\n")
            prompt = f"{poem.title}\n作者：{poem.author}\n{first}\n"
            truth = rest[:length]
            written = sample_text(run.model, run.tokenizer, prompt, len(truth), seed=index)
            written = written[len(prompt) :]
            measured[group].append(len(metrics.longest_verbatim_substring(written, truth)))
            if group == "seen" and index == 1:
                example = (prompt, written, truth)
    return Recitation(measured["seen"], measured["unseen"], example)
