"""Checks for lesson 06: the VAE's encoder and decoder shapes, sampling, negative ELBO, IWAE bound."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from aigc_course.checks._core import (
    Case,
    Draws,
    draw_choice,
    draw_dtype,
    draw_int,
    draw_shape,
    randn,
    run_check,
)
from aigc_course.divergences import kl_standard_normal
from aigc_course.i18n import _


def _shape_of(value: object) -> object:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def _gradient_flow(model: torch.nn.Module, x: torch.Tensor, latent_dim: int) -> str | None:
    """Gradients must flow from the mean and logvar back to the image, and from the logits back to
    z: a detached layer trains nothing before it."""
    x = x.clone().requires_grad_(True)
    z = torch.randn(x.shape[0], latent_dim).requires_grad_(True)
    with torch.enable_grad():
        for name, output, source in (
            (_("encode's mean"), lambda: model.encode(x)[0], x),
            (_("encode's logvar"), lambda: model.encode(x)[1], x),
            (_("decode's logits"), lambda: model.decode(z), z),
        ):
            result = output()
            gradient = (
                torch.autograd.grad(result.sum(), source, allow_unused=True)[0]
                if result.requires_grad
                else None
            )
            if gradient is None or not bool(gradient.abs().sum() > 0):
                return _(
                    "no gradient flows from {name} back to its input: a `.detach()`, "
                    "`torch.no_grad()` or `.data` cuts the network, and training would not "
                    "reach the layers before it"
                ).format(name=name)
    return None


def encoder_decoder_shapes(
    make_model: Callable[[int], torch.nn.Module], *, strict: bool | None = None
) -> bool:
    """Check ``make_model(latent_dim)``: ``encode(x)`` gives (mean, logvar) ``(B, k)`` each and
    ``decode(z)`` gives logits ``(B, 1, 28, 28)``: any real numbers, not probabilities."""

    def verdict_for(latent_dim: int, batch: int):
        def verdict(model) -> str | None:
            generator = torch.Generator().manual_seed(0)
            x = torch.rand(batch, 1, 28, 28, generator=generator)
            with torch.no_grad():
                encoded = model.encode(x)
            if not isinstance(encoded, tuple) or len(encoded) != 2:
                return _("encode(x) must return a tuple (mean, logvar)")
            mean, logvar = encoded
            for name, tensor in (("mean", mean), ("logvar", logvar)):
                if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != (
                    batch,
                    latent_dim,
                ):
                    return _("encode: {name} should have shape {expected}, got {got}").format(
                        name=name, expected=(batch, latent_dim), got=_shape_of(tensor)
                    )
            if torch.equal(mean, logvar):
                return _(
                    "encode: mean and logvar are the same tensor; they need two separate output "
                    "layers"
                )
            if latent_dim >= 16:  # enough independent outputs for a sign to mean something
                for name, tensor in (("mean", mean), ("logvar", logvar)):
                    if (tensor >= 0).all():
                        return _(
                            "encode: {name} is never negative; a mean and a log-variance can be "
                            "any real number, so put no activation (ReLU, softplus, exp) on "
                            "the output layer of {name}"
                        ).format(name=name)
            with torch.no_grad():
                logits = model.decode(mean)
                # Far from the origin a ReLU decoder's logits grow large, of both signs; a
                # squashing last layer keeps them in its range.
                far = model.decode(100 * torch.randn(batch, latent_dim, generator=generator))
            expected_shape = (batch, 1, 28, 28)
            for tensor in (logits, far):
                if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != expected_shape:
                    return _("decode: logits should have shape {expected}, got {got}").format(
                        expected=expected_shape, got=_shape_of(tensor)
                    )
            if far.min() >= 0 and far.max() <= 1:
                return _(
                    "decode must return logits, not probabilities: its outputs stay in [0, 1] "
                    "even for a z far from 0, so it ends in a sigmoid. Remove it: "
                    "F.binary_cross_entropy_with_logits applies the sigmoid itself (a sigmoid "
                    "here would be applied twice)"
                )
            if far.min() >= -1 and far.max() <= 1:
                return _(
                    "decode must return logits, any real numbers: its outputs stay in [-1, 1] "
                    "even for a z far from 0, so the last layer squashes them (a tanh?). End "
                    "with the ConvTranspose2d itself"
                )
            if far.min() >= 0:
                return _(
                    "decode must return logits, which can be negative: its outputs are never "
                    "below 0, so the last layer has an activation (ReLU?). End with the "
                    "ConvTranspose2d itself"
                )
            return _gradient_flow(model, x, latent_dim)

        return verdict

    def build(latent_dim: int) -> torch.nn.Module:
        with torch.random.fork_rng(devices=[]):  # the same weights every time, RNG untouched
            torch.manual_seed(0)
            return make_model(latent_dim)

    cases = [
        Case(_("latent_dim = 16, a batch of 5"), (16,), verdict_for(16, 5)),
        Case(_("latent_dim = 2, a batch of 1"), (2,), verdict_for(2, 1)),
        Case(_("latent_dim = 5, a batch of 3"), (5,), verdict_for(5, 3)),
    ]
    hint = _(
        "28 -> 14 -> 7 with Conv2d(kernel 4, stride 2, padding 1); flatten c2 * 7 * 7 features; "
        "decode back with Linear, Unflatten(1, (c2, 7, 7)) and two ConvTranspose2d(4, 2, 1), "
        "with no activation after the last one (logits)"
    )
    function = build if callable(make_model) else make_model
    return run_check("encoder_decoder_shapes", function, cases, hint, strict)


def reparameterise(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(mean, logvar)``: mean + exp(logvar / 2) * eps, with eps = torch.randn_like(mean),
    a sample that gradients flow through to mean and logvar.

    Edge cases: the sample under a fixed seed, gradients to both inputs. Drawn: 1 to 3
    dimensions; values and gradients.
    """
    generator = torch.Generator().manual_seed(1)
    mean, logvar = torch.randn(4, 3, generator=generator), torch.randn(4, 3, generator=generator)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        eps = torch.randn_like(mean)
        torch.manual_seed(123)
        uniform = torch.rand_like(mean)
    sigma = torch.exp(0.5 * logvar)
    calls: list[tuple] = []

    def seeded(mean_, logvar_):
        calls.append((mean_, logvar_))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(123)
            return function(mean_, logvar_)

    def gradients_flow(got) -> str | None:
        mean_, logvar_ = calls[-1]
        message = _(
            "no gradient flows back to {names}: build z = mean + exp(logvar / 2) * eps from the "
            "arguments with ordinary tensor operations (no .detach(), torch.no_grad(), "
            ".item() or torch.normal, which passes no gradient)"
        )
        if not isinstance(got, torch.Tensor) or not got.requires_grad:
            return message.format(names=_("mean and logvar"))
        gradients = torch.autograd.grad(got.sum(), (mean_, logvar_), allow_unused=True)
        for name, gradient in zip(("mean", "logvar"), gradients, strict=True):
            if gradient is None or not gradient.abs().sum() > 0:
                return message.format(names=name)
        return None

    mistakes = {
        _("sigma = exp(logvar / 2): logvar is log(sigma^2), so exp(logvar) is the variance"): mean
        + torch.exp(logvar) * eps,
        _("sigma = exp(logvar / 2): logvar is log(sigma^2), not sigma itself"): mean + logvar * eps,
        _(
            "the noise is missing: a sample is mean + sigma * eps with eps = "
            "torch.randn_like(mean), not the mean itself"
        ): mean.clone(),
        _(
            "eps must be standard normal, torch.randn_like(mean), not uniform (torch.rand_like)"
        ): mean + sigma * uniform,
        _("add the mean: z = mean + sigma * eps"): sigma * eps,
    }
    cases = [
        Case(
            _("a batch (4, 3), with a fixed seed"),
            (mean, logvar),
            mean + sigma * eps,
            hint=_(
                "draw eps with torch.randn_like(mean) (one call), sigma = torch.exp(0.5 * logvar)"
            ),
            mistakes=mistakes,
        ),
        Case(
            _("gradients to mean and logvar"),
            (mean.clone().requires_grad_(), logvar.clone().requires_grad_()),
            gradients_flow,
        ),
    ]
    hint = _("draw eps with torch.randn_like(mean) (one call), sigma = torch.exp(0.5 * logvar)")
    return run_check("reparameterise", seeded, cases, hint, strict, REPARAMETERISE)


