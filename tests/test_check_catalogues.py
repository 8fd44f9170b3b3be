"""A check never passes a wrong answer (COURSE.md, "Rules every lesson follows", rule 1).

Every exercise check exported by ``aigc_course.checks`` has here a catalogue of the classic wrong
implementations a learner writes for its exercise: wrong axis, scale or sign, a missing term, an
in-place change, a numerically unstable version, a stateful slip such as a missing ``zero_grad``.
Each one must be rejected (``False``, a ❌ line) with a message that names the problem. And the
reference solution, taken from ``solutions/NN_*.ipynb`` itself, must pass.

A wrong implementation is registered with ``@wrong(check, *words)``: ``words`` are what the printed
verdict must contain to name the problem.
"""

from __future__ import annotations

import ast
import functools
import math
from collections.abc import Callable

import nbformat
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aigc_course import checks
from tests.helpers import ROOT, check_call

MACHINERY = {"Case", "CheckFailed", "compare_tensor", "run_check"}
CHECKS = [name for name in checks.__all__ if name not in MACHINERY]

CATALOGUE: dict[str, list[tuple[str, Callable, tuple[str, ...]]]] = {name: [] for name in CHECKS}


def wrong(check: str, *words: str) -> Callable[[Callable], Callable]:
    """Register a wrong answer to ``check``'s exercise; its verdict must contain ``words``."""

    def register(function: Callable) -> Callable:
        CATALOGUE[check].append((function.__name__, function, words))
        return function

    return register


