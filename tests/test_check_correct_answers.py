"""A check never rejects a right answer (COURSE.md, "Rules every lesson follows", rule 1).

For every exercise check, at least three correct answers written differently from the reference
solution: another library call, einsum instead of matmul, float64 inside, NumPy in between, a loop,
a tensor where a number is asked for (0-dim), a NumPy scalar, float32 numbers. Each must pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aigc_course import checks
from tests.test_check_catalogues import CHECKS

RIGHT: dict[str, list[tuple[str, Callable]]] = {name: [] for name in CHECKS}


def right(check: str) -> Callable[[Callable], Callable]:
    def register(function: Callable) -> Callable:
        RIGHT[check].append((function.__name__, function))
        return function

    return register


# --- lesson 00 ------------------------------------------------------------------------------------


@right("stable_softmax")
def softmax_library(logits, dim=-1):
    return torch.softmax(logits, dim=dim)


@right("stable_softmax")
def softmax_through_log_softmax(logits, dim=-1):
    return (logits - torch.logsumexp(logits, dim=dim, keepdim=True)).exp()


@right("stable_softmax")
def softmax_in_float64(logits, dim=-1):
    shifted = logits.double() - logits.double().max(dim=dim, keepdim=True).values
    return (shifted.exp() / shifted.exp().sum(dim=dim, keepdim=True)).to(logits.dtype)


# --- lesson 01 ------------------------------------------------------------------------------------


@right("entropy")
def entropy_with_where(p):
    return -torch.where(p > 0, p * p.clamp_min(1e-300).log(), torch.zeros_like(p)).sum(-1)


@right("entropy")
def entropy_from_distribution(p):
    return torch.distributions.Categorical(probs=p).entropy()


@right("entropy")
def entropy_einsum(p):
    log_p = torch.where(p > 0, p.clamp_min(torch.finfo(p.dtype).tiny).log(), 0)
    return -torch.einsum("...k,...k->...", p, log_p)


@right("kl_categorical")
def kl_library(p, q):
    return F.kl_div(q.log(), p, reduction="none").sum(-1)


@right("kl_categorical")
def kl_cross_entropy_minus_entropy(p, q):
    return -torch.xlogy(p, q).sum(-1) + torch.xlogy(p, p).sum(-1)


@right("kl_categorical")
def kl_distributions(p, q):
    return torch.distributions.kl_divergence(
        torch.distributions.Categorical(probs=p), torch.distributions.Categorical(probs=q)
    )


@right("kl_gaussians")
def kl_gaussians_library(mean_p, std_p, mean_q, std_q):
    return torch.distributions.kl_divergence(
        torch.distributions.Normal(mean_p, std_p), torch.distributions.Normal(mean_q, std_q)
    )


@right("kl_gaussians")
def kl_gaussians_log_variances(mean_p, std_p, mean_q, std_q):
    var_p, var_q = std_p**2, std_q**2
    return 0.5 * (var_q.log() - var_p.log() + (var_p + (mean_p - mean_q) ** 2) / var_q - 1)


@right("kl_gaussians")
def kl_gaussians_ratio(mean_p, std_p, mean_q, std_q):
    ratio = std_p / std_q
    return -torch.log(ratio) + 0.5 * ratio**2 + 0.5 * ((mean_p - mean_q) / std_q) ** 2 - 0.5


@right("monte_carlo_kl")
def monte_carlo_sum_over_n(samples, log_p, log_q):
    return (log_p(samples) - log_q(samples)).sum() / samples.numel()


@right("monte_carlo_kl")
def monte_carlo_two_means(samples, log_p, log_q):
    return log_p(samples).mean() - log_q(samples).mean()


@right("monte_carlo_kl")
def monte_carlo_einsum(samples, log_p, log_q):
    ratio = log_p(samples) - log_q(samples)
    return torch.einsum("n,n->", ratio, torch.full_like(ratio, 1 / ratio.numel()))


# --- lesson 02 ------------------------------------------------------------------------------------


@right("gaussian_mle")
def mle_library(x):
    return x.mean(), x.std(unbiased=False)


@right("gaussian_mle")
def mle_var_mean(x):
    variance, mean = torch.var_mean(x, unbiased=False)
    return mean, variance.sqrt()


@right("gaussian_mle")
def mle_moments(x):
    mean = x.sum() / x.numel()
    return mean, ((x**2).mean() - mean**2).clamp_min(0).sqrt()


@right("bigram_counts")
def counts_loop(ids, vocab_size):
    counts = torch.zeros(vocab_size, vocab_size)
    for a, b in zip(ids[:-1].tolist(), ids[1:].tolist(), strict=True):
        counts[a, b] += 1
    return counts


@right("bigram_counts")
def counts_index_put(ids, vocab_size):
    counts = torch.zeros(vocab_size, vocab_size)
    return counts.index_put_((ids[:-1], ids[1:]), torch.ones(len(ids) - 1), accumulate=True)


@right("bigram_counts")
def counts_numpy(ids, vocab_size):
    counts = np.zeros((vocab_size, vocab_size), dtype=np.float32)
    np.add.at(counts, (ids[:-1].numpy(), ids[1:].numpy()), 1)
    return torch.from_numpy(counts)


@right("bigram_probabilities")
def probabilities_normalize(counts, alpha):
    return F.normalize(counts + alpha, p=1, dim=1)


@right("bigram_probabilities")
def probabilities_division(counts, alpha):
    return (counts + alpha) / (counts.sum(1, keepdim=True) + alpha * counts.shape[1])


@right("bigram_probabilities")
def probabilities_einsum(counts, alpha):
    smoothed = counts + alpha
    return torch.einsum("ij,i->ij", smoothed, 1 / smoothed.sum(1))


@right("average_nll")
def average_nll_numpy_float32(probabilities, ids):
    table = probabilities.numpy().astype(np.float32)
    return -np.log(table[ids[:-1].numpy(), ids[1:].numpy()]).mean()


@right("average_nll")
def average_nll_cross_entropy(probabilities, ids):
    return F.nll_loss(probabilities[ids[:-1]].log(), ids[1:])


@right("average_nll")
def average_nll_loop(probabilities, ids):
    pairs = list(zip(ids[:-1].tolist(), ids[1:].tolist(), strict=True))
    return -sum(math.log(probabilities[a, b].item()) for a, b in pairs) / len(pairs)


# --- lesson 03 ------------------------------------------------------------------------------------


@right("discriminator_loss")
def discriminator_bce(real_logits, fake_logits):
    return F.binary_cross_entropy_with_logits(
        real_logits, torch.ones_like(real_logits)
    ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


@right("discriminator_loss")
def discriminator_logsigmoid(real_logits, fake_logits):
    return -F.logsigmoid(real_logits).mean() - F.logsigmoid(-fake_logits).mean()


@right("discriminator_loss")
def discriminator_float64(real_logits, fake_logits):
    real, fake = real_logits.double(), fake_logits.double()
    return (F.softplus(-real).mean() + F.softplus(fake).mean()).to(real_logits.dtype)


@right("generator_loss_non_saturating")
def generator_bce(fake_logits):
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


@right("generator_loss_non_saturating")
def generator_logsigmoid(fake_logits):
    return -F.logsigmoid(fake_logits).mean()


@right("generator_loss_non_saturating")
def generator_logaddexp(fake_logits):
    return torch.logaddexp(torch.zeros_like(fake_logits), -fake_logits).mean()


@right("optimal_discriminator")
def optimal_sigmoid_of_log_ratio(p_data, p_model):
    return torch.sigmoid(p_data.log() - p_model.log())


@right("optimal_discriminator")
def optimal_reciprocal(p_data, p_model):
    return 1 / (1 + p_model / p_data)


@right("optimal_discriminator")
def optimal_float64(p_data, p_model):
    return (p_data.double() / (p_data.double() + p_model.double())).to(p_data.dtype)


@right("jensen_shannon")
def jsd_entropies(p, q):
    def entropy(r):
        return -torch.xlogy(r, r).sum()

    return entropy((p + q) / 2) - (entropy(p) + entropy(q)) / 2


@right("jensen_shannon")
def jsd_kl_div(p, q):
    m = (p + q) / 2
    return 0.5 * F.kl_div(m.log(), p, reduction="sum") + 0.5 * F.kl_div(m.log(), q, reduction="sum")


@right("jensen_shannon")
def jsd_float64(p, q):
    a, b = p.double(), q.double()
    m = (a + b) / 2
    kl = torch.xlogy(a, a / m).sum() + torch.xlogy(b, b / m).sum()
    return (kl / 2).to(p.dtype)


# --- lesson 04 ------------------------------------------------------------------------------------


@right("scaled_dot_product_attention")
def attention_library(q, k, v, mask=None):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@right("scaled_dot_product_attention")
def attention_einsum(q, k, v, mask=None):
    scores = torch.einsum("...qd,...kd->...qk", q, k) / q.shape[-1] ** 0.5
    if mask is not None:
        scores = torch.where(mask, scores, torch.tensor(float("-inf"), dtype=scores.dtype))
    return torch.einsum("...qk,...kd->...qd", scores.softmax(-1), v)


@right("scaled_dot_product_attention")
def attention_scaled_queries(q, k, v, mask=None):
    scores = (q / math.sqrt(q.size(-1))) @ k.mT
    if mask is not None:
        scores = scores + torch.zeros_like(scores).masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


@right("causal_mask")
def causal_mask_comparison(length):
    positions = torch.arange(length)
    return positions[:, None] >= positions[None, :]


@right("causal_mask")
def causal_mask_triu(length):
    return ~torch.ones(length, length, dtype=torch.bool).triu(1)


@right("causal_mask")
def causal_mask_numpy(length):
    return torch.from_numpy(np.tril(np.ones((length, length), dtype=bool)))


@right("split_heads")
def split_heads_unflatten(x, n_heads):
    return x.unflatten(-1, (n_heads, -1)).permute(0, 2, 1, 3)


@right("split_heads")
def split_heads_reshape(x, n_heads):
    batch, length, channels = x.size()
    return x.reshape(batch, length, n_heads, channels // n_heads).transpose(1, 2).contiguous()


@right("split_heads")
def split_heads_stack(x, n_heads):
    return torch.stack(x.chunk(n_heads, dim=-1), dim=1)


@right("merge_heads")
def merge_heads_cat(x):
    return torch.cat(x.unbind(1), dim=-1)


@right("merge_heads")
def merge_heads_permute(x):
    return x.permute(0, 2, 1, 3).flatten(2)


@right("merge_heads")
def merge_heads_einsum(x):
    batch, heads, length, size = x.shape
    return torch.einsum("bhtd->bthd", x).reshape(batch, length, heads * size)


# --- lesson 05 ------------------------------------------------------------------------------------


@right("reparameterised_sample")
def sample_sqrt_of_variance(mu, logvar, eps):
    return mu + logvar.exp().sqrt() * eps


@right("reparameterised_sample")
def sample_addcmul(mu, logvar, eps):
    return torch.addcmul(mu, (logvar / 2).exp(), eps)


@right("reparameterised_sample")
def sample_float64(mu, logvar, eps):
    return (mu.double() + torch.exp(0.5 * logvar.double()) * eps.double()).to(mu.dtype)


@right("kl_to_standard_normal")
def kl_prior_library(mu, logvar):
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    prior = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return torch.distributions.kl_divergence(q, prior).sum(-1)


@right("kl_to_standard_normal")
def kl_prior_halves(mu, logvar):
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(dim=-1)


@right("kl_to_standard_normal")
def kl_prior_einsum(mu, logvar):
    return 0.5 * torch.einsum("...k->...", mu * mu + torch.expm1(logvar) - logvar)


@right("gaussian_elbo")
def elbo_library(log_likelihood, mu, logvar):
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    prior = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    return log_likelihood - torch.distributions.kl_divergence(q, prior).sum(-1)


@right("gaussian_elbo")
def elbo_expanded(log_likelihood, mu, logvar):
    return log_likelihood + 0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(1)


@right("gaussian_elbo")
def elbo_float64(log_likelihood, mu, logvar):
    kl = 0.5 * (mu.double() ** 2 + logvar.double().exp() - logvar.double() - 1).sum(-1)
    return (log_likelihood.double() - kl).to(log_likelihood.dtype)


@right("score_function_estimate")
def score_autograd(f_values, z, mean, std):
    location = torch.tensor(float(mean), dtype=z.dtype, requires_grad=True)
    log_q = torch.distributions.Normal(location, std).log_prob(z.detach())
    (score,) = torch.autograd.grad(log_q.sum(), location)
    return (f_values * (z - mean) / std**2).mean() + 0 * score


@right("score_function_estimate")
def score_dot(f_values, z, mean, std):
    return torch.dot(f_values, z - mean) / (len(z) * std * std)


@right("score_function_estimate")
def score_variance(f_values, z, mean, std):
    variance = std**2
    return torch.mean(f_values * (z - mean)) / variance


# --- lesson 06 ------------------------------------------------------------------------------------


class _VAE(nn.Module):
    """The encoder and decoder written with nn.Sequential."""

    def __init__(self, latent_dim: int, activation=nn.ReLU):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 8, 4, 2, 1), activation(), nn.Conv2d(8, 16, 4, 2, 1), activation(),
            nn.Flatten(), nn.Linear(16 * 7 * 7, 32), activation(),
        )  # fmt: skip
        self.heads = nn.Linear(32, 2 * latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 32), activation(), nn.Linear(32, 16 * 7 * 7), activation(),
            nn.Unflatten(1, (16, 7, 7)), nn.ConvTranspose2d(16, 8, 4, 2, 1), activation(),
            nn.ConvTranspose2d(8, 1, 4, 2, 1),
        )  # fmt: skip

    def encode(self, x):
        return tuple(self.heads(self.encoder(x)).chunk(2, dim=1))

    def decode(self, z):
        return self.decoder(z)


@right("encoder_decoder_shapes")
def vae_sequential(latent_dim):
    return _VAE(latent_dim)


@right("encoder_decoder_shapes")
def vae_leaky(latent_dim):
    return _VAE(latent_dim, nn.LeakyReLU)


@right("encoder_decoder_shapes")
def vae_silu(latent_dim):
    return _VAE(latent_dim, nn.SiLU)


@right("reparameterise")
def reparameterise_randn(mean, logvar):
    return mean + torch.randn(mean.shape) * logvar.mul(0.5).exp()


@right("reparameterise")
def reparameterise_sqrt(mean, logvar):
    return torch.randn_like(mean) * logvar.exp().sqrt() + mean


@right("reparameterise")
def reparameterise_distribution(mean, logvar):
    return torch.distributions.Normal(mean, (0.5 * logvar).exp()).rsample()


@right("negative_elbo")
def negative_elbo_softplus(logits, x, mean, logvar):
    reconstruction = (x * F.softplus(-logits) + (1 - x) * F.softplus(logits)).sum((1, 2, 3))
    return reconstruction + 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(1)


@right("negative_elbo")
def negative_elbo_bernoulli(logits, x, mean, logvar):
    log_likelihood = torch.distributions.Bernoulli(logits=logits, validate_args=False).log_prob(x)
    kl = -0.5 * torch.sum(1 + logvar - mean.pow(2) - logvar.exp(), dim=-1)
    return -log_likelihood.flatten(1).sum(-1) + kl


@right("negative_elbo")
def negative_elbo_view(logits, x, mean, logvar):
    batch = logits.shape[0]
    bce = F.binary_cross_entropy_with_logits(
        logits.view(batch, -1), x.view(batch, -1), reduction="none"
    )
    return bce.sum(1) - 0.5 * (1 + logvar - mean**2 - logvar.exp()).sum(1)


@right("iwae_bound")
def iwae_shifted(log_weights):
    top = log_weights.max(dim=0).values
    return top + (log_weights - top).exp().mean(0).log()


@right("iwae_bound")
def iwae_float64(log_weights):
    bound = torch.logsumexp(log_weights.double(), 0) - math.log(len(log_weights))
    return bound.to(log_weights.dtype)


@right("iwae_bound")
def iwae_log_softmax(log_weights):
    k = log_weights.size(0)
    return (log_weights - torch.log_softmax(log_weights, dim=0))[0] - math.log(k)


# --- lesson 07 ------------------------------------------------------------------------------------


def _bce(logits, value):
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, value))


@right("gan_training_step")
def gan_step_bce(generator, discriminator, optimizer_g, optimizer_d, real, z):
    fake = generator(z)
    optimizer_d.zero_grad(set_to_none=True)
    loss_d = _bce(discriminator(real), 1.0) + _bce(discriminator(fake.detach()), 0.0)
    loss_d.backward()
    optimizer_d.step()
    optimizer_g.zero_grad(set_to_none=True)
    loss_g = _bce(discriminator(fake), 1.0)
    loss_g.backward()
    optimizer_g.step()
    return loss_d.item(), loss_g.item()


@right("gan_training_step")
def gan_step_numpy_losses(generator, discriminator, optimizer_g, optimizer_d, real, z):
    fake = generator(z)
    loss_d = (
        F.softplus(-discriminator(real)).mean() + F.softplus(discriminator(fake.detach())).mean()
    )
    discriminator.zero_grad()
    loss_d.backward()
    optimizer_d.step()
    loss_g = F.softplus(-discriminator(fake)).mean()
    generator.zero_grad()
    loss_g.backward()
    optimizer_g.step()
    return np.float32(loss_d.item()), np.float32(loss_g.item())


@right("gan_training_step")
def gan_step_requires_grad_toggle(generator, discriminator, optimizer_g, optimizer_d, real, z):
    fake = generator(z)
    optimizer_d.zero_grad()
    loss_d = (
        -F.logsigmoid(discriminator(real)).mean()
        - F.logsigmoid(-discriminator(fake.detach())).mean()
    )
    loss_d.backward()
    optimizer_d.step()
    for p in discriminator.parameters():
        p.requires_grad_(False)
    optimizer_g.zero_grad()
    loss_g = -F.logsigmoid(discriminator(fake)).mean()
    loss_g.backward()
    optimizer_g.step()
    for p in discriminator.parameters():
        p.requires_grad_(True)
    return loss_d.detach(), loss_g.detach()


@right("frechet_distance")
def frechet_float32(mean_1, cov_1, mean_2, cov_2):
    mean_1, cov_1, mean_2, cov_2 = (t.float() for t in (mean_1, cov_1, mean_2, cov_2))
    values, vectors = torch.linalg.eigh(cov_1)
    root = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    middle = root @ cov_2 @ root
    trace = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    return (
        (mean_1 - mean_2) @ (mean_1 - mean_2) + cov_1.trace() + cov_2.trace() - 2 * trace
    ).item()


@right("frechet_distance")
def frechet_numpy(mean_1, cov_1, mean_2, cov_2):
    a, b = cov_1.double().numpy(), cov_2.double().numpy()
    values = np.linalg.eigvals(a @ b)
    trace = np.sqrt(np.clip(values.real, 0, None)).sum()
    difference = (mean_1 - mean_2).double().numpy()
    return np.float64(difference @ difference + np.trace(a) + np.trace(b) - 2 * trace)


@right("frechet_distance")
def frechet_tensor(mean_1, cov_1, mean_2, cov_2):
    values = torch.linalg.eigvals(cov_1.double() @ cov_2.double()).real.clamp_min(0)
    squared = (mean_1 - mean_2).double().square().sum()
    return squared + cov_1.double().trace() + cov_2.double().trace() - 2 * values.sqrt().sum()


# --- lesson 08 ------------------------------------------------------------------------------------


class _Attention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, style: str):
        super().__init__()
        self.n_head, self.style = n_head, style
        self.qkv, self.proj = nn.Linear(n_embd, 3 * n_embd), nn.Linear(n_embd, n_embd)

    def forward(self, x):
        batch, length, channels = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = (t.unflatten(-1, (self.n_head, -1)).transpose(1, 2) for t in (q, k, v))
        if self.style == "einsum":
            scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(q.shape[-1])
            causal = torch.ones(length, length, dtype=torch.bool).tril()
            y = torch.einsum(
                "bhqk,bhkd->bhqd", scores.masked_fill(~causal, -math.inf).softmax(-1), v
            )
        elif self.style == "mask":
            causal = torch.ones(length, length, dtype=torch.bool).tril()
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=causal)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).flatten(2))


@right("causal_self_attention")
def attention_einsum_layer(n_embd, n_head):
    return _Attention(n_embd, n_head, "einsum")


@right("causal_self_attention")
def attention_mask_layer(n_embd, n_head):
    return _Attention(n_embd, n_head, "mask")


@right("causal_self_attention")
def attention_chunk_layer(n_embd, n_head):
    return _Attention(n_embd, n_head, "causal")


@right("residual_block")
def block_one_line(x, block):
    h = x + block.attn(block.ln_1(x))
    return h + block.mlp(block.ln_2(h))


@right("residual_block")
def block_sublayers(x, block):
    for norm, layer in ((block.ln_1, block.attn), (block.ln_2, block.mlp)):
        x = x + layer(norm(x))
    return x


@right("residual_block")
def block_functional_norm(x, block):
    def norm(t, ln):
        return F.layer_norm(t, ln.normalized_shape, ln.weight, ln.bias, ln.eps)

    x = x + block.attn(norm(x, block.ln_1))
    return x + block.mlp(norm(x, block.ln_2))


@right("training_step")
def training_step_cross_entropy(model, optimizer, x, y, max_norm):
    optimizer.zero_grad(set_to_none=True)
    logits, _ = model(x, y)
    loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=max_norm)
    optimizer.step()
    return float(loss)


@right("training_step")
def training_step_model_zero_grad(model, optimizer, x, y, max_norm):
    model.zero_grad()
    _, loss = model(x, y)
    loss.backward()
    nn.utils.clip_grad_norm_(list(model.parameters()), max_norm)
    optimizer.step()
    return loss.detach()


@right("training_step")
def training_step_numpy_loss(model, optimizer, x, y, max_norm):
    optimizer.zero_grad()
    loss = model(x, y)[1]
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), max_norm, norm_type=2.0)
    optimizer.step()
    return np.float32(loss.item())


@right("top_k_top_p")
def filter_loop(logits, top_k, top_p):
    out = logits.clone()
    for row in range(out.shape[0]):
        values = out[row]
        if top_k is not None:
            values[values < values.topk(top_k).values[-1]] = -math.inf
        if top_p is not None:
            probabilities = values.softmax(-1)
            order = probabilities.argsort(descending=True)
            before = probabilities[order].cumsum(0) - probabilities[order]
            values[order[before >= top_p]] = -math.inf
    return out


@right("top_k_top_p")
def filter_masked_fill(logits, top_k, top_p):
    if top_k is not None:
        kth = logits.topk(top_k, dim=-1).values[..., [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probabilities = sorted_logits.softmax(-1)
        remove_sorted = probabilities.cumsum(-1) - probabilities >= top_p
        remove = torch.empty_like(remove_sorted).scatter_(-1, order, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


@right("top_k_top_p")
def filter_gather(logits, top_k, top_p):
    logits = logits.clone()
    if top_k is not None:
        threshold = torch.sort(logits, dim=-1, descending=True).values[:, top_k - 1 : top_k]
        logits = torch.where(logits >= threshold, logits, torch.full_like(logits, -math.inf))
    if top_p is not None:
        order = logits.argsort(dim=-1, descending=True)
        probabilities = logits.gather(-1, order).softmax(-1)
        cut = (probabilities.cumsum(-1) - probabilities) >= top_p
        inverse = order.argsort(dim=-1)
        logits[cut.gather(-1, inverse)] = -math.inf
    return logits


@right("kv_cache_update")
def cache_concat(cached_k, cached_v, k, v):
    if cached_k is None:
        return k.clone(), v.clone()
    return torch.concat((cached_k, k), dim=-2), torch.concat((cached_v, v), dim=-2)


@right("kv_cache_update")
def cache_empty_start(cached_k, cached_v, k, v):
    if cached_k is None:
        cached_k, cached_v = k[:, :, :0], v[:, :, :0]
    return torch.cat([cached_k, k], 2), torch.cat([cached_v, v], 2)


@right("kv_cache_update")
def cache_list(cached_k, cached_v, k, v):
    keys = [k] if cached_k is None else [cached_k, k]
    values = [v] if cached_v is None else [cached_v, v]
    return torch.cat(keys, dim=2), torch.cat(values, dim=2)


# --- lesson 09 ------------------------------------------------------------------------------------


class _LoRA(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float, style: str):
        super().__init__()
        self.base, self.style = base, style
        base.weight.requires_grad_(False)
        if base.bias is not None:
            base.bias.requires_grad_(False)
        self.lora_A = nn.Parameter(
            torch.randn(rank, base.in_features) / math.sqrt(base.in_features)
        )
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        self.scale = alpha / rank

    def forward(self, x):
        if self.style == "functional":
            update = F.linear(F.linear(x, self.lora_A), self.lora_B)
        elif self.style == "einsum":
            update = torch.einsum("...i,ri,or->...o", x, self.lora_A, self.lora_B)
        else:
            update = x @ (self.lora_B @ self.lora_A).T
        return self.base(x) + self.scale * update


@right("lora_linear")
def lora_functional(base, rank, alpha):
    return _LoRA(base, rank, alpha, "functional")


@right("lora_linear")
def lora_einsum(base, rank, alpha):
    return _LoRA(base, rank, alpha, "einsum")


@right("lora_linear")
def lora_delta_weight(base, rank, alpha):
    return _LoRA(base, rank, alpha, "delta")


@right("merge_adapter")
def merge_add_(layer):
    if not layer.merged:
        with torch.no_grad():
            layer.base.weight.add_(layer.lora_B @ layer.lora_A, alpha=layer.scale)
        layer.merged = True


@right("merge_adapter")
def merge_data(layer):
    if layer.merged:
        return
    layer.base.weight.data += layer.scale * layer.lora_B.data @ layer.lora_A.data
    layer.merged = True


@right("merge_adapter")
def merge_copy(layer):
    if layer.merged:
        return
    with torch.no_grad():
        layer.base.weight.copy_(
            layer.base.weight + torch.einsum("or,ri->oi", layer.lora_B, layer.lora_A) * layer.scale
        )
    layer.merged = True


@right("freeze_all_but_adapters")
def freeze_numpy_count(model):
    for name, p in model.named_parameters():
        p.requires_grad = "lora_" in name
    return np.int64(sum(p.numel() for p in model.parameters() if p.requires_grad))


@right("freeze_all_but_adapters")
def freeze_then_unfreeze(model):
    model.requires_grad_(False)
    count = 0
    for name, p in model.named_parameters():
        if name.split(".")[-1] in ("lora_A", "lora_B"):
            p.requires_grad_(True)
            count += p.numel()
    return count


@right("freeze_all_but_adapters")
def freeze_tensor_count(model):
    for name, p in model.named_parameters():
        p.requires_grad_(".lora_" in name)
    return torch.tensor(sum(p.numel() for p in model.parameters() if p.requires_grad))


@right("continuation_loss")
def continuation_cross_entropy(model, prompt, continuation):
    mode = model.training
    model.eval()
    ids = torch.cat([prompt, continuation])[-model.config.block_size - 1 :]
    with torch.no_grad():
        logits, _ = model(ids[:-1].unsqueeze(0))
    model.train(mode)
    n = len(continuation)
    return F.cross_entropy(logits[0, -n:], ids[-n:]).item()


@right("continuation_loss")
def continuation_numpy(model, prompt, continuation):
    model.eval()
    ids = torch.cat([prompt, continuation])
    ids = ids[max(0, len(ids) - model.config.block_size - 1) :]
    with torch.inference_mode():
        logits = model(ids[None, :-1])[0][0]
    log_p = torch.log_softmax(logits, dim=-1)[-len(continuation) :].numpy()
    targets = ids[-len(continuation) :].numpy()
    return np.float32(-log_p[np.arange(len(targets)), targets].mean())


@right("continuation_loss")
def continuation_tensor(model, prompt, continuation):
    model.eval()
    ids = torch.cat([prompt, continuation])[-(model.config.block_size + 1) :]
    with torch.no_grad():
        logits, _ = model(ids[None, :-1])
    nll = -logits[0].log_softmax(-1).gather(-1, ids[1:, None])[:, 0]
    return nll[-continuation.numel() :].mean()


# --- lesson 10 ------------------------------------------------------------------------------------


@right("q_sample")
def q_sample_gather(x0, t, noise, schedule):
    a = schedule.alpha_bars.gather(0, t)[:, None, None, None]
    return torch.sqrt(a) * x0 + torch.sqrt(1 - a) * noise


@right("q_sample")
def q_sample_reshape(x0, t, noise, schedule):
    a = schedule.alpha_bars[t].reshape(len(t), *([1] * (x0.dim() - 1)))
    return a**0.5 * x0 + (1 - a) ** 0.5 * noise


@right("q_sample")
def q_sample_einsum(x0, t, noise, schedule):
    a = schedule.alpha_bars[t]
    return torch.einsum("b,b...->b...", a.sqrt(), x0) + torch.einsum(
        "b,b...->b...", (1 - a).sqrt(), noise
    )


def _noised(x0, t, noise, schedule):
    a = schedule.alpha_bars[t].view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


@right("training_loss")
def loss_mse(model, x0, t, noise, schedule):
    return F.mse_loss(model(_noised(x0, t, noise, schedule), t), noise)


@right("training_loss")
def loss_pow(model, x0, t, noise, schedule):
    return (noise - model(_noised(x0, t, noise, schedule), t)).pow(2).mean()


@right("training_loss")
def loss_per_image(model, x0, t, noise, schedule):
    error = (model(_noised(x0, t, noise, schedule), t) - noise).square()
    return error.flatten(1).mean(1).mean()


@right("ddpm_step")
def ddpm_posterior_mean(x_t, t, predicted_noise, schedule, z):
    beta, alpha_bar = schedule.betas[t], schedule.alpha_bars[t]
    mean = (x_t - beta / torch.sqrt(1 - alpha_bar) * predicted_noise) / torch.sqrt(1 - beta)
    return mean + (torch.sqrt(beta) * z if t > 0 else 0)


@right("ddpm_step")
def ddpm_floats(x_t, t, predicted_noise, schedule, z):
    beta, alpha, alpha_bar = (
        float(v[t]) for v in (schedule.betas, schedule.alphas, schedule.alpha_bars)
    )
    mean = (x_t - beta / math.sqrt(1 - alpha_bar) * predicted_noise) / math.sqrt(alpha)
    return mean if t == 0 else mean + math.sqrt(beta) * z


@right("ddpm_step")
def ddpm_where(x_t, t, predicted_noise, schedule, z):
    alpha, alpha_bar = schedule.alphas[t], schedule.alpha_bars[t]
    coefficient = (1 - alpha) / (1 - alpha_bar).sqrt()
    mean = alpha.rsqrt() * (x_t - coefficient * predicted_noise)
    sigma = (1 - alpha).sqrt() * (t > 0)
    return mean + sigma * z


@right("ddim_step")
def ddim_one_formula(x_t, t, t_prev, predicted_noise, schedule):
    a = schedule.alpha_bars[t]
    a_prev = schedule.alpha_bars[t_prev] if t_prev >= 0 else torch.ones(())
    return (a_prev / a).sqrt() * x_t + (
        (1 - a_prev).sqrt() - (a_prev * (1 - a) / a).sqrt()
    ) * predicted_noise


@right("ddim_step")
def ddim_floats(x_t, t, t_prev, predicted_noise, schedule):
    a = float(schedule.alpha_bars[t])
    a_prev = 1.0 if t_prev < 0 else float(schedule.alpha_bars[t_prev])
    x0 = (x_t - math.sqrt(1 - a) * predicted_noise) / math.sqrt(a)
    return math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * predicted_noise


@right("ddim_step")
def ddim_padded(x_t, t, t_prev, predicted_noise, schedule):
    alpha_bars = torch.cat([schedule.alpha_bars, torch.ones(1, dtype=schedule.alpha_bars.dtype)])
    a, a_prev = alpha_bars[t], alpha_bars[t_prev]  # index -1 is the 1 appended
    x0 = (x_t - (1 - a).sqrt() * predicted_noise) / a.sqrt()
    return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * predicted_noise


# --- lesson 11 ------------------------------------------------------------------------------------


def _inside(points, support, k):
    distances = torch.cdist(support, support)
    radii = distances.sort(dim=1).values[:, k]
    return (torch.cdist(points, support) <= radii).any(1).float().mean()


@right("precision_recall")
def precision_recall_float32_numbers(real, fake, k=3):
    return np.float32(_inside(fake, real, k)), np.float32(_inside(real, fake, k))


@right("precision_recall")
def precision_recall_tensors(real, fake, k=3):
    return _inside(fake, real, k), _inside(real, fake, k)


@right("precision_recall")
def precision_recall_loops(real, fake, k=3):
    def share(points, support):
        radii = [sorted(torch.linalg.vector_norm(support - s, dim=1).tolist())[k] for s in support]
        hits = 0
        for p in points:
            distances = torch.linalg.vector_norm(support - p, dim=1).tolist()
            hits += any(d <= r for d, r in zip(distances, radii, strict=True))
        return hits / len(points)

    return [share(fake, real), share(real, fake)]


@right("bits_per_dim")
def bits_log2e(nll_nats, dims):
    return (nll_nats.mean() * math.log2(math.e) / dims).item()


@right("bits_per_dim")
def bits_tensor(nll_nats, dims):
    return nll_nats.mean() / dims / math.log(2)


@right("bits_per_dim")
def bits_numpy(nll_nats, dims):
    return np.float32(np.mean(nll_nats.numpy()) / (dims * np.log(2)))


@right("perplexity")
def perplexity_tensor(token_nll_nats):
    return token_nll_nats.mean().exp()


@right("perplexity")
def perplexity_numpy_float32(token_nll_nats):
    return np.exp(token_nll_nats.numpy().astype(np.float32).mean())


@right("perplexity")
def perplexity_geometric_mean(token_nll_nats):
    probabilities = torch.exp(-token_nll_nats.double())
    return float(probabilities.prod() ** (-1 / len(probabilities)))


@right("longest_verbatim_substring")
def verbatim_all_pieces(text, corpus):
    best = ""
    for start in range(len(text)):
        for end in range(len(text), start + len(best), -1):
            if text[start:end] in corpus:
                best = text[start:end]
                break
    return best


@right("longest_verbatim_substring")
def verbatim_dynamic_programming(text, corpus):
    best_length, best_end = 0, 0
    previous = [0] * (len(corpus) + 1)
    for i in range(1, len(text) + 1):
        current = [0] * (len(corpus) + 1)
        for j in range(1, len(corpus) + 1):
            if text[i - 1] == corpus[j - 1]:
                current[j] = previous[j - 1] + 1
                if current[j] > best_length:
                    best_length, best_end = current[j], i
        previous = current
    return text[best_end - best_length : best_end]


@right("longest_verbatim_substring")
def verbatim_binary_search(text, corpus):
    def found(length):
        return next(
            (
                text[s : s + length]
                for s in range(len(text) - length + 1)
                if text[s : s + length] in corpus
            ),
            None,
        )

    low, high, best = 0, len(text), ""
    while low <= high:
        middle = (low + high) // 2
        piece = found(middle)
        if piece is None:
            high = middle - 1
        else:
            best, low = piece, middle + 1
    return best


# --- lesson 12 ------------------------------------------------------------------------------------


@right("watermark_z")
def watermark_loop(ids, green, gamma):
    pairs = list(zip(ids[:-1].tolist(), ids[1:].tolist(), strict=True))
    count = sum(bool(green[a, b]) for a, b in pairs)
    return (count - gamma * len(pairs)) / math.sqrt(len(pairs) * gamma * (1 - gamma))


@right("watermark_z")
def watermark_tensor(ids, green, gamma):
    hits = green[ids[:-1], ids[1:]].float()
    t = hits.numel()
    return (hits.sum() - gamma * t) / torch.tensor(t * gamma * (1 - gamma)).sqrt()


@right("watermark_z")
def watermark_mean(ids, green, gamma):
    share = green[ids[:-1], ids[1:]].double().mean()
    return ((share - gamma) * math.sqrt(len(ids) - 1) / math.sqrt(gamma * (1 - gamma))).item()


@right("exposure")
def exposure_sorted(secret_nll, candidate_nlls):
    rank = (
        int(
            torch.searchsorted(
                candidate_nlls.sort().values, torch.tensor(secret_nll, dtype=candidate_nlls.dtype)
            )
        )
        + 1
    )
    return math.log2((len(candidate_nlls) + 1) / rank)


@right("exposure")
def exposure_numpy(secret_nll, candidate_nlls):
    rank = 1 + np.count_nonzero(candidate_nlls.numpy() < secret_nll)
    return np.log2(len(candidate_nlls) + 1) - np.log2(rank)


@right("exposure")
def exposure_tensor(secret_nll, candidate_nlls):
    rank = 1 + (candidate_nlls < secret_nll).sum()
    return torch.log2(torch.tensor(len(candidate_nlls) + 1.0)) - torch.log2(rank.double())


@right("filter_precision_recall")
def filter_tensors(flagged, truth):
    f, t = torch.tensor(flagged), torch.tensor(truth)
    hits = (f & t).sum()
    precision = hits / f.sum() if f.any() else torch.tensor(1.0)
    recall = hits / t.sum() if t.any() else torch.tensor(1.0)
    return precision, recall


@right("filter_precision_recall")
def filter_numpy(flagged, truth):
    f, t = np.array(flagged), np.array(truth)
    hits = np.sum(f & t)
    return (
        np.float32(hits / f.sum()) if f.any() else 1.0,
        np.float32(hits / t.sum()) if t.any() else np.float32(1.0),
    )


@right("filter_precision_recall")
def filter_counts(flagged, truth):
    true_positives = sum(f and t for f, t in zip(flagged, truth, strict=True))
    false_positives = sum(f and not t for f, t in zip(flagged, truth, strict=True))
    false_negatives = sum(t and not f for f, t in zip(flagged, truth, strict=True))
    flagged_count, positive_count = (
        true_positives + false_positives,
        true_positives + false_negatives,
    )
    return (
        true_positives / flagged_count if flagged_count else 1.0,
        true_positives / positive_count if positive_count else 1.0,
    )


# --- the tests ------------------------------------------------------------------------------------


def test_every_check_has_three_correct_answers_written_differently():
    assert {check: len(entries) for check, entries in RIGHT.items() if len(entries) < 3} == {}


ANSWERS = [
    pytest.param(check, function, id=f"{check}-{name}")
    for check, entries in RIGHT.items()
    for name, function in entries
]


@pytest.mark.parametrize("check, function", ANSWERS)
def test_the_check_accepts_a_right_answer_written_differently(capsys, check, function):
    passed = getattr(checks, check)(function, strict=False)
    out = capsys.readouterr().out
    assert passed is True, out
    assert out.startswith(f"✅ {check}: passed"), out