def negative_elbo(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(logits, x, mean, logvar)``: per image, BCE summed over pixels + KL to N(0, I).

    Edge cases: extreme logits (|logit| up to 60: a sigmoid then BCE, whose logs are clamped at
    -100, is wrong there), grey-level targets. Drawn: batch and latent sizes, float32 and
    float64; values and gradients."""
    generator = torch.Generator().manual_seed(2)
    logits = 3 * torch.randn(3, 1, 28, 28, generator=generator)
    x = torch.bernoulli(torch.rand(3, 1, 28, 28, generator=generator), generator=generator)
    mean, logvar = torch.randn(3, 4, generator=generator), torch.randn(3, 4, generator=generator)

    def per_image(logits: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)

    reconstruction = per_image(logits)
    kl = kl_standard_normal(mean, logvar)
    pixels = reconstruction / (28 * 28)
    mistakes = {
        _(
            "a sigmoid too many: the decoder gives logits and F.binary_cross_entropy_with_logits "
            "applies the sigmoid itself, so do not apply torch.sigmoid first"
        ): per_image(torch.sigmoid(logits)) + kl,
        _(
            "sum the BCE over the 784 pixels of each image, do not average them (the ELBO is a "
            "sum over pixels)"
        ): pixels + kl,
        _(
            "one value per image: reduction='mean' averages over the whole batch; use "
            "reduction='none', then .flatten(1).sum(1)"
        ): pixels.mean() + kl,
        _("add the KL: -ELBO = reconstruction + KL(q(z | x) || N(0, I))"): reconstruction - kl,
        _("one value per image (shape (B,)): do not sum over the batch"): (
            reconstruction + kl
        ).sum(),
        _("sum the KL over the latent dimensions, do not average them"): reconstruction
        + kl / mean.shape[1],
    }
    cases = [
        Case(
            _("3 images, 4 latent dimensions"),
            (logits, x, mean, logvar),
            reconstruction + kl,
            hint=_(
                "one value per image: F.binary_cross_entropy_with_logits(logits, x, "
                "reduction='none') (the decoder gives logits), summed over the 784 pixels with "
                ".flatten(1).sum(1), plus the KL summed over the latent dimensions"
            ),
            mistakes=mistakes,
        )
    ]
    hint = _(
        "F.binary_cross_entropy_with_logits(logits, x, reduction='none') summed per image, plus "
        "the KL"
    )
    return run_check("negative_elbo", function, cases, hint, strict, NEGATIVE_ELBO)


def iwae_bound(function: Callable[..., torch.Tensor], *, strict: bool | None = None) -> bool:
    """Check ``function(log_weights)``: log (1/K) sum_k exp(log_weights[k]) for ``(K, B)`` -> ``(B,)``.

    Edge cases: log-weights near -300 (underflow). Drawn: K 1 to 60, B 1 to 5, log-weights near
    0, -300 and -3000, float32 and float64; values and gradients.
    """
    generator = torch.Generator().manual_seed(3)
    small = torch.randn(5, 4, generator=generator)
    realistic = -300.0 + 5 * torch.randn(50, 3, generator=generator)  # log-weights of real images

    def mistakes(log_weights: torch.Tensor) -> dict[str, torch.Tensor]:
        samples, images = log_weights.shape
        logsumexp = torch.logsumexp(log_weights, dim=0)
        over_images = torch.logsumexp(log_weights, dim=1)
        return {
            _(
                "that is the average ELBO, the mean of the log-weights: the IWAE bound averages "
                "the *weights* exp(log_weights), in log space"
            ): log_weights.mean(0),
            _(
                "exp(-300) underflows to 0 in float32 and log 0 = -inf: compute log mean exp with "
                "torch.logsumexp(log_weights, dim=0) - log K"
            ): log_weights.exp().mean(0).log(),
            _("subtract log K: log (1/K) sum_k w_k = logsumexp - log K"): logsumexp,
            _("subtract log K (you added it): log (1/K) sum_k w_k = logsumexp - log K"): logsumexp
            + math.log(samples),
            _("reduce over dim 0, the K samples, to get one bound per image (B,)"): [
                over_images - math.log(samples),
                over_images - math.log(images),
            ],
        }

    cases = [
        Case(
            _("K = 5 samples for 4 images"),
            (small,),
            torch.logsumexp(small, 0) - math.log(5),
            mistakes=mistakes(small),
        ),
        Case(
            _("log-weights around -300 (as for real images)"),
            (realistic,),
            torch.logsumexp(realistic, 0) - math.log(50),
            hint=_(
                "exp(-300) underflows to 0 in float32: use torch.logsumexp(log_weights, dim=0) "
                "- log K"
            ),
            mistakes=mistakes(realistic),
        ),
    ]
    hint = _("average the weights (not the log-weights) over the K samples, in log space")
    return run_check("iwae_bound", function, cases, hint, strict, IWAE)


# --- inputs drawn per call ------------------------------------------------------------------------


def _seeded_sample(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """The reference under the seed the check sets around the learner's function."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)


def _draw_mean_logvar(generator: torch.Generator) -> tuple[str, tuple, dict]:
    shape = draw_shape(generator, 1, 3)
    mean, logvar = randn(generator, *shape), randn(generator, *shape)
    return _("mean and logvar of shape {shape}").format(shape=shape), (mean, logvar), {}


def _draw_elbo_inputs(generator: torch.Generator) -> tuple[str, tuple, dict]:
    dtype, batch, latent = (
        draw_dtype(generator),
        draw_int(generator, 1, 4),
        draw_int(generator, 1, 6),
    )
    scale = draw_choice(generator, (1.0, 5.0, 60.0))
    logits = scale * randn(generator, batch, 1, 28, 28, dtype=dtype)
    x = torch.rand(batch, 1, 28, 28, generator=generator, dtype=torch.float64).to(dtype)
    if draw_choice(generator, (True, False)):
        x = x.round()  # binarised images, as in training
    mean, logvar = (
        randn(generator, batch, latent, dtype=dtype),
        randn(generator, batch, latent, dtype=dtype),
    )
    description = _("{batch} images, {latent} latents, logits at scale {scale}, {dtype}").format(
        batch=batch, latent=latent, scale=f"{scale:g}", dtype=dtype
    )
    return description, (logits, x, mean, logvar), {}


def _negative_elbo_reference(logits, x, mean, logvar) -> torch.Tensor:
    reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    return reconstruction.flatten(1).sum(1) + kl_standard_normal(mean, logvar)


def _draw_log_weights(generator: torch.Generator) -> tuple[str, tuple, dict]:
    dtype, samples, images = (
        draw_dtype(generator),
        draw_int(generator, 1, 60),
        draw_int(generator, 1, 5),
    )
    offset, spread = (
        draw_choice(generator, (0.0, -300.0, -3000.0)),
        draw_choice(generator, (0.1, 5.0)),
    )
    log_weights = offset + spread * randn(generator, samples, images, dtype=dtype)
    description = _("K = {samples}, B = {images}, log-weights near {offset}, {dtype}").format(
        samples=samples, images=images, offset=f"{offset:g}", dtype=dtype
    )
    return description, (log_weights,), {}


def _iwae_reference(log_weights: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(log_weights, dim=0) - math.log(log_weights.shape[0])


REPARAMETERISE = Draws(_draw_mean_logvar, _seeded_sample, gradients=True)
NEGATIVE_ELBO = Draws(_draw_elbo_inputs, _negative_elbo_reference, gradients=True)
IWAE = Draws(_draw_log_weights, _iwae_reference, gradients=True)
reparameterise.draws = REPARAMETERISE
negative_elbo.draws = NEGATIVE_ELBO
iwae_bound.draws = IWAE