def _softmax(logits: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return torch.softmax(logits, dim=dim)


# --------------------------------------------------------------------------------------------
# Lesson 00: stable_softmax(logits, dim=-1)
# --------------------------------------------------------------------------------------------


@wrong("stable_softmax", "NaN or inf", "the first at index", "large logits", "overflows")
def softmax_without_shift(logits, dim=-1):
    exponentials = logits.exp()
    return exponentials / exponentials.sum(dim=dim, keepdim=True)


@wrong("stable_softmax", "whole tensor", "per row")
def softmax_shifted_by_global_max(logits, dim=-1):
    exponentials = (logits - logits.max()).exp()
    return exponentials / exponentials.sum(dim=dim, keepdim=True)


@wrong("stable_softmax", "subtracted the minimum")
def softmax_shifted_by_min(logits, dim=-1):
    exponentials = (logits - logits.amin(dim=dim, keepdim=True)).exp()
    return exponentials / exponentials.sum(dim=dim, keepdim=True)


@wrong("stable_softmax", "maximum you subtracted runs along the wrong dimension")
def softmax_max_along_first_axis(logits, dim=-1):
    exponentials = (logits - logits.amax(dim=0, keepdim=True)).exp()
    return exponentials / exponentials.sum(dim=dim, keepdim=True)


@wrong("stable_softmax", "softmax runs along the wrong dimension", "dim=0")
def softmax_ignoring_dim(logits, dim=-1):
    exponentials = (logits - logits.amax(dim=-1, keepdim=True)).exp()
    return exponentials / exponentials.sum(dim=-1, keepdim=True)


@wrong("stable_softmax", "keepdim=True")
def softmax_without_keepdim(logits, dim=-1):
    exponentials = (logits - logits.amax(dim=dim)).exp()
    return exponentials / exponentials.sum(dim=dim)


@wrong("stable_softmax", "changed its input in place")
def softmax_in_place(logits, dim=-1):
    logits -= logits.amax(dim=dim, keepdim=True)
    return logits.exp() / logits.exp().sum(dim=dim, keepdim=True)


# --------------------------------------------------------------------------------------------
# Lesson 01: entropy(p), kl_categorical(p, q), kl_gaussians(...), monte_carlo_kl(...)
# --------------------------------------------------------------------------------------------


@wrong("entropy", "the sign", ">= 0")
def entropy_without_minus(p):
    return torch.xlogy(p, p).sum(dim=-1)


@wrong("entropy", "0 * log 0", "xlogy")
def entropy_nan_at_zero(p):
    return -(p * p.log()).sum(dim=-1)


@wrong("entropy", "nats", "bits")
def entropy_in_bits(p):
    return -(torch.xlogy(p, p) / math.log(2)).sum(dim=-1)


@wrong("entropy", "last dimension", "dim 0")
def entropy_over_the_batch(p):
    return -torch.xlogy(p, p).sum(dim=0)


@wrong("entropy", "not the mean")
def entropy_averaged(p):
    return -torch.xlogy(p, p).mean(dim=-1)


@wrong("kl_categorical", "KL(q || p)", "not symmetric")
def kl_reversed(p, q):
    return (torch.xlogy(q, q) - torch.xlogy(q, p)).sum(dim=-1)


@wrong("kl_categorical", "the sign")
def kl_negated(p, q):
    return (torch.xlogy(p, q) - torch.xlogy(p, p)).sum(dim=-1)


@wrong("kl_categorical", "cross-entropy")
def kl_is_cross_entropy(p, q):
    return -torch.xlogy(p, q).sum(dim=-1)


@wrong("kl_categorical", "weight each term by p")
def kl_unweighted(p, q):
    return (p.log() - q.log()).sum(dim=-1)


@wrong("kl_categorical", "0 * log 0")
def kl_nan_at_zero(p, q):
    return (p * (p / q).log()).sum(dim=-1)


@wrong("kl_categorical", "last dimension", "dim 0")
def kl_over_the_batch(p, q):
    return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum(dim=0)


@wrong("kl_gaussians", "not variances")
def kl_gaussians_with_variances(mean_p, std_p, mean_q, std_q):
    return 0.5 * torch.log(std_q / std_p) + (std_p + (mean_p - mean_q) ** 2) / (2 * std_q) - 0.5


@wrong("kl_gaussians", "KL(q || p)")
def kl_gaussians_reversed(mean_p, std_p, mean_q, std_q):
    return torch.log(std_p / std_q) + (std_q**2 + (mean_p - mean_q) ** 2) / (2 * std_p**2) - 0.5


@wrong("kl_gaussians", "- 1/2")
def kl_gaussians_without_constant(mean_p, std_p, mean_q, std_q):
    return torch.log(std_q / std_p) + (std_p**2 + (mean_p - mean_q) ** 2) / (2 * std_q**2)


@wrong("kl_gaussians", "sign of the log term")
def kl_gaussians_log_flipped(mean_p, std_p, mean_q, std_q):
    return torch.log(std_p / std_q) + (std_p**2 + (mean_p - mean_q) ** 2) / (2 * std_q**2) - 0.5


@wrong("kl_gaussians", "square std_p")
def kl_gaussians_std_p_not_squared(mean_p, std_p, mean_q, std_q):
    return torch.log(std_q / std_p) + (std_p + (mean_p - mean_q) ** 2) / (2 * std_q**2) - 0.5


@wrong("kl_gaussians", "the factor 2")
def kl_gaussians_without_two(mean_p, std_p, mean_q, std_q):
    return torch.log(std_q / std_p) + (std_p**2 + (mean_p - mean_q) ** 2) / std_q**2 - 0.5


@wrong("monte_carlo_kl", "the order", "log p(x) - log q(x)")
def monte_carlo_kl_reversed(samples, log_p, log_q):
    return (log_q(samples) - log_p(samples)).mean()


@wrong("monte_carlo_kl", "not the sum")
def monte_carlo_kl_summed(samples, log_p, log_q):
    return (log_p(samples) - log_q(samples)).sum()


@wrong("monte_carlo_kl", "one number")
def monte_carlo_kl_per_sample(samples, log_p, log_q):
    return log_p(samples) - log_q(samples)


@wrong("monte_carlo_kl", "do not weight by p(x)")
def monte_carlo_kl_weighted_by_p(samples, log_p, log_q):
    return (log_p(samples).exp() * (log_p(samples) - log_q(samples))).mean()


# --------------------------------------------------------------------------------------------
# Lesson 02: gaussian_mle, bigram_counts, bigram_probabilities, average_nll
# --------------------------------------------------------------------------------------------


@wrong("gaussian_mle", "n - 1")
def gaussian_mle_unbiased(x):
    return x.mean(), x.std()


@wrong("gaussian_mle", "variance", "square root")
def gaussian_mle_variance(x):
    return x.mean(), ((x - x.mean()) ** 2).mean()


@wrong("gaussian_mle", "subtract the mean")
def gaussian_mle_uncentred(x):
    return x.mean(), (x**2).mean().sqrt()


@wrong("gaussian_mle", "the order", "(mean, std)")
def gaussian_mle_swapped(x):
    return ((x - x.mean()) ** 2).mean().sqrt(), x.mean()


@wrong("bigram_counts", "swapped", "current token")
def bigram_counts_transposed(ids, vocab_size):
    pairs = ids[1:] * vocab_size + ids[:-1]
    return torch.bincount(pairs, minlength=vocab_size**2).reshape(vocab_size, vocab_size).float()


@wrong("bigram_counts", "torch.roll", "N-2")
def bigram_counts_wrapping_around(ids, vocab_size):
    pairs = ids * vocab_size + torch.roll(ids, -1)
    return torch.bincount(pairs, minlength=vocab_size**2).reshape(vocab_size, vocab_size).float()


@wrong("bigram_counts", "last pair is missing")
def bigram_counts_loop_one_short(ids, vocab_size):
    counts = torch.zeros(vocab_size, vocab_size)
    for t in range(len(ids) - 2):
        counts[ids[t], ids[t + 1]] += 1
    return counts


@wrong("bigram_counts", "counted once", "accumulate")
def bigram_counts_not_accumulated(ids, vocab_size):
    counts = torch.zeros(vocab_size, vocab_size)
    counts[ids[:-1], ids[1:]] += 1  # a repeated pair is written once, not added twice
    return counts


@wrong("bigram_counts", "wrong dtype", "float")
def bigram_counts_as_integers(ids, vocab_size):
    pairs = ids[:-1] * vocab_size + ids[1:]
    return torch.bincount(pairs, minlength=vocab_size**2).reshape(vocab_size, vocab_size)


@wrong("bigram_counts", "not probabilities")
def bigram_counts_normalised(ids, vocab_size):
    pairs = ids[:-1] * vocab_size + ids[1:]
    counts = torch.bincount(pairs, minlength=vocab_size**2).reshape(vocab_size, vocab_size).float()
    return counts / counts.sum(dim=1, keepdim=True).clamp_min(1)


@wrong("bigram_probabilities", "each *row* must sum to 1")
def bigram_probabilities_by_column(counts, alpha):
    smoothed = counts + alpha
    return smoothed / smoothed.sum(dim=0, keepdim=True)


@wrong("bigram_probabilities", "whole table")
def bigram_probabilities_by_total(counts, alpha):
    smoothed = counts + alpha
    return smoothed / smoothed.sum()


@wrong("bigram_probabilities", "keepdim=True")
def bigram_probabilities_without_keepdim(counts, alpha):
    smoothed = counts + alpha
    return smoothed / smoothed.sum(dim=1)


@wrong("bigram_probabilities", "*before* normalising")
def bigram_probabilities_alpha_after(counts, alpha):
    return counts / counts.sum(dim=1, keepdim=True) + alpha


@wrong("bigram_probabilities", "not only to the zero counts")
def bigram_probabilities_alpha_on_zeros(counts, alpha):
    smoothed = torch.where(counts == 0, alpha, counts)
    return smoothed / smoothed.sum(dim=1, keepdim=True)


@wrong("bigram_probabilities", "V * alpha")
def bigram_probabilities_alpha_once_in_denominator(counts, alpha):
    return (counts + alpha) / (counts.sum(dim=1, keepdim=True) + alpha)


@wrong("bigram_probabilities", "changed its input in place")
def bigram_probabilities_in_place(counts, alpha):
    counts += alpha
    return counts / counts.sum(dim=1, keepdim=True)


@wrong("average_nll", "index order")
def average_nll_transposed(probabilities, ids):
    return -probabilities[ids[1:], ids[:-1]].log().mean().item()


@wrong("average_nll", "N - 1 pairs")
def average_nll_per_token(probabilities, ids):
    return -probabilities[ids[:-1], ids[1:]].log().sum().item() / len(ids)


@wrong("average_nll", "nats")
def average_nll_in_bits(probabilities, ids):
    return -probabilities[ids[:-1], ids[1:]].log2().mean().item()


@wrong("average_nll", "the sign")
def average_nll_without_minus(probabilities, ids):
    return probabilities[ids[:-1], ids[1:]].log().mean().item()


@wrong("average_nll", "log-probabilities, not the probabilities")
def average_nll_log_of_mean(probabilities, ids):
    return -probabilities[ids[:-1], ids[1:]].mean().log().item()


# --------------------------------------------------------------------------------------------
# Lesson 03: the GAN losses, the optimal discriminator, the Jensen-Shannon divergence
# --------------------------------------------------------------------------------------------


@wrong("discriminator_loss", "labels are swapped")
def discriminator_loss_swapped_labels(real_logits, fake_logits):
    return F.softplus(real_logits).mean() + F.softplus(-fake_logits).mean()


@wrong("discriminator_loss", "the sign", "-V")
def discriminator_loss_is_v(real_logits, fake_logits):
    return -(F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean())


@wrong("discriminator_loss", "mean over each batch")
def discriminator_loss_summed(real_logits, fake_logits):
    return F.softplus(-real_logits).sum() + F.softplus(fake_logits).sum()


@wrong("discriminator_loss", "separately")
def discriminator_loss_one_mean(real_logits, fake_logits):
    logits = torch.cat([real_logits, fake_logits])
    labels = torch.cat([torch.ones_like(real_logits), torch.zeros_like(fake_logits)])
    return F.binary_cross_entropy_with_logits(logits, labels)


@wrong("discriminator_loss", "fake term is missing")
def discriminator_loss_real_term_only(real_logits, fake_logits):
    return F.softplus(-real_logits).mean()


@wrong("discriminator_loss", "underflows", "softplus")
def discriminator_loss_log_sigmoid(real_logits, fake_logits):
    d_real, d_fake = torch.sigmoid(real_logits), torch.sigmoid(fake_logits)
    return -(d_real.log().mean() + (1 - d_fake).log().mean())


@wrong("discriminator_loss", "logits (any real number), not probabilities")
def discriminator_loss_on_probabilities(real_logits, fake_logits):
    return -(real_logits.log().mean() + (1 - fake_logits).log().mean())


@wrong("generator_loss_non_saturating", "saturating loss mean log(1 - D(G(z)))")
def generator_loss_saturating(fake_logits):
    return -F.softplus(fake_logits).mean()


@wrong("generator_loss_non_saturating", "discriminator's loss on fakes")
def generator_loss_with_label_zero(fake_logits):
    return F.softplus(fake_logits).mean()


@wrong("generator_loss_non_saturating", "the sign")
def generator_loss_negated(fake_logits):
    return -F.softplus(-fake_logits).mean()


@wrong("generator_loss_non_saturating", "not the sum")
def generator_loss_summed(fake_logits):
    return F.softplus(-fake_logits).sum()


@wrong("generator_loss_non_saturating", "underflows")
def generator_loss_log_sigmoid(fake_logits):
    return -torch.sigmoid(fake_logits).log().mean()


@wrong("optimal_discriminator", "swapped", "*real*")
def optimal_discriminator_swapped(p_data, p_model):
    return p_model / (p_data + p_model)


@wrong("optimal_discriminator", "density ratio")
def optimal_discriminator_ratio(p_data, p_model):
    return p_data / p_model


@wrong("optimal_discriminator", "1/2 only where p_model = p_data")
def optimal_discriminator_coin_flip(p_data, p_model):
    return torch.full_like(p_data, 0.5)


@wrong("optimal_discriminator", "elementwise")
def optimal_discriminator_normalised(p_data, p_model):
    return p_data / (p_data + p_model).sum()


def _kl(p, q):
    return (torch.xlogy(p, p) - torch.xlogy(p, q)).sum()


@wrong("jensen_shannon", "0 * log 0", "xlogy")
def jensen_shannon_nan_at_zero(p, q):
    m = (p + q) / 2
    return 0.5 * (p * (p / m).log()).sum() + 0.5 * (q * (q / m).log()).sum()


@wrong("jensen_shannon", "mixture m = (p + q) / 2, not with each other")
def jensen_shannon_is_kl(p, q):
    return _kl(p, q)


@wrong("jensen_shannon", "mixture m = (p + q) / 2, not with each other")
def jensen_shannon_symmetrised_kl(p, q):
    return 0.5 * _kl(p, q) + 0.5 * _kl(q, p)


@wrong("jensen_shannon", "factor 1/2")
def jensen_shannon_without_halves(p, q):
    m = (p + q) / 2
    return _kl(p, m) + _kl(q, m)


@wrong("jensen_shannon", "(p + q) / 2, a distribution")
def jensen_shannon_unnormalised_mixture(p, q):
    return 0.5 * _kl(p, p + q) + 0.5 * _kl(q, p + q)


@wrong("jensen_shannon", "both halves")
def jensen_shannon_one_half(p, q):
    return 0.5 * _kl(p, (p + q) / 2)


@wrong("jensen_shannon", "nats")
def jensen_shannon_in_bits(p, q):
    m = (p + q) / 2
    return (0.5 * _kl(p, m) + 0.5 * _kl(q, m)) / math.log(2)


# --------------------------------------------------------------------------------------------
# Lesson 04: attention, the causal mask, splitting and merging heads
# --------------------------------------------------------------------------------------------


def _attention(q, k, v, mask=None, *, scale=None, dim=-1, fill=float("-inf"), flip=False):
    scale = q.size(-1) ** -0.5 if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale
    if mask is not None:
        scores = scores.masked_fill(mask if flip else ~mask, fill)
    return torch.softmax(scores, dim=dim) @ v


@wrong("scaled_dot_product_attention", "sqrt(d_v)", "d_k = q.size(-1)")
def attention_scaled_by_d_v(q, k, v, mask=None):
    return _attention(q, k, v, mask, scale=v.size(-1) ** -0.5)


@wrong("scaled_dot_product_attention", "not scaled", "sqrt(d_k)")
def attention_unscaled(q, k, v, mask=None):
    return _attention(q, k, v, mask, scale=1.0)


@wrong("scaled_dot_product_attention", "sqrt(d_k), not by d_k")
def attention_scaled_by_d_k(q, k, v, mask=None):
    return _attention(q, k, v, mask, scale=1 / q.size(-1))


@wrong("scaled_dot_product_attention", "do not multiply")
def attention_multiplied_by_sqrt_d_k(q, k, v, mask=None):
    return _attention(q, k, v, mask, scale=q.size(-1) ** 0.5)


@wrong("scaled_dot_product_attention", "over the queries (dim=-2)")
def attention_softmax_over_queries(q, k, v, mask=None):
    return _attention(q, k, v, mask, dim=-2)


@wrong("scaled_dot_product_attention", "softmax is missing")
def attention_without_softmax(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, 0.0)
    return scores @ v


@wrong("scaled_dot_product_attention", "mask is inverted", "may attend")
def attention_mask_inverted(q, k, v, mask=None):
    return _attention(q, k, v, mask, flip=True)


@wrong("scaled_dot_product_attention", "-inf (not 0)")
def attention_masked_with_zero(q, k, v, mask=None):
    return _attention(q, k, v, mask, fill=0.0)


@wrong("scaled_dot_product_attention", "*before* the softmax")
def attention_masked_after_softmax(q, k, v, mask=None):
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1)
    if mask is not None:
        weights = weights * mask
    return weights @ v


