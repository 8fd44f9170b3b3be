"""Plain functions behind the lessons' interactive widgets, so they can be tested without a browser.

(Lesson 01's forward/reverse KL sliders use :func:`aigc_course.divergences.forward_reverse_fits`.)
"""

from __future__ import annotations

import torch

from aigc_course.nn.attention import attention, sinusoidal_positions


def sentence_attention(
    sentence: str,
    *,
    causal: bool = False,
    scaled: bool = True,
    position_strength: float = 0.0,
    dim: int = 32,
    seed: int = 0,
) -> tuple[list[str], torch.Tensor]:
    """Self-attention weights ``(T, T)`` over the words of ``sentence``, for lesson 04's explorer.

    Each distinct word gets a fixed random embedding with unit-variance entries (so identical
    words match strongly), plus ``position_strength`` times the sinusoidal position encoding.
    Queries and keys are the embeddings themselves (no learned projections), which makes the map
    readable: a word attends to its repeats, positions add locality, the causal mask hides the
    future, and without the 1/sqrt(d) scaling the softmax saturates to one-hot rows.
    """
    words = sentence.split()
    if not words:
        raise ValueError("the sentence has no words")
    generator = torch.Generator().manual_seed(seed)
    vocabulary = sorted(set(words))
    table = torch.randn(len(vocabulary), dim, generator=generator)
    x = table[torch.tensor([vocabulary.index(word) for word in words])]
    x = x + position_strength * sinusoidal_positions(len(words), dim) * dim**0.5 / 2
    scale = None if scaled else 1.0
    _, weights = attention(x[None], x[None], x[None], is_causal=causal, scale=scale)
    return words, weights[0]


# --------------------------------------------------------------------------------------------
# Lesson 06: looking inside a VAE
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def decode_latent(model, z: list[float] | torch.Tensor) -> torch.Tensor:
    """The image ``(28, 28)`` (pixel probabilities) that a VAE decodes from one code ``z``."""
    device = next(model.parameters()).device
    z = torch.as_tensor(z, dtype=torch.float32, device=device).reshape(1, -1)
    return torch.sigmoid(model.decode(z))[0, 0].cpu()


@torch.no_grad()
def latent_grid(model, n: int = 15, span: float = 2.5) -> torch.Tensor:
    """A 2-D latent model's decoded manifold: an ``(n * 28, n * 28)`` image of the grid
    z in [-span, span]^2 (first coordinate left to right, second bottom to top)."""
    values = torch.linspace(-span, span, n)
    rows = [
        torch.cat([decode_latent(model, [x, y]) for x in values], dim=1) for y in values.flip(0)
    ]
    return torch.cat(rows, dim=0)


@torch.no_grad()
def interpolate(model, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """Images decoded along the straight line between the posterior means of two images:
    ``(steps, 28, 28)``, starting at ``x_a`` and ending at ``x_b``."""
    device = next(model.parameters()).device
    mean, _ = model.encode(torch.stack([x_a, x_b]).to(device))
    weights = torch.linspace(0, 1, steps, device=device)[:, None]
    z = (1 - weights) * mean[0] + weights * mean[1]
    return torch.sigmoid(model.decode(z))[:, 0].cpu()


@torch.no_grad()
def active_units(model, x: torch.Tensor, threshold: float = 0.01) -> int:
    """How many latent dimensions the encoder uses: Var over x of E[z_j | x] above ``threshold``.

    A dimension whose posterior mean is the same for every image carries no information about x;
    when most are like that, the posterior has *collapsed* onto the prior.
    """
    device = next(model.parameters()).device
    mean, _ = model.encode(x.to(device))
    return int((mean.var(dim=0) > threshold).sum().item())


# --------------------------------------------------------------------------------------------
# Lesson 08: sampling from a GPT and looking at its attention
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def sample_text(
    model,
    tokenizer,
    prompt: str,
    tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
) -> str:
    """The prompt continued by ``tokens`` characters (the sampler widget's function)."""
    ids = tokenizer.encode(prompt)
    if not ids:
        raise ValueError("the prompt is empty: give the model some text to continue")
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


@torch.no_grad()
def gpt_attention_maps(model, idx: torch.Tensor) -> list[torch.Tensor]:
    """The causal attention weights of every layer for token ids ``(1, T)``: a list of ``(H, T, T)``.

    Runs the model's own layers, computing each layer's attention with lesson 04's
    :func:`aigc_course.nn.attention.attention` to get the weights out.
    """
    from aigc_course.nn.attention import split_heads

    positions = torch.arange(idx.shape[1], device=idx.device)
    x = model.wte(idx) + model.wpe(positions)
    maps = []
    for block in model.blocks:
        attn = block.attn
        q, k, v = attn.qkv(block.ln_1(x)).split(attn.config.n_embd, dim=2)
        q, k, v = (split_heads(t, attn.config.n_head) for t in (q, k, v))
        _, weights = attention(q, k, v, is_causal=True)
        maps.append(weights[0].cpu())
        x = block(x)
    return maps
