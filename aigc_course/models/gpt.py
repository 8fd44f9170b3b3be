"""A small GPT: a decoder-only Transformer trained on next-token prediction.

    tokens (B, T) -> token embedding + learned position embedding -> dropout
      -> n_layer x Block:  x = x + attention(LayerNorm(x));  x = x + MLP(LayerNorm(x))   (pre-LN)
      -> LayerNorm -> linear head, its weight tied to the token embedding -> logits (B, T, V)

Attention is *causal* self-attention (lesson 04): position t sees positions <= t only. There is no
encoder and no cross-attention. The loss is the mean cross-entropy of the next token, in nats, the
same quantity as lesson 02's bigram NLL, so the two compare directly.

Initialisation follows GPT-2: weights N(0, 0.02²) (std 0.02), biases 0, and the two projections that write
into the residual stream scaled by 1 / sqrt(2 * n_layer), so the stream's variance does not grow
with depth. Generation keeps a **KV cache**: the keys and values of past tokens are stored, so
each new token costs one position's work instead of the whole context's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from aigc_course.attention import attention, merge_heads, split_heads
from aigc_course.errors import SettingError
from aigc_course.i18n import _


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 65
    block_size: int = 256  # the longest context, T
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384  # C
    dropout: float = 0.2
    bias: bool = True
    attention: Literal["sdpa", "manual"] = "sdpa"  # "manual" is lesson 04's from-scratch path

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(
                _("n_embd={n_embd} must be divisible by n_head={n_head}").format(
                    n_embd=self.n_embd, n_head=self.n_head
                )
            )

    def to_dict(self) -> dict:
        return asdict(self)


class KVCache:
    """The keys and values of the tokens seen so far, per layer: each ``(B, H, T_past, C / H)``."""

    def __init__(self, n_layer: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * n_layer
        self.values: list[torch.Tensor | None] = [None] * n_layer

    @property
    def length(self) -> int:
        """Positions stored (in every layer, once a forward pass has finished)."""
        return self.length_of(len(self.keys) - 1)

    def length_of(self, layer: int) -> int:
        """Positions stored for ``layer``: during a forward pass, earlier layers are ahead."""
        return 0 if self.keys[layer] is None else self.keys[layer].shape[2]

    def update(
        self, layer: int, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's keys and values ``(B, H, T_new, D)``; return all of them."""
        if self.keys[layer] is not None:
            key = torch.cat([self.keys[layer], key], dim=2)
            value = torch.cat([self.values[layer], value], dim=2)
        self.keys[layer], self.values[layer] = key, value
        return key, value


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int) -> None:
        super().__init__()
        self.config, self.layer = config, layer
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # fused Q, K, V
        self.proj = nn.Linear(
            config.n_embd, config.n_embd, bias=config.bias
        )  # writes to the residual
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, cache: KVCache | None = None, return_weights: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, C) -> (B, T, C)``; with a cache, x holds only the new tokens. With
        ``return_weights``, also the attention weights ``(B, H, T, T_past + T)`` (computed by
        lesson 04's :func:`attention`, the path that has them)."""
        past = cache.length_of(self.layer) if cache is not None else 0
        q, k, v = self.qkv(x).split(self.config.n_embd, dim=2)
        q, k, v = (split_heads(t, self.config.n_head) for t in (q, k, v))  # (B, H, T, D)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        # New query i sits at absolute position past + i and may see keys 0 .. past + i.
        mask, is_causal = None, True
        if past > 0:
            is_causal = False
            if q.shape[2] > 1:
                mask = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=x.device).tril(
                    past
                )
        dropout = self.config.dropout if self.training else 0.0
        weights = None
        if self.config.attention == "sdpa" and not return_weights:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=is_causal
            )
        else:
            y, weights = attention(q, k, v, mask=mask, is_causal=is_causal, dropout_p=dropout)
        y = self.resid_dropout(self.proj(merge_heads(y)))
        return (y, weights) if return_weights else y


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(
            4 * config.n_embd, config.n_embd, bias=config.bias
        )  # writes to the residual
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # token embedding
        self.wpe = nn.Embedding(config.block_size, config.n_embd)  # learned positions
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, layer) for layer in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying: one matrix reads and writes tokens
        self.apply(self._init_weights)
        for name, parameter in self.named_parameters():
            if name.endswith("proj.weight"):  # the residual projections, GPT-2 style
                nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self, exclude_positions: bool = True) -> int:
        """Parameters, counting the tied matrix once (and, by default, not the position table)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if exclude_positions else n

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Token ids ``(B, T)`` -> logits ``(B, T, V)``, and the mean next-token loss if ``targets``."""
        past = cache.length if cache is not None else 0
        length = idx.shape[1]
        if past + length > self.config.block_size:
            raise ValueError(
                _("{positions} positions exceed the context of {context}; crop the input").format(
                    positions=past + length, context=self.config.block_size
                )
            )
        positions = torch.arange(past, past + length, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(positions))
        for block in self.blocks:
            x = block(x, cache)
        logits = self.lm_head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        return logits, loss

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """The causal attention weights of every layer for token ids ``(1, T)``: a list of
        ``(H, T, T)`` on the CPU, one per layer, from the model's own forward pass."""
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(positions))
        maps = []
        for block in self.blocks:
            _output, weights = block.attn(block.ln_1(x), return_weights=True)
            maps.append(weights[0].cpu())
            x = block(x)
        return maps

    def configure_optimizer(
        self,
        lr: float,
        weight_decay: float,
        betas: tuple[float, float] = (0.9, 0.99),
        fused: bool | None = None,
    ) -> torch.optim.AdamW:
        """AdamW with weight decay on the matrices (2-D parameters) only; biases and LayerNorm
        gains are not decayed, as shrinking them towards 0 has no regularising meaning."""
        decay = [p for p in self.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        if fused is None:
            fused = next(self.parameters()).is_cuda
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6 N (forward and backward through the weights) plus the
        attention scores, 12 * n_layer * n_head * head_dim * T (PaLM's appendix B estimate)."""
        c = self.config
        return (
            6 * self.num_parameters()
            + 12 * c.n_layer * c.n_head * (c.n_embd // c.n_head) * c.block_size
        )

    @torch.no_grad()
    def continuation_nll(self, prompt: torch.Tensor, continuation: torch.Tensor) -> float:
        """Mean negative log-likelihood, in nats per token, of ``continuation`` ``(C,)`` read after
        ``prompt`` ``(P,)``: how well the model predicts a text once it has seen the prompt, the
        measure of what a prompt does (a speaker tag, a few examples before a question).

        The first continuation token is predicted from the prompt's last token, so ``P >= 1``.
        A prompt longer than the context left beside the continuation is cut from the left, as
        the model could not see that part anyway; ``C`` must fit in the context. Evaluated in
        eval mode (no dropout); the model's mode is restored after.
        """
        if prompt.dim() != 1 or continuation.dim() != 1:
            raise SettingError(_("prompt and continuation must be 1-D tensors of token ids"))
        if prompt.numel() < 1:
            raise SettingError(
                _(
                    "the prompt needs at least one token (e.g. a newline) to predict the "
                    "continuation's first token from"
                )
            )
        if not 1 <= continuation.numel() <= self.config.block_size:
            raise SettingError(
                _(
                    "the continuation must be 1 to {context} tokens (the context), got {length}"
                ).format(context=self.config.block_size, length=continuation.numel())
            )
        device = self.wte.weight.device
        ids = torch.cat([prompt, continuation])[-(self.config.block_size + 1) :].to(device)
        was_training = self.training
        self.eval()
        try:
            logits, _loss = self(ids[None, :-1])
        finally:
            self.train(was_training)
        n = continuation.numel()  # the last n positions predict the continuation's n tokens
        return F.cross_entropy(logits[0, -n:].float(), ids[-n:]).item()

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
        on_token: Callable[[int], None] | None = None,
        adjust_logits: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Continue ``idx`` ``(B, T)`` by ``max_new_tokens`` tokens; ``temperature=0`` is greedy.

        ``on_token(id)`` is called with each new token of the first sequence (to stream text).
        ``adjust_logits(ids, logits)`` may change the next token's logits ``(B, V)`` before sampling,
        knowing the sequences so far ``(B, T)`` (e.g. a watermark's bias, lesson 12).
        With ``use_cache`` each step feeds only the new token. Once the sequence is longer than
        the context, the window slides and every position changes, so the cache is rebuilt from
        the last ``block_size`` tokens: exactly what the no-cache path computes. The cache saves
        work while the sequence fits in the context.
        """
        check_sampling(temperature, top_k, top_p)
        if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise SettingError(
                _("max_new_tokens must be 0 or more, got {value}").format(
                    value=repr(max_new_tokens)
                )
            )
        block = self.config.block_size
        cache = KVCache(self.config.n_layer) if use_cache else None
        new_input = idx[:, -block:]
        for _step in range(max_new_tokens):
            if cache is None:
                logits, _loss = self(idx[:, -block:])
            else:
                if cache.length + new_input.shape[1] > block:
                    # The window slides: every position shifts, so the cached keys and values
                    # (computed at the old positions) are stale. Recompute the whole window.
                    cache = KVCache(self.config.n_layer)
                    new_input = idx[:, -block:]
                logits, _loss = self(new_input, cache=cache)
            next_logits = logits[:, -1, :]
            if adjust_logits is not None:
                next_logits = adjust_logits(idx, next_logits)
            next_token = sample_next(next_logits, temperature, top_k, top_p, generator)
            idx = torch.cat([idx, next_token], dim=1)
            new_input = next_token
            if on_token is not None:
                on_token(int(next_token[0, 0]))
        return idx


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Raise :class:`~aigc_course.errors.SettingError` unless ``temperature >= 0``, ``top_k >= 1``
    and ``0 < top_p <= 1`` (``None``: no top-k or top-p filter)."""
    if not (math.isfinite(temperature) and temperature >= 0):
        raise SettingError(
            _("temperature must be 0 (greedy) or more, got {value}").format(value=repr(temperature))
        )
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise SettingError(
            _("top_k must be a whole number of at least 1 (or None), got {value}").format(
                value=repr(top_k)
            )
        )
    if top_p is not None and not (0 < top_p <= 1):
        raise SettingError(
            _("top_p must be in (0, 1] (or None), got {value}").format(value=repr(top_p))
        )


def filter_logits(
    logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the top-p nucleus. ``(B, V) -> (B, V)``.

    top-p keeps the smallest set of most probable tokens whose probabilities add up to at least p
    (the most probable token is always kept).
    """
    if top_k is not None:
        k = min(top_k, logits.shape[-1])
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        remove_sorted = (
            cumulative - torch.softmax(sorted_logits, dim=-1) >= top_p
        )  # mass before this token
        remove_sorted[..., 0] = False  # the most probable token stays, whatever the rounding
        remove = remove_sorted.scatter(-1, order, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token per row ``(B, 1)`` from last-position logits ``(B, V)``."""
    check_sampling(temperature, top_k, top_p)
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    scaled = logits.float() / temperature
    if not torch.isfinite(scaled.amax(dim=-1)).all():
        # So cold that the largest logit overflows (or every logit underflows) in float32: the
        # distribution is one-hot on the most likely token, which is greedy decoding.
        return logits.argmax(dim=-1, keepdim=True)
    logits = filter_logits(scaled, top_k, top_p)
    probabilities = torch.softmax(logits, dim=-1)
    if generator is not None and generator.device != probabilities.device:
        return torch.multinomial(probabilities.cpu(), 1, generator=generator).to(logits.device)
    return torch.multinomial(probabilities, 1, generator=generator)


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


@torch.no_grad()
def sample_text(
    model: GPT,
    tokenizer: Tokenizer,
    prompt: str,
    tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
) -> str:
    """The prompt continued by ``tokens`` characters: what lesson 08's sampler widget shows.

    ``tokenizer`` is anything with ``encode(str) -> list[int]`` and ``decode(list[int]) -> str``
    (the course's :class:`aigc_course.data.CharTokenizer`).
    """
    ids = tokenizer.encode(prompt)
    if not ids:
        raise ValueError(_("the prompt is empty: give the model some text to continue"))
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    out = model.generate(
        torch.tensor([ids], device=device),
        tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        generator=generator,
    )
    return tokenizer.decode(out[0].tolist())