@wrong("scaled_dot_product_attention", "wrong dtype", "got float64", "keep it out")
def attention_in_float64_for_safety(q, k, v, mask=None):
    """A softmax "made safe" in float64 makes the whole result float64: twice the memory."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1, dtype=torch.float64) @ v.double()


@wrong("scaled_dot_product_attention", "raised RuntimeError", "last two dimensions")
def attention_transposing_dims_1_and_2(q, k, v, mask=None):
    scores = q @ k.transpose(1, 2) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


@wrong("causal_mask", "transposed", "tril, not triu")
def causal_mask_upper(length):
    return torch.ones(length, length, dtype=torch.bool).triu()


@wrong("causal_mask", "diagonal is missing")
def causal_mask_without_diagonal(length):
    return torch.ones(length, length, dtype=torch.bool).tril(-1)


@wrong("causal_mask", "inverted", "*may attend*")
def causal_mask_inverted(length):
    return ~torch.ones(length, length, dtype=torch.bool).tril()


@wrong("causal_mask", "bool tensor")
def causal_mask_as_floats(length):
    return torch.ones(length, length).tril()


@wrong("split_heads", "mixes up tokens and channels")
def split_heads_by_reshape(x, n_heads):
    batch, length, channels = x.shape
    return x.reshape(batch, n_heads, length, channels // n_heads)


@wrong("split_heads", "transpose is missing")
def split_heads_without_transpose(x, n_heads):
    batch, length, channels = x.shape
    return x.view(batch, length, n_heads, channels // n_heads)


@wrong("split_heads", "interleaved", "*contiguous*")
def split_heads_interleaved(x, n_heads):
    batch, length, channels = x.shape
    return x.view(batch, length, channels // n_heads, n_heads).permute(0, 3, 1, 2)


@wrong("merge_heads", "transpose is missing")
def merge_heads_without_transpose(x):
    batch, heads, length, size = x.shape
    return x.reshape(batch, length, heads * size)


@wrong("merge_heads", "interleaved")
def merge_heads_interleaved(x):
    batch, heads, length, size = x.shape
    return x.permute(0, 2, 3, 1).reshape(batch, length, heads * size)


@wrong("merge_heads", "do not add them up")
def merge_heads_summed(x):
    return x.sum(dim=1)


@wrong("merge_heads", "raised RuntimeError", "not contiguous")
def merge_heads_by_view(x):
    batch, heads, length, size = x.shape
    return x.transpose(1, 2).view(batch, length, heads * size)


# --------------------------------------------------------------------------------------------
# Lesson 05: the reparameterised sample, the KL to the prior, the ELBO, REINFORCE
# --------------------------------------------------------------------------------------------


@wrong("reparameterised_sample", "exp(logvar) is the variance")
def sample_with_variance(mu, logvar, eps):
    return mu + torch.exp(logvar) * eps


@wrong("reparameterised_sample", "not sigma itself")
def sample_with_logvar_as_sigma(mu, logvar, eps):
    return mu + logvar * eps


@wrong("reparameterised_sample", "forgot the exp")
def sample_without_exp(mu, logvar, eps):
    return mu + 0.5 * logvar * eps


@wrong("reparameterised_sample", "use the eps you are given")
def sample_with_fresh_noise(mu, logvar, eps):
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)


@wrong("reparameterised_sample", "add the mean")
def sample_without_mean(mu, logvar, eps):
    return torch.exp(0.5 * logvar) * eps


def _kl_terms(mu, logvar):
    return 1 + logvar - mu**2 - logvar.exp()


def _kl_prior(mu, logvar):
    return -0.5 * _kl_terms(mu, logvar).sum(dim=-1)


@wrong("kl_to_standard_normal", "the sign", "never negative")
def kl_prior_without_minus(mu, logvar):
    return 0.5 * _kl_terms(mu, logvar).sum(dim=-1)


@wrong("kl_to_standard_normal", "across the batch")
def kl_prior_over_the_batch(mu, logvar):
    return -0.5 * _kl_terms(mu, logvar).sum(dim=0)


@wrong("kl_to_standard_normal", "do not average")
def kl_prior_averaged(mu, logvar):
    return -0.5 * _kl_terms(mu, logvar).mean(dim=-1)


@wrong("kl_to_standard_normal", "mu^2 term is missing")
def kl_prior_without_mean_term(mu, logvar):
    return -0.5 * (1 + logvar - logvar.exp()).sum(dim=-1)


@wrong("kl_to_standard_normal", "log sigma")
def kl_prior_logvar_as_log_sigma(mu, logvar):
    return -0.5 * (1 + 2 * logvar - mu**2 - (2 * logvar).exp()).sum(dim=-1)


@wrong("kl_to_standard_normal", "factor 1/2")
def kl_prior_without_half(mu, logvar):
    return -_kl_terms(mu, logvar).sum(dim=-1)


@wrong("gaussian_elbo", "*subtracts* the KL")
def elbo_plus_kl(log_likelihood, mu, logvar):
    return log_likelihood + _kl_prior(mu, logvar)


@wrong("gaussian_elbo", "negative ELBO")
def elbo_negated(log_likelihood, mu, logvar):
    return _kl_prior(mu, logvar) - log_likelihood


@wrong("gaussian_elbo", "not over the batch")
def elbo_kl_over_the_batch(log_likelihood, mu, logvar):
    return log_likelihood - _kl_prior(mu, logvar).sum()


@wrong("gaussian_elbo", "do not average")
def elbo_kl_averaged(log_likelihood, mu, logvar):
    return log_likelihood - _kl_prior(mu, logvar) / mu.shape[-1]


@wrong("score_function_estimate", "variance std^2, not the standard deviation")
def score_divided_by_std(f_values, z, mean, std):
    return (f_values * (z - mean) / std).mean()


@wrong("score_function_estimate", "multiply the score by f(z)")
def score_without_f(f_values, z, mean, std):
    return ((z - mean) / std**2).mean()


@wrong("score_function_estimate", "the sign")
def score_negated(f_values, z, mean, std):
    return (f_values * (mean - z) / std**2).mean()


@wrong("score_function_estimate", "not the sum")
def score_summed(f_values, z, mean, std):
    return (f_values * (z - mean) / std**2).sum()


@wrong("score_function_estimate", "divide by std^2")
def score_undivided(f_values, z, mean, std):
    return (f_values * (z - mean)).mean()


# --------------------------------------------------------------------------------------------
# Lesson 06: the VAE
# --------------------------------------------------------------------------------------------


class VAE(nn.Module):
    """The exercise's SmallVAE, with switches for the classic mistakes."""

    def __init__(
        self,
        latent_dim: int,
        *,
        head_activation: Callable | None = None,
        logvar_activation: Callable | None = None,
        last_activation: Callable | None = None,
        shared_head: bool = False,
        kernel: int = 4,
    ) -> None:
        super().__init__()
        self.head_activation, self.logvar_activation = head_activation, logvar_activation
        self.last_activation = last_activation
        self.shared_head = shared_head
        self.conv1 = nn.Conv2d(1, 16, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 4, stride=2, padding=1)
        self.to_hidden = nn.Linear(32 * 7 * 7, 64)
        self.to_mean = nn.Linear(64, latent_dim)
        self.to_logvar = nn.Linear(64, latent_dim)
        self.from_latent = nn.Linear(latent_dim, 64)
        self.to_features = nn.Linear(64, 32 * 7 * 7)
        self.deconv1 = nn.ConvTranspose2d(32, 16, kernel, stride=2, padding=1)
        self.deconv2 = nn.ConvTranspose2d(16, 1, kernel, stride=2, padding=1)

    def encode(self, x):
        h = F.relu(self.to_hidden(F.relu(self.conv2(F.relu(self.conv1(x)))).flatten(1)))
        mean = self.to_mean(h)
        logvar = mean if self.shared_head else self.to_logvar(h)
        if self.head_activation is not None:
            mean, logvar = self.head_activation(mean), self.head_activation(logvar)
        if self.logvar_activation is not None:
            logvar = self.logvar_activation(logvar)
        return mean, logvar

    def decode(self, z):
        h = F.relu(self.to_features(F.relu(self.from_latent(z)))).view(-1, 32, 7, 7)
        logits = self.deconv2(F.relu(self.deconv1(h)))
        return logits if self.last_activation is None else self.last_activation(logits)


@wrong("encoder_decoder_shapes", "logits, not probabilities", "sigmoid")
def vae_decoder_ending_in_sigmoid(latent_dim):
    return VAE(latent_dim, last_activation=torch.sigmoid)


@wrong("encoder_decoder_shapes", "can be negative", "ReLU")
def vae_decoder_ending_in_relu(latent_dim):
    return VAE(latent_dim, last_activation=F.relu)


@wrong("encoder_decoder_shapes", "never negative", "no activation")
def vae_heads_with_relu(latent_dim):
    return VAE(latent_dim, head_activation=F.relu)


@wrong("encoder_decoder_shapes", "logvar is never negative")
def vae_logvar_with_softplus(latent_dim):
    return VAE(latent_dim, logvar_activation=F.softplus)


@wrong("encoder_decoder_shapes", "same tensor", "two separate output layers")
def vae_one_head(latent_dim):
    return VAE(latent_dim, shared_head=True)


@wrong("encoder_decoder_shapes", "decode: logits should have shape")
def vae_kernel_three(latent_dim):
    return VAE(latent_dim, kernel=3)


@wrong("reparameterise", "exp(logvar) is the variance")
def reparameterise_with_variance(mean, logvar):
    return mean + torch.exp(logvar) * torch.randn_like(mean)


@wrong("reparameterise", "not sigma itself")
def reparameterise_with_logvar_as_sigma(mean, logvar):
    return mean + logvar * torch.randn_like(mean)


@wrong("reparameterise", "noise is missing")
def reparameterise_without_noise(mean, logvar):
    return mean


@wrong("reparameterise", "standard normal", "rand_like")
def reparameterise_uniform(mean, logvar):
    return mean + torch.exp(0.5 * logvar) * torch.rand_like(mean)


@wrong("reparameterise", "no gradient flows back", ".detach()")
def reparameterise_detached(mean, logvar):
    return (mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)).detach()


@wrong("reparameterise", "no gradient flows back", "torch.normal")
def reparameterise_with_torch_normal(mean, logvar):
    return torch.normal(mean, torch.exp(0.5 * logvar))


def _bce(logits, x):
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1)


def _kl_rows(mean, logvar):
    return -0.5 * (1 + logvar - mean**2 - logvar.exp()).sum(1)


