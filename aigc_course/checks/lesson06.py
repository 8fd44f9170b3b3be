"""Checks for lesson 06: the VAE's encoder and decoder shapes, sampling, negative ELBO, IWAE bound."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from aigc_course.checks._core import Case, run_check
from aigc_course.divergences import kl_standard_normal


def encoder_decoder_shapes(
    make_model: Callable[[int], torch.nn.Module], *, strict: bool | None = None
) -> bool:
    """Check ``make_model(latent_dim)``: ``encode(x)`` gives (mean, logvar) ``(B, k)`` each and
    ``decode(z)`` gives logits ``(B, 1, 28, 28)``."""

    def verdict_for(latent_dim: int, batch: int):
        def verdict(model) -> str | None:
            x = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))
            encoded = model.encode(x)
            if not isinstance(encoded, tuple) or len(encoded) != 2:
                return "encode(x) must return a tuple (mean, logvar)"
            mean, logvar = encoded
            for name, tensor in (("mean", mean), ("logvar", logvar)):
                if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != (
                    batch,
                    latent_dim,
                ):
                    shape = (
                        tuple(tensor.shape)
                        if isinstance(tensor, torch.Tensor)
                        else type(tensor).__name__
                    )
                    return f"encode: {name} should have shape {(batch, latent_dim)}, got {shape}"
            if torch.equal(mean, logvar):
                return "encode: mean and logvar are the same tensor; they need two separate output layers"
            logits = model.decode(mean)
            if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (batch, 1, 28, 28):
                shape = (
                    tuple(logits.shape)
                    if isinstance(logits, torch.Tensor)
                    else type(logits).__name__
                )
                return f"decode: logits should have shape {(batch, 1, 28, 28)}, got {shape}"
            return None

        return verdict

    cases = [
        Case("latent_dim = 8, a batch of 5", (8,), verdict_for(8, 5)),
        Case("latent_dim = 2, a batch of 1", (2,), verdict_for(2, 1)),
    ]
    hint = (
        "28 -> 14 -> 7 with Conv2d(kernel 4, stride 2, padding 1); flatten c2 * 7 * 7 features; "
        "decode back with Linear, Unflatten(1, (c2, 7, 7)) and two ConvTranspose2d(4, 2, 1)"
    )
    return run_check("encoder_decoder_shapes", make_model, cases, hint, strict)


def reparameterise(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(mean, logvar)``: mean + exp(logvar / 2) * eps, with eps = torch.randn_like(mean)."""
    generator = torch.Generator().manual_seed(1)
    mean, logvar = torch.randn(4, 3, generator=generator), torch.randn(4, 3, generator=generator)
    torch.manual_seed(123)
    expected = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)

    def seeded(mean_, logvar_):
        torch.manual_seed(123)
        return function(mean_, logvar_)

    def verdict(got) -> str | None:
        return (
            None
            if isinstance(got, torch.Tensor) and torch.allclose(got, expected)
            else (
                "wrong value: with the same random seed, expected mean + exp(logvar / 2) * torch.randn_like(mean)"
            )
        )

    cases = [Case("a batch (4, 3), with a fixed seed", (mean, logvar), verdict)]
    hint = "draw eps with torch.randn_like(mean) (one call), sigma = torch.exp(0.5 * logvar)"
    return run_check("reparameterise", seeded, cases, hint, strict)


def negative_elbo(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(logits, x, mean, logvar)``: per image, BCE summed over pixels + KL to N(0, I)."""
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 1, 28, 28, generator=generator)
    x = torch.bernoulli(torch.rand(3, 1, 28, 28, generator=generator), generator=generator)
    mean, logvar = torch.randn(3, 4, generator=generator), torch.randn(3, 4, generator=generator)
    reconstruction = (
        F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    )
    kl = kl_standard_normal(mean, logvar)
    cases = [
        Case(
            "3 images, 4 latent dimensions",
            (logits, x, mean, logvar),
            reconstruction + kl,
            hint="one value per image: sum the BCE over the 784 pixels (reduction='none', then "
            ".flatten(1).sum(1)), and add the KL summed over the latent dimensions",
            rtol=1e-4,
            atol=1e-3,
        )
    ]
    hint = "F.binary_cross_entropy_with_logits(logits, x, reduction='none') summed per image, plus the KL"
    return run_check("negative_elbo", function, cases, hint, strict)


def iwae_bound(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(log_weights)``: log (1/K) sum_k exp(log_weights[k]) for ``(K, B)`` -> ``(B,)``."""
    generator = torch.Generator().manual_seed(3)
    small = torch.randn(5, 4, generator=generator)
    realistic = -300.0 + 5 * torch.randn(50, 3, generator=generator)  # log-weights of real images
    cases = [
        Case("K = 5 samples for 4 images", (small,), torch.logsumexp(small, 0) - math.log(5)),
        Case(
            "log-weights around -300 (as for real images)",
            (realistic,),
            torch.logsumexp(realistic, 0) - math.log(50),
            hint="exp(-300) underflows to 0 in float32: use torch.logsumexp(log_weights, dim=0) - log K",
            rtol=1e-5,
            atol=1e-3,
        ),
    ]
    hint = "average the weights (not the log-weights) over the K samples, in log space"
    return run_check("iwae_bound", function, cases, hint, strict)