@wrong("negative_elbo", "a sigmoid too many")
def negative_elbo_sigmoid_twice(logits, x, mean, logvar):
    return _bce(torch.sigmoid(logits), x).sum(1) + _kl_rows(mean, logvar)


@wrong("negative_elbo", "do not average them")
def negative_elbo_mean_over_pixels(logits, x, mean, logvar):
    return _bce(logits, x).mean(1) + _kl_rows(mean, logvar)


@wrong("negative_elbo", "reduction='mean'")
def negative_elbo_reduction_mean(logits, x, mean, logvar):
    return F.binary_cross_entropy_with_logits(logits, x) + _kl_rows(mean, logvar)


@wrong("negative_elbo", "add the KL")
def negative_elbo_minus_kl(logits, x, mean, logvar):
    return _bce(logits, x).sum(1) - _kl_rows(mean, logvar)


@wrong("negative_elbo", "do not sum over the batch")
def negative_elbo_summed_over_batch(logits, x, mean, logvar):
    return (_bce(logits, x).sum(1) + _kl_rows(mean, logvar)).sum()


@wrong("negative_elbo", "raised", "the decoder gives logits")
def negative_elbo_on_probabilities(logits, x, mean, logvar):
    reconstruction = F.binary_cross_entropy(logits, x, reduction="none").flatten(1).sum(1)
    return reconstruction + _kl_rows(mean, logvar)


@wrong("iwae_bound", "average ELBO")
def iwae_mean_of_log_weights(log_weights):
    return log_weights.mean(dim=0)


@wrong("iwae_bound", "underflows", "logsumexp")
def iwae_through_exp(log_weights):
    return log_weights.exp().mean(dim=0).log()


@wrong("iwae_bound", "subtract log K")
def iwae_without_log_k(log_weights):
    return torch.logsumexp(log_weights, dim=0)


@wrong("iwae_bound", "reduce over dim 0")
def iwae_over_the_images(log_weights):
    return torch.logsumexp(log_weights, dim=1) - math.log(log_weights.shape[0])


# --------------------------------------------------------------------------------------------
# Lesson 07: the DCGAN step, the Fréchet distance
# --------------------------------------------------------------------------------------------


def _loss_d(real_logits, fake_logits):
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def _loss_g(fake_logits):
    return F.softplus(-fake_logits).mean()


@wrong("gan_training_step", "zero_grad", "second")
def gan_step_without_zero_grad(generator, discriminator, optimizer_g, optimizer_d, real, z):
    fake = generator(z)
    loss_d = _loss_d(discriminator(real), discriminator(fake.detach()))
    loss_d.backward()
    optimizer_d.step()
    loss_g = _loss_g(discriminator(fake))
    loss_g.backward()
    optimizer_g.step()
    return loss_d, loss_g


@wrong("gan_training_step", "zero_grad", "second")
def gan_step_without_zero_grad_of_d(generator, discriminator, optimizer_g, optimizer_d, real, z):
    fake = generator(z)
    loss_d = _loss_d(discriminator(real), discriminator(fake.detach()))
    loss_d.backward()
    optimizer_d.step()
    loss_g = _loss_g(discriminator(fake))
    optimizer_g.zero_grad()
    loss_g.backward()
    optimizer_g.step()
    return loss_d, loss_g


@wrong("gan_training_step", "generator", "fake.detach()")
def gan_step_without_detach(generator, discriminator, optimizer_g, optimizer_d, real, z):
    optimizer_d.zero_grad()
    optimizer_g.zero_grad()
    fake = generator(z)
    loss_d = _loss_d(discriminator(real), discriminator(fake))
    loss_d.backward(retain_graph=True)
    optimizer_d.step()
    loss_g = _loss_g(discriminator(fake))
    loss_g.backward()
    optimizer_g.step()
    return loss_d, loss_g


@wrong("gan_training_step", "loss_g", "non-saturating")
def gan_step_saturating(generator, discriminator, optimizer_g, optimizer_d, real, z):
    fake = generator(z)
    loss_d = _loss_d(discriminator(real), discriminator(fake.detach()))
    optimizer_d.zero_grad()
    loss_d.backward()
    optimizer_d.step()
    loss_g = -F.softplus(discriminator(fake)).mean()
    optimizer_g.zero_grad()
    loss_g.backward()
    optimizer_g.step()
    return loss_d, loss_g


@wrong("gan_training_step", "loss_d", "label 1")
def gan_step_swapped_labels(generator, discriminator, optimizer_g, optimizer_d, real, z):
    fake = generator(z)
    loss_d = _loss_d(discriminator(fake.detach()), discriminator(real))
    optimizer_d.zero_grad()
    loss_d.backward()
    optimizer_d.step()
    loss_g = _loss_g(discriminator(fake))
    optimizer_g.zero_grad()
    loss_g.backward()
    optimizer_g.step()
    return loss_d, loss_g


@wrong("gan_training_step", "discriminator", "must not step D")
def gan_step_stepping_d_twice(generator, discriminator, optimizer_g, optimizer_d, real, z):
    fake = generator(z)
    loss_d = _loss_d(discriminator(real), discriminator(fake.detach()))
    optimizer_d.zero_grad()
    loss_d.backward()
    optimizer_d.step()
    loss_g = _loss_g(discriminator(fake))
    optimizer_g.zero_grad()
    loss_g.backward()
    optimizer_d.step()
    optimizer_g.step()
    return loss_d, loss_g


@wrong("gan_training_step", "the discriminator did not change", "optimizer_d.step()")
def gan_step_zero_grad_before_step(generator, discriminator, optimizer_g, optimizer_d, real, z):
    fake = generator(z)
    loss_d = _loss_d(discriminator(real), discriminator(fake.detach()))
    loss_d.backward()
    optimizer_d.zero_grad()
    optimizer_d.step()
    loss_g = _loss_g(discriminator(fake))
    optimizer_g.zero_grad()
    loss_g.backward()
    optimizer_g.step()
    return loss_d, loss_g


@wrong("gan_training_step", "raised RuntimeError", "the updated D")
def gan_step_with_stale_logits(generator, discriminator, optimizer_g, optimizer_d, real, z):
    fake = generator(z)
    fake_logits = discriminator(fake)  # D's opinion *before* its update, reused for G below
    loss_d = _loss_d(discriminator(real), discriminator(fake.detach()))
    optimizer_d.zero_grad()
    loss_d.backward()
    optimizer_d.step()
    loss_g = _loss_g(fake_logits)
    optimizer_g.zero_grad()
    loss_g.backward()
    optimizer_g.step()
    return loss_d, loss_g


def _sqrtm(matrix):
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def _frechet(mean_1, cov_1, mean_2, cov_2, *, trace_sqrt, two=2.0, square_means=True):
    difference = (mean_1 - mean_2).pow(2).sum()
    difference = difference if square_means else difference.sqrt()
    return (difference + torch.trace(cov_1) + torch.trace(cov_2) - two * trace_sqrt).item()


def _trace_sqrt(cov_1, cov_2):
    root = _sqrtm(cov_1)
    return torch.linalg.eigvalsh(root @ cov_2 @ root).clamp_min(0).sqrt().sum()


@wrong("frechet_distance", "*matrix* square root")
def frechet_elementwise_sqrt(mean_1, cov_1, mean_2, cov_2):
    return _frechet(mean_1, cov_1, mean_2, cov_2, trace_sqrt=torch.sqrt(cov_1 @ cov_2).trace())


@wrong("frechet_distance", "commute")
def frechet_product_of_roots(mean_1, cov_1, mean_2, cov_2):
    trace_sqrt = torch.trace(_sqrtm(cov_1) @ _sqrtm(cov_2))
    return _frechet(mean_1, cov_1, mean_2, cov_2, trace_sqrt=trace_sqrt)


@wrong("frechet_distance", "the factor 2")
def frechet_without_two(mean_1, cov_1, mean_2, cov_2):
    trace_sqrt = _trace_sqrt(cov_1, cov_2)
    return _frechet(mean_1, cov_1, mean_2, cov_2, trace_sqrt=trace_sqrt, two=1.0)


@wrong("frechet_distance", "the sign of the last term")
def frechet_plus_trace(mean_1, cov_1, mean_2, cov_2):
    trace_sqrt = _trace_sqrt(cov_1, cov_2)
    return _frechet(mean_1, cov_1, mean_2, cov_2, trace_sqrt=trace_sqrt, two=-2.0)


@wrong("frechet_distance", "square the distance between the means")
def frechet_unsquared_means(mean_1, cov_1, mean_2, cov_2):
    trace_sqrt = _trace_sqrt(cov_1, cov_2)
    return _frechet(mean_1, cov_1, mean_2, cov_2, trace_sqrt=trace_sqrt, square_means=False)


@wrong("frechet_distance", "*squared* Fréchet distance")
def frechet_square_root(mean_1, cov_1, mean_2, cov_2):
    trace_sqrt = _trace_sqrt(cov_1, cov_2)
    return max(_frechet(mean_1, cov_1, mean_2, cov_2, trace_sqrt=trace_sqrt), 0.0) ** 0.5


# --------------------------------------------------------------------------------------------
# Lesson 08: the GPT's parts
# --------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """The exercise's causal self-attention, with switches for the classic mistakes."""

    def __init__(
        self,
        n_embd: int,
        n_head: int,
        *,
        causal: bool = True,
        scale: str = "head",
        split: str = "view",
        merge: str = "transpose",
        project: bool = True,
    ) -> None:
        super().__init__()
        self.n_embd, self.n_head = n_embd, n_head
        self.causal, self.scale, self.split, self.merge, self.project = (
            causal,
            scale,
            split,
            merge,
            project,
        )
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)

    def forward(self, x):
        batch, length, channels = x.shape
        heads, size = self.n_head, channels // self.n_head
        q, k, v = self.qkv(x).split(channels, dim=2)
        if self.split == "view":
            q, k, v = (t.view(batch, length, heads, size).transpose(1, 2) for t in (q, k, v))
        elif self.split == "reshape":
            q, k, v = (t.reshape(batch, heads, length, size) for t in (q, k, v))
        scale = {"head": size**-0.5, "channels": channels**-0.5, "none": 1.0}[self.scale]
        scores = q @ k.transpose(-2, -1) * scale
        if self.causal:
            mask = torch.ones(length, length, dtype=torch.bool).tril()
            scores = scores.masked_fill(~mask, float("-inf"))
        y = torch.softmax(scores, dim=-1) @ v
        if self.split != "none":
            y = y.transpose(1, 2) if self.merge == "transpose" else y
            y = y.reshape(batch, length, channels)
        return self.proj(y) if self.project else y


@wrong("causal_self_attention", "not causal")
def attention_layer_not_causal(n_embd, n_head):
    return Attention(n_embd, n_head, causal=False)


@wrong("causal_self_attention", "size of one head", "not by 1 / sqrt(n_embd)")
def attention_layer_scaled_by_channels(n_embd, n_head):
    return Attention(n_embd, n_head, scale="channels")


@wrong("causal_self_attention", "not scaled")
def attention_layer_unscaled(n_embd, n_head):
    return Attention(n_embd, n_head, scale="none")


@wrong("causal_self_attention", "heads are not split")
def attention_layer_one_head(n_embd, n_head):
    return Attention(n_embd, n_head, split="none", scale="channels")


@wrong("causal_self_attention", "mixes up tokens and channels")
def attention_layer_split_by_reshape(n_embd, n_head):
    return Attention(n_embd, n_head, split="reshape")


@wrong("causal_self_attention", "merge the heads with transpose(1, 2)")
def attention_layer_merged_without_transpose(n_embd, n_head):
    return Attention(n_embd, n_head, merge="reshape")


@wrong("causal_self_attention", "output projection is missing")
def attention_layer_without_projection(n_embd, n_head):
    return Attention(n_embd, n_head, project=False)


@wrong("causal_self_attention", "nn.Linear attributes", "qkv")
def attention_layer_with_other_names(n_embd, n_head):
    layer = Attention(n_embd, n_head)
    layer.c_attn = layer.qkv
    del layer.qkv
    return layer


@wrong("residual_block", "post-LN")
def block_post_ln(x, block):
    x = block.ln_1(x + block.attn(x))
    return block.ln_2(x + block.mlp(x))


@wrong("residual_block", "residual connections are missing")
def block_without_residuals(x, block):
    return block.mlp(block.ln_2(block.attn(block.ln_1(x))))


@wrong("residual_block", "residual stream")
def block_normalising_the_stream(x, block):
    x = block.ln_1(x)
    x = x + block.attn(x)
    x = block.ln_2(x)
    return x + block.mlp(x)


@wrong("residual_block", "one after the other")
def block_in_parallel(x, block):
    return x + block.attn(block.ln_1(x)) + block.mlp(block.ln_2(x))


@wrong("residual_block", "layer norms are swapped")
def block_with_swapped_norms(x, block):
    x = x + block.attn(block.ln_2(x))
    return x + block.mlp(block.ln_1(x))


@wrong("residual_block", "MLP sub-layer is missing")
def block_without_mlp(x, block):
    return x + block.attn(block.ln_1(x))


@wrong("training_step", "zero_grad", "second")
def training_step_without_zero_grad(model, optimizer, x, y, max_norm):
    _, loss = model(x, y)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    return loss.item()


@wrong("training_step", "not clipped")
def training_step_without_clipping(model, optimizer, x, y, max_norm):
    optimizer.zero_grad()
    _, loss = model(x, y)
    loss.backward()
    optimizer.step()
    return loss.item()


@wrong("training_step", "not clipped", "before optimizer.step()")
def training_step_clipping_after_the_step(model, optimizer, x, y, max_norm):
    optimizer.zero_grad()
    _, loss = model(x, y)
    loss.backward()
    optimizer.step()
    nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    return loss.item()


@wrong("training_step", "clip_grad_value_")
def training_step_clipping_values(model, optimizer, x, y, max_norm):
    optimizer.zero_grad()
    _, loss = model(x, y)
    loss.backward()
    nn.utils.clip_grad_value_(model.parameters(), max_norm)
    optimizer.step()
    return loss.item()


@wrong("training_step", "loss before the update")
def training_step_returning_the_new_loss(model, optimizer, x, y, max_norm):
    optimizer.zero_grad()
    _, loss = model(x, y)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    with torch.no_grad():
        return model(x, y)[1].item()


@wrong("training_step", "did not change")
def training_step_stepping_before_backward(model, optimizer, x, y, max_norm):
    optimizer.zero_grad()
    _, loss = model(x, y)
    optimizer.step()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    return loss.item()


def _top_k_top_p(logits, top_k, top_p, *, per_row=True, strict=False, shifted=True, unsort=True):
    logits = logits.clone()
    if top_k is not None:
        values = torch.topk(logits, top_k, dim=-1).values
        kth = values[:, -1:] if per_row else values.min()
        logits[logits <= kth if strict else logits < kth] = float("-inf")
    if top_p is not None:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probabilities = torch.softmax(sorted_logits, dim=-1)
        cumulative = probabilities.cumsum(dim=-1)
        remove = cumulative - probabilities >= top_p if shifted else cumulative > top_p
        if unsort:
            remove = torch.zeros_like(remove).scatter(-1, order, remove)
        logits[remove] = float("-inf")
    return logits


@wrong("top_k_top_p", "per row")
def top_k_one_threshold_for_the_batch(logits, top_k, top_p):
    return _top_k_top_p(logits, top_k, top_p, per_row=False)


@wrong("top_k_top_p", "exactly k tokens")
def top_k_removing_the_kth(logits, top_k, top_p):
    return _top_k_top_p(logits, top_k, top_p, strict=True)


@wrong("top_k_top_p", "crosses p", "*before* them")
def top_p_without_shift(logits, top_k, top_p):
    return _top_k_top_p(logits, top_k, top_p, shifted=False)


@wrong("top_k_top_p", "original order")
def top_p_left_sorted(logits, top_k, top_p):
    return _top_k_top_p(logits, top_k, top_p, unsort=False)


@wrong("top_k_top_p", "must be -inf")
def top_k_top_p_zeroing(logits, top_k, top_p):
    filtered = _top_k_top_p(logits, top_k, top_p)
    return filtered.masked_fill(filtered == float("-inf"), 0.0)


@wrong("top_k_top_p", "changed its input in place")
def top_k_top_p_in_place(logits, top_k, top_p):
    filtered = _top_k_top_p(logits, top_k, top_p)
    logits.copy_(filtered)
    return logits


@wrong("kv_cache_update", "*after* the cached ones")
def kv_cache_new_first(cached_k, cached_v, k, v):
    if cached_k is None:
        return k, v
    return torch.cat([k, cached_k], dim=2), torch.cat([v, cached_v], dim=2)


@wrong("kv_cache_update", "keep the cache")
def kv_cache_forgetting(cached_k, cached_v, k, v):
    return k, v


@wrong("kv_cache_update", "raised RuntimeError", "dim=2")
def kv_cache_along_the_last_axis(cached_k, cached_v, k, v):
    if cached_k is None:
        return k, v
    return torch.cat([cached_k, k], dim=-1), torch.cat([cached_v, v], dim=-1)


@wrong("kv_cache_update", "raised TypeError", "no cache yet")
def kv_cache_without_the_empty_case(cached_k, cached_v, k, v):
    return torch.cat([cached_k, k], dim=2), torch.cat([cached_v, v], dim=2)


@wrong("kv_cache_update", "(keys, values)")
def kv_cache_swapped(cached_k, cached_v, k, v):
    if cached_k is None:
        return k, v
    return torch.cat([cached_v, v], dim=2), torch.cat([cached_k, k], dim=2)


# --------------------------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The checks' networks are tiny: threads only add overhead (and spin-waits on a busy CPU)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------
# Lesson 09: lora_linear(MyLoRALinear), merge_adapter(merge), freeze_all_but_adapters(model),
# continuation_loss(model, prompt, continuation)
# --------------------------------------------------------------------------------------------


class _LoRA(nn.Module):
    """A LoRA layer with switches for the classic slips."""

    def __init__(self, base, rank, alpha, *, scale=None, b_random=False, a_zero=False,
                 freeze=True, a_shape=None):  # fmt: skip
        super().__init__()
        self.base = base
        if freeze:
            for parameter in base.parameters():
                parameter.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.randn(*(a_shape or (rank, base.in_features))))
        if a_zero:
            nn.init.zeros_(self.lora_A)
        self.lora_B = nn.Parameter(
            torch.randn(base.out_features, rank)
            if b_random
            else torch.zeros(base.out_features, rank)
        )
        self.scale = alpha / rank if scale is None else scale(alpha, rank)

    def forward(self, x):
        return self.base(x) + self.scale * ((x @ self.lora_A.T) @ self.lora_B.T)


@wrong("lora_linear", "alpha / r, not by alpha")
def lora_scaled_by_alpha(base, rank, alpha):
    return _LoRA(base, rank, alpha, scale=lambda a, r: a)


@wrong("lora_linear", "not scaled")
def lora_not_scaled(base, rank, alpha):
    return _LoRA(base, rank, alpha, scale=lambda a, r: 1.0)


@wrong("lora_linear", "B must start at zero", "both random")
def lora_both_random(base, rank, alpha):
    return _LoRA(base, rank, alpha, b_random=True)


@wrong("lora_linear", "A must start random", "never learns")
def lora_both_zero(base, rank, alpha):
    return _LoRA(base, rank, alpha, a_zero=True)


@wrong("lora_linear", "base layer still trains", "freeze")
def lora_base_not_frozen(base, rank, alpha):
    return _LoRA(base, rank, alpha, freeze=False)


@wrong("lora_linear", "lora_A must be (rank, in_features)")
def lora_a_transposed(base, rank, alpha):
    return _LoRA(base, rank, alpha, a_shape=(base.in_features, rank))


@wrong("lora_linear", "alpha // r rounds")
def lora_scaled_by_integer_division(base, rank, alpha):
    return _LoRA(base, rank, alpha, scale=lambda a, r: a // r)


class _DetachedLoRA(_LoRA):
    def forward(self, x):
        return self.base(x) + self.scale * ((x @ self.lora_A.detach().T) @ self.lora_B.detach().T)


@wrong("lora_linear", "no gradient reaches `lora_A`", ".detach()")
def lora_detached(base, rank, alpha):
    return _DetachedLoRA(base, rank, alpha)


@wrong("lora_linear", "small random numbers", "torch.empty")
def lora_a_huge(base, rank, alpha):
    layer = _LoRA(base, rank, alpha)
    with torch.no_grad():
        layer.lora_A.fill_(1e30)
    return layer


@wrong("merge_adapter", "in place", "new nn.Parameter")
def merge_replacing_the_weight(layer):
    weight = layer.base.weight + layer.scale * (layer.lora_B @ layer.lora_A)
    layer.base.weight = nn.Parameter(weight.detach())
    layer.merged = True


@wrong("merge_adapter", "added the update twice", "already True")
def merge_without_a_guard(layer):
    with torch.no_grad():
        layer.base.weight += layer.scale * (layer.lora_B @ layer.lora_A)
    layer.merged = True


@wrong("merge_adapter", "not scaled")
def merge_without_scale(layer):
    with torch.no_grad():
        layer.base.weight += layer.lora_B @ layer.lora_A
    layer.merged = True


@wrong("merge_adapter", "do not subtract")
def merge_subtracting(layer):
    with torch.no_grad():
        layer.base.weight -= layer.scale * (layer.lora_B @ layer.lora_A)
    layer.merged = True


@wrong("merge_adapter", "layer.merged = True", "counts twice")
def merge_without_the_flag(layer):
    with torch.no_grad():
        layer.base.weight += layer.scale * (layer.lora_B @ layer.lora_A)


@wrong("merge_adapter", "keep A and B")
def merge_zeroing_the_adapter(layer):
    with torch.no_grad():
        layer.base.weight += layer.scale * (layer.lora_B @ layer.lora_A)
        layer.lora_B.zero_()


@wrong("merge_adapter", "raised RuntimeError")
def merge_transposed(layer):
    with torch.no_grad():
        layer.base.weight += layer.scale * (layer.lora_A.T @ layer.lora_B.T)
    layer.merged = True


@wrong("freeze_all_but_adapters", "outside the adapters still train", "LayerNorms")
def freeze_only_linear_weights(model):
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.weight.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@wrong("freeze_all_but_adapters", "adapters are frozen too")
def freeze_everything(model):
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return 0


@wrong("freeze_all_but_adapters", "not the tensors")
def freeze_counting_tensors(model):
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("lora_" in name)
    return sum(1 for p in model.parameters() if p.requires_grad)


@wrong("freeze_all_but_adapters", "wrong count of trainable numbers")
def freeze_counting_everything(model):
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("lora_" in name)
    return sum(p.numel() for p in model.parameters())


def _continuation(model, prompt, continuation, *, eval_mode=True, cut="left", reduce="mean",
                  base=math.e, score_prompt=False):  # fmt: skip
    if eval_mode:
        model.eval()
    size = model.config.block_size
    ids = torch.cat([prompt, continuation])
    ids = ids[-(size + 1) :] if cut == "left" else ids[: size + 1]
    with torch.no_grad():
        logits, _ = model(ids[None, :-1])
    log_p = logits[0].log_softmax(-1)
    n = continuation.numel()
    losses = -log_p.gather(1, ids[1:, None])[:, 0]
    if not score_prompt:
        losses = losses[-n:]
    value = losses.mean() if reduce == "mean" else losses.sum()
    return value.item() / math.log(base)


@wrong("continuation_loss", "one position earlier")
def continuation_off_by_one(model, prompt, continuation):
    model.eval()
    ids = torch.cat([prompt, continuation])[-model.config.block_size :]
    with torch.no_grad():
        logits, _ = model(ids[None])
    n = continuation.numel()
    return -logits[0, -n:].log_softmax(-1).gather(1, ids[-n:, None]).mean().item()


@wrong("continuation_loss", "dropout is on", "model.eval()")
def continuation_without_eval(model, prompt, continuation):
    return _continuation(model, prompt, continuation, eval_mode=False)


@wrong("continuation_loss", "continuation's tokens only")
def continuation_scoring_the_prompt(model, prompt, continuation):
    return _continuation(model, prompt, continuation, score_prompt=True)


@wrong("continuation_loss", "*mean*")
def continuation_summed(model, prompt, continuation):
    return _continuation(model, prompt, continuation, reduce="sum")


@wrong("continuation_loss", "not bits")
def continuation_in_bits(model, prompt, continuation):
    return _continuation(model, prompt, continuation, base=2.0)


@wrong("continuation_loss", "from the *left*")
def continuation_cut_from_the_right(model, prompt, continuation):
    return _continuation(model, prompt, continuation, cut="right")


# --------------------------------------------------------------------------------------------
# Lesson 10: q_sample(x0, t, noise, schedule), training_loss(model, x0, t, noise, schedule),
# ddpm_step(x_t, t, eps, schedule, z), ddim_step(x_t, t, t_prev, eps, schedule)
# --------------------------------------------------------------------------------------------


def _ab(schedule, t):
    return schedule.alpha_bars[t].view(-1, 1, 1, 1)


@wrong("q_sample", "square roots are swapped")
def q_sample_swapped(x0, t, noise, schedule):
    a = _ab(schedule, t)
    return (1 - a).sqrt() * x0 + a.sqrt() * noise


@wrong("q_sample", "not alpha_t")
def q_sample_with_alpha(x0, t, noise, schedule):
    a = schedule.alphas[t].view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


@wrong("q_sample", "not by the variances")
def q_sample_with_variances(x0, t, noise, schedule):
    a = _ab(schedule, t)
    return a * x0 + (1 - a) * noise


@wrong("q_sample", "its own step")
def q_sample_one_step_for_the_batch(x0, t, noise, schedule):
    a = schedule.alpha_bars[t[0]]
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


@wrong("q_sample", "raised RuntimeError")
def q_sample_without_reshape(x0, t, noise, schedule):
    a = schedule.alpha_bars[t]
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def _noised(x0, t, noise, schedule):
    a = _ab(schedule, t)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


@wrong("training_loss", "not with x0")
def loss_against_x0(model, x0, t, noise, schedule):
    return ((model(_noised(x0, t, noise, schedule), t) - x0) ** 2).mean()


@wrong("training_loss", "not the clean x0")
def loss_on_clean_images(model, x0, t, noise, schedule):
    return ((model(x0, t) - noise) ** 2).mean()


@wrong("training_loss", "tell the network the step")
def loss_without_the_step(model, x0, t, noise, schedule):
    return ((model(_noised(x0, t, noise, schedule), torch.zeros_like(t)) - noise) ** 2).mean()


@wrong("training_loss", "*mean* squared error")
def loss_summed(model, x0, t, noise, schedule):
    return ((model(_noised(x0, t, noise, schedule), t) - noise) ** 2).sum()


def _ddpm(
    x_t, t, eps, schedule, z, *, divide=None, sign=-1.0, sd=True, last_noise=False, noise=True
):
    beta, alpha, a = schedule.betas[t], schedule.alphas[t], schedule.alpha_bars[t]
    mean = (x_t + sign * beta / (1 - a).sqrt() * eps) / (
        divide(schedule, t) if divide else alpha.sqrt()
    )
    scale = beta.sqrt() if sd else beta
    if not noise or (t == 0 and not last_noise):
        return mean
    return mean + scale * z


@wrong("ddpm_step", "numbered from 0")
def ddpm_with_the_paper_s_index(x_t, t, eps, schedule, z):
    beta, alpha, a = schedule.betas[t], schedule.alphas[t], schedule.alpha_bars[t]
    mean = (x_t - beta / (1 - a).sqrt() * eps) / alpha.sqrt()
    return mean + beta.sqrt() * z if t > 1 else mean


@wrong("ddpm_step", "posterior variance")
def ddpm_with_the_posterior_variance(x_t, t, eps, schedule, z):
    beta, alpha, a = schedule.betas[t], schedule.alphas[t], schedule.alpha_bars[t]
    a_prev = schedule.alpha_bars[t - 1] if t > 0 else torch.tensor(1.0)
    mean = (x_t - beta / (1 - a).sqrt() * eps) / alpha.sqrt()
    return mean + ((1 - a_prev) / (1 - a) * beta).sqrt() * z if t > 0 else mean


@wrong("ddim_step", "only t_prev = -1 means the clean image")
def ddim_with_the_paper_s_index(x_t, t, t_prev, eps, schedule):
    a = schedule.alpha_bars[t]
    a_prev = schedule.alpha_bars[t_prev] if t_prev > 0 else torch.tensor(1.0)
    x0_hat = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
    return a_prev.sqrt() * x0_hat + (1 - a_prev).sqrt() * eps


@wrong("ddpm_step", "not sqrt(alpha_bar_t)")
def ddpm_dividing_by_alpha_bar(x_t, t, eps, schedule, z):
    return _ddpm(x_t, t, eps, schedule, z, divide=lambda s, t: s.alpha_bars[t].sqrt())


@wrong("ddpm_step", "subtracted")
def ddpm_adding_the_noise_estimate(x_t, t, eps, schedule, z):
    return _ddpm(x_t, t, eps, schedule, z, sign=1.0)


@wrong("ddpm_step", "not the variance")
def ddpm_variance_for_sd(x_t, t, eps, schedule, z):
    return _ddpm(x_t, t, eps, schedule, z, sd=False)


@wrong("ddpm_step", "last step (t = 0) adds no noise")
def ddpm_noise_at_the_end(x_t, t, eps, schedule, z):
    return _ddpm(x_t, t, eps, schedule, z, last_noise=True)


@wrong("ddpm_step", "fresh noise")
def ddpm_without_noise(x_t, t, eps, schedule, z):
    return _ddpm(x_t, t, eps, schedule, z, noise=False)


def _ddim(x_t, t, t_prev, eps, schedule, *, values="alpha_bars", direction=True, prev_for_x0=False,
          last_is_one=True, swapped=False):  # fmt: skip
    v = getattr(schedule, values)
    a = v[t]
    a_prev = v[t_prev] if (t_prev >= 0 or not last_is_one) else torch.tensor(1.0)
    denominator = a_prev if prev_for_x0 else a
    if swapped:
        x0_hat = (x_t - a.sqrt() * eps) / (1 - a).sqrt()
    else:
        x0_hat = (x_t - (1 - a).sqrt() * eps) / denominator.sqrt()
    return a_prev.sqrt() * x0_hat + ((1 - a_prev).sqrt() * eps if direction else 0)


@wrong("ddim_step", "not alpha")
def ddim_with_alphas(x_t, t, t_prev, eps, schedule):
    return _ddim(x_t, t, t_prev, eps, schedule, values="alphas", last_is_one=True)


@wrong("ddim_step", "move along the predicted noise")
def ddim_without_direction(x_t, t, t_prev, eps, schedule):
    return _ddim(x_t, t, t_prev, eps, schedule, direction=False)


@wrong("ddim_step", "*current* step")
def ddim_x0_with_the_previous_step(x_t, t, t_prev, eps, schedule):
    return _ddim(x_t, t, t_prev, eps, schedule, prev_for_x0=True)


@wrong("ddim_step", "square roots are swapped")
def ddim_swapped(x_t, t, t_prev, eps, schedule):
    return _ddim(x_t, t, t_prev, eps, schedule, swapped=True)


@wrong("ddim_step", "t_prev = -1 means the clean image")
def ddim_last_step_wrapping_around(x_t, t, t_prev, eps, schedule):
    return _ddim(x_t, t, t_prev, eps, schedule, last_is_one=False)


# --------------------------------------------------------------------------------------------
# Lesson 11: precision_recall(real, fake, k), bits_per_dim(nll, dims), perplexity(nll),
# longest_verbatim_substring(text, corpus)
# --------------------------------------------------------------------------------------------


def _pr(real, fake, k, *, kth=1, squared=False, swap=False, own_radius=False, axis=1,
        reduce="any"):  # fmt: skip
    def radii(points, other):
        return torch.cdist(points, points).kthvalue(k + kth, dim=1).values

    def share(points, support, points_radii, support_radii):
        distances = torch.cdist(points, support) ** (2 if squared else 1)
        inside = distances <= (points_radii[:, None] if own_radius else support_radii[None, :])
        if reduce == "mean":
            return inside.double().mean().item()
        return inside.any(dim=axis).double().mean().item()

    real_radii, fake_radii = radii(real, fake), radii(fake, real)
    precision = share(fake, real, fake_radii, real_radii)
    recall = share(real, fake, real_radii, fake_radii)
    return (recall, precision) if swap else (precision, recall)


@wrong("precision_recall", "swapped")
def precision_recall_swapped(real, fake, k):
    return _pr(real, fake, k, swap=True)


@wrong("precision_recall", "its own nearest neighbour", "kthvalue(k + 1)")
def precision_recall_counting_the_point_itself(real, fake, k):
    return _pr(real, fake, k, kth=0)


@wrong("precision_recall", "radii belong to the support set")
def precision_recall_with_the_tested_points_radii(real, fake, k):
    return _pr(real, fake, k, own_radius=True)


@wrong("precision_recall", "not squared distances")
def precision_recall_squared_distances(real, fake, k):
    return _pr(real, fake, k, squared=True)


@wrong("precision_recall", "count the *samples*")
def precision_recall_counting_balls(real, fake, k):
    return _pr(real, fake, k, axis=0)


@wrong("precision_recall", "*any* ball")
def precision_recall_mean_over_pairs(real, fake, k):
    return _pr(real, fake, k, reduce="mean")


@wrong("precision_recall", "a pair (precision, recall)")
def precision_recall_as_a_dict(real, fake, k):
    precision, recall = _pr(real, fake, k)
    return {"precision": precision, "recall": recall}


@wrong("bits_per_dim", "dividing by ln 2")
def bits_per_dim_in_nats(nll, dims):
    return nll.mean() / dims


@wrong("bits_per_dim", "not multiply")
def bits_per_dim_times_ln2(nll, dims):
    return nll.mean() * math.log(2) / dims


@wrong("bits_per_dim", "base 10")
def bits_per_dim_log10(nll, dims):
    return nll.mean() / (dims * math.log(10))


@wrong("bits_per_dim", "per *dimension*")
def bits_per_image(nll, dims):
    return nll.mean() / math.log(2)


@wrong("bits_per_dim", "not the sum")
def bits_per_dim_summed_over_images(nll, dims):
    return nll.sum() / (dims * math.log(2))


@wrong("bits_per_dim", "use the dims argument")
def bits_per_dim_for_28x28_only(nll, dims):
    return nll.mean() / (784 * math.log(2))


@wrong("bits_per_dim", "one number")
def bits_per_dim_per_image(nll, dims):
    return nll / (dims * math.log(2))


@wrong("perplexity", "mixes the units")
def perplexity_base_2_of_nats(nll):
    return 2 ** nll.mean()


@wrong("perplexity", "Jensen")
def perplexity_mean_of_exponentials(nll):
    return nll.exp().mean()


@wrong("perplexity", "not the total")
def perplexity_of_the_sum(nll):
    return nll.sum().exp()


@wrong("perplexity", "the cross-entropy")
def perplexity_is_the_loss(nll):
    return nll.mean()


@wrong("perplexity", "not exp(-mean)")
def perplexity_negated(nll):
    return (-nll.mean()).exp()


@wrong("perplexity", "not 10 to it")
def perplexity_base_10(nll):
    return 10 ** nll.mean()


@wrong("longest_verbatim_substring", "start anywhere")
def verbatim_prefix_only(text, corpus):
    end = 0
    while end < len(text) and text[: end + 1] in corpus:
        end += 1
    return text[:end]


@wrong("longest_verbatim_substring", "start + 1", "begin inside a shorter one")
def verbatim_jumping_past_each_match(text, corpus):
    best, start = "", 0
    while start < len(text):
        end = start
        while end < len(text) and text[start : end + 1] in corpus:
            end += 1
        best = max(best, text[start:end], key=len)
        start = max(end, start + 1)
    return best


@wrong("longest_verbatim_substring", "not whole words")
def verbatim_whole_words(text, corpus):
    words, best = text.split(" "), ""
    for i in range(len(words)):
        for j in range(i + 1, len(words) + 1):
            piece = " ".join(words[i:j])
            if piece in corpus and len(piece) > len(best):
                best = piece
    return best


@wrong("longest_verbatim_substring", "only if case is ignored")
def verbatim_ignoring_case(text, corpus):
    lower_text, lower_corpus, best = text.lower(), corpus.lower(), ""
    for start in range(len(text)):
        for end in range(len(text), start, -1):
            if lower_text[start:end] in lower_corpus and end - start > len(best):
                best = text[start:end]
    return best


@wrong("longest_verbatim_substring", "common *subsequence*")
def verbatim_common_subsequence(text, corpus):
    # the longest common subsequence (gaps allowed), by dynamic programming
    rows = [[""] * (len(corpus) + 1) for _ in range(len(text) + 1)]
    for i, a in enumerate(text):
        for j, b in enumerate(corpus):
            rows[i + 1][j + 1] = (
                rows[i][j] + a if a == b else max(rows[i][j + 1], rows[i + 1][j], key=len)
            )
    return rows[-1][-1]


@wrong("longest_verbatim_substring", "one character short")
def verbatim_off_by_one(text, corpus):
    best = ""
    for start in range(len(text)):
        end = start
        while end + 1 < len(text) and text[start : end + 1] in corpus:
            end += 1
        best = max(best, text[start:end], key=len)
    return best


@wrong("longest_verbatim_substring", "not its length")
def verbatim_length(text, corpus):
    return max(
        (j - i for i in range(len(text)) for j in range(i, len(text) + 1) if text[i:j] in corpus),
        default=0,
    )


# --------------------------------------------------------------------------------------------
# Lesson 12: watermark_z(ids, green, gamma), exposure(secret_nll, candidate_nlls),
# filter_precision_recall(flagged, truth)
# --------------------------------------------------------------------------------------------


def _z(g, t, gamma):
    return (g - gamma * t) / math.sqrt(t * gamma * (1 - gamma))


@wrong("watermark_z", "chosen by the token *before* it")
def watermark_z_own_token(ids, green, gamma):
    return _z(green[ids[1:], ids[1:]].sum().item(), len(ids) - 1, gamma)


@wrong("watermark_z", "green[previous, token]")
def watermark_z_transposed(ids, green, gamma):
    return _z(green[ids[1:], ids[:-1]].sum().item(), len(ids) - 1, gamma)


@wrong("watermark_z", "T - 1 scored tokens")
def watermark_z_counting_the_first(ids, green, gamma):
    return _z(green[ids[:-1], ids[1:]].sum().item(), len(ids), gamma)


@wrong("watermark_z", "not the variance")
def watermark_z_over_the_variance(ids, green, gamma):
    t = len(ids) - 1
    return (green[ids[:-1], ids[1:]].sum().item() - gamma * t) / (t * gamma * (1 - gamma))


@wrong("watermark_z", "grows with T")
def watermark_z_without_t(ids, green, gamma):
    t = len(ids) - 1
    return (green[ids[:-1], ids[1:]].sum().item() - gamma * t) / math.sqrt(gamma * (1 - gamma))


@wrong("watermark_z", "subtract the expected count")
def watermark_z_uncentred(ids, green, gamma):
    t = len(ids) - 1
    return green[ids[:-1], ids[1:]].sum().item() / math.sqrt(t * gamma * (1 - gamma))


@wrong("watermark_z", "use the gamma given")
def watermark_z_one_half(ids, green, gamma):
    return _z(green[ids[:-1], ids[1:]].sum().item(), len(ids) - 1, 0.5)


def _rank(secret_nll, candidate_nlls):
    return 1 + int((candidate_nlls < secret_nll).sum())


@wrong("exposure", "log2(C + 1), not log2(C)")
def exposure_over_c(secret_nll, candidate_nlls):
    return math.log2(len(candidate_nlls)) - math.log2(_rank(secret_nll, candidate_nlls))


@wrong("exposure", "log base 2")
def exposure_in_nats(secret_nll, candidate_nlls):
    return math.log(len(candidate_nlls) + 1) - math.log(_rank(secret_nll, candidate_nlls))


@wrong("exposure", "*likelier* string")
def exposure_ranked_backwards(secret_nll, candidate_nlls):
    rank = 1 + int((candidate_nlls > secret_nll).sum())
    return math.log2(len(candidate_nlls) + 1) - math.log2(rank)


@wrong("exposure", "not the rank")
def exposure_as_rank(secret_nll, candidate_nlls):
    return float(_rank(secret_nll, candidate_nlls))


@wrong("exposure", "not their ratio")
def exposure_as_ratio(secret_nll, candidate_nlls):
    rank = _rank(secret_nll, candidate_nlls)
    return math.log2(len(candidate_nlls) + 1) / math.log2(rank) if rank > 1 else math.inf


@wrong("exposure", "the rank starts at 1")
def exposure_rank_from_zero(secret_nll, candidate_nlls):
    rank = int((candidate_nlls < secret_nll).sum())  # 0 for the first: log2(0) fails
    return math.log2(len(candidate_nlls) + 1) - math.log2(rank)


def _counts(flagged, truth):
    hits = sum(f and t for f, t in zip(flagged, truth, strict=True))
    return hits, sum(flagged), sum(truth), len(truth)


@wrong("filter_precision_recall", "swapped")
def filter_swapped(flagged, truth):
    hits, n_flagged, positives, _ = _counts(flagged, truth)
    return (hits / positives, hits / n_flagged if n_flagged else 1.0)


@wrong("filter_precision_recall", "by the *flagged* items")
def filter_precision_over_all(flagged, truth):
    hits, _, positives, n = _counts(flagged, truth)
    return (hits / n, hits / positives)


@wrong("filter_precision_recall", "that *should* be flagged")
def filter_recall_over_all(flagged, truth):
    hits, n_flagged, _, n = _counts(flagged, truth)
    return (hits / n_flagged if n_flagged else 1.0, hits / n)


@wrong("filter_precision_recall", "not the accuracy")
def filter_accuracy(flagged, truth):
    accuracy = sum(f == t for f, t in zip(flagged, truth, strict=True)) / len(truth)
    return (accuracy, accuracy)


@wrong("filter_precision_recall", "every flag as a hit")
def filter_every_flag_a_hit(flagged, truth):
    _, n_flagged, positives, _ = _counts(flagged, truth)
    return (1.0, n_flagged / positives)


@wrong("filter_precision_recall", "raised ZeroDivisionError", "nothing is flagged")
def filter_without_the_convention(flagged, truth):
    hits, n_flagged, positives, _ = _counts(flagged, truth)
    return (hits / n_flagged, hits / positives)


# --------------------------------------------------------------------------------------------
# The review's fresh mistakes (issue: a catalogue proves only the mistakes its author thought of).
# Each got through the checks before they drew their inputs and compared gradients; each must fail
# now, on the property that exposes it.
# --------------------------------------------------------------------------------------------


@wrong("stable_softmax", "drawn input")
def softmax_right_only_in_2d(logits, dim=-1):
    shifted = logits - logits.amax(dim=-1 if logits.ndim < 2 else dim, keepdim=True)
    exponentials = shifted.exp()
    return exponentials / exponentials.sum(
        dim=dim if logits.ndim == 2 or dim == -1 else -1, keepdim=True
    )


@wrong("kl_to_standard_normal", "drawn input")
def kl_prior_over_dim_1(mu, logvar):
    return -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(dim=1 if mu.ndim > 1 else 0)


@wrong("score_function_estimate", "drawn input")
def score_divided_by_std_except_at_two(f_values, z, mean, std):
    return (f_values * (z - mean) / std).mean() / (2.0 if std == 2.0 else 1.0)


@wrong("q_sample", "drawn input")
def q_sample_for_three_images(x0, t, noise, schedule):
    a = schedule.alpha_bars[t].view(3, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


@wrong("training_loss", "cut from the autograd graph")
def training_loss_without_graph(model, x0, t, noise, schedule):
    with torch.no_grad():
        a = schedule.alpha_bars[t].view(-1, 1, 1, 1)
        return ((model(a.sqrt() * x0 + (1 - a).sqrt() * noise, t) - noise) ** 2).mean()


class _LoRAFrozenPathCut(nn.Module):
    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base, self.scale = base, alpha / rank
        base.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.randn(rank, base.in_features) / base.in_features**0.5)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x):
        with (
            torch.no_grad()
        ):  # the frozen path needs no weight gradient, but x's gradient flows here
            plain = self.base(x)
        return plain + self.scale * (x @ self.lora_A.T) @ self.lora_B.T


@wrong("lora_linear", "gradient with respect to the input `x`")
def lora_frozen_path_cut(base, rank, alpha):
    return _LoRAFrozenPathCut(base, rank, alpha)


@wrong("merge_adapter", "changed the adapter itself")
def merge_scaling_b_in_place(layer):
    if layer.merged:
        return
    with torch.no_grad():
        layer.lora_B *= layer.scale
        layer.base.weight += layer.lora_B @ layer.lora_A
        layer.lora_B /= layer.scale * 1.000001
    layer.merged = True


@wrong("top_k_top_p", "drawn input")
def filter_nucleus_before_top_k(logits, top_k, top_p):
    logits = logits.clone()
    if top_p is not None:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probabilities = torch.softmax(sorted_logits, dim=-1)
        remove = (probabilities.cumsum(-1) - probabilities >= top_p).scatter(
            -1, order, (probabilities.cumsum(-1) - probabilities >= top_p)
        )
        logits[remove] = float("-inf")
    if top_k is not None:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits[logits < kth] = float("-inf")
    return logits


@wrong("precision_recall", "precision, recall")
def precision_recall_strictly_inside(real, fake, k=3):
    def share(points, support):
        radii = torch.cdist(support, support).kthvalue(k + 1, dim=1).values
        return (torch.cdist(points, support) < radii[None, :]).any(1).double().mean().item()

    return share(fake, real), share(real, fake)


@wrong("longest_verbatim_substring", "short")
def verbatim_skipping_the_first_start(text, corpus):
    best = ""
    for start in range(1, len(text)):
        end = start
        while end < len(text) and text[start : end + 1] in corpus:
            end += 1
        best = max(best, text[start:end], key=len)
    return best


@wrong("filter_precision_recall", "raised ZeroDivisionError")
def filter_without_positives(flagged, truth):
    hits = sum(1 for f, t in zip(flagged, truth, strict=True) if f and t)
    return (hits / sum(flagged) if any(flagged) else 1.0), hits / sum(truth)


@wrong("encoder_decoder_shapes", "[-1, 1]", "tanh")
def vae_with_tanh_decoder(latent_dim):
    from tests.test_check_correct_answers import _VAE

    model = _VAE(latent_dim)
    model.decoder.append(nn.Tanh())
    return model


@wrong("negative_elbo", "drawn input")
def negative_elbo_through_sigmoid(logits, x, mean, logvar):
    reconstruction = F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="none")
    kl = -0.5 * (1 + logvar - mean**2 - logvar.exp()).sum(1)
    return reconstruction.flatten(1).sum(1) + kl


MISTAKES = [
    pytest.param(check, function, words, id=f"{check}-{name}")
    for check, entries in CATALOGUE.items()
    for name, function, words in entries
]


def test_every_check_has_a_catalogue_of_at_least_three_mistakes():
    assert set(CATALOGUE) == set(CHECKS)
    thin = {check: len(entries) for check, entries in CATALOGUE.items() if len(entries) < 3}
    assert thin == {}, "each check needs at least three classic wrong answers"


@pytest.mark.parametrize("check, function, words", MISTAKES)
def test_the_check_rejects_a_classic_mistake_and_names_it(capsys, check, function, words):
    passed = getattr(checks, check)(function, strict=False)
    out = capsys.readouterr().out
    assert passed is False, out
    assert out.startswith(f"❌ {check}: "), out
    for word in words:
        assert word in out, (word, out)
    assert "Traceback" not in out


# --- the reference solutions pass ------------------------------------------------------------

SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))


def _check_cells() -> list[tuple[str, str, str]]:
    """(notebook, check name, argument source) for every check cell of the solutions."""
    found = []
    for path in SOLUTIONS:
        for cell in nbformat.read(path, as_version=4).cells:
            call = check_call(cell.source) if cell.cell_type == "code" else None
            if call is not None:
                found.append((path.name, call.func.attr, ast.unparse(call.args[0])))
    return found


@functools.cache
def _solution_namespace(notebook: str) -> dict:
    """The names a solution notebook defines: every code cell run, except its check cells."""
    namespace: dict = {"__name__": "__solution__"}
    for cell in nbformat.read(ROOT / "solutions" / notebook, as_version=4).cells:
        if cell.cell_type == "code" and check_call(cell.source) is None:
            exec(compile(cell.source, f"{notebook}", "exec"), namespace)
    return namespace


CHECK_CELLS = _check_cells()


def test_every_check_is_exercised_by_a_solution_notebook():
    assert set(CHECKS) <= {check for _, check, _ in CHECK_CELLS}


@pytest.mark.parametrize(
    "notebook, check, argument",
    CHECK_CELLS,
    ids=[f"{notebook}-{check}" for notebook, check, _ in CHECK_CELLS],
)
def test_the_reference_solution_passes(capsys, notebook, check, argument):
    solution = eval(argument, _solution_namespace(notebook))
    capsys.readouterr()  # what the notebook's own cells printed is not the verdict
    passed = getattr(checks, check)(solution, strict=False)
    out = capsys.readouterr().out
    assert passed is True, out
    assert out.startswith(f"✅ {check}: passed"), out
