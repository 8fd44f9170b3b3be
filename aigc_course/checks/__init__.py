"""Automatic feedback for the exercises: ``from aigc_course import checks as check``.

Each check runs the learner's function on known cases (the edge cases listed in its docstring: ties,
empty sets, extreme values, the first and last index, ...) and then on inputs it draws per call from a
seeded generator (other sizes, shapes, numbers of dimensions, parameter values, float32 and float64),
compares the values *and the gradients* with a reference implementation, with one dtype-aware tolerance
(``_core.tolerance``: a float32 answer gets float32's), and prints one clear verdict:

- ``✅ name: passed (4 cases)``
- ``⏳ name: not implemented yet ...`` while the exercise still raises ``NotImplementedError``
- ``❌ name: ...`` saying what is wrong (not a tensor, wrong shape, wrong value with expected vs got,
  an exception, an input changed in place), followed by a hint.

When an answer fails, the verdict names the nearest known mistake where one matches, else the property
that failed (value, gradient, input changed in place) and the input it failed on. A check never ends in a
traceback, and returns ``True`` only when every case passed. ``tests/test_check_mutants.py`` mutates every
reference solution mechanically and requires each mutant that changes the answer to be rejected;
``tests/test_check_correct_answers.py`` requires differently written right answers to pass. With
``AIGC_CHECKS_STRICT=1`` (the test suite sets it) or ``strict=True`` a wrong answer also raises
:class:`CheckFailed` after printing, so that a broken *solution* notebook fails its test;
"not implemented yet" never raises. The checks of each lesson live in ``lessonNN.py``.
"""

from aigc_course.checks._core import Case, CheckFailed, compare_tensor, run_check
from aigc_course.checks.lesson00 import stable_softmax
from aigc_course.checks.lesson01 import entropy, kl_categorical, kl_gaussians, monte_carlo_kl
from aigc_course.checks.lesson02 import (
    average_nll,
    bigram_counts,
    bigram_probabilities,
    gaussian_mle,
)
from aigc_course.checks.lesson03 import (
    discriminator_loss,
    generator_loss_non_saturating,
    jensen_shannon,
    optimal_discriminator,
)
from aigc_course.checks.lesson04 import (
    causal_mask,
    merge_heads,
    scaled_dot_product_attention,
    split_heads,
)
from aigc_course.checks.lesson05 import (
    gaussian_elbo,
    kl_to_standard_normal,
    reparameterised_sample,
    score_function_estimate,
)
from aigc_course.checks.lesson06 import (
    encoder_decoder_shapes,
    iwae_bound,
    negative_elbo,
    reparameterise,
)
from aigc_course.checks.lesson07 import frechet_distance, gan_training_step
from aigc_course.checks.lesson08 import (
    causal_self_attention,
    kv_cache_update,
    residual_block,
    top_k_top_p,
    training_step,
)
from aigc_course.checks.lesson09 import (
    continuation_loss,
    freeze_all_but_adapters,
    lora_linear,
    merge_adapter,
)
from aigc_course.checks.lesson10 import ddim_step, ddpm_step, q_sample, training_loss
from aigc_course.checks.lesson11 import (
    bits_per_dim,
    longest_verbatim_substring,
    perplexity,
    precision_recall,
)
from aigc_course.checks.lesson12 import exposure, filter_precision_recall, watermark_z

__all__ = [
    # the machinery
    "Case",
    "CheckFailed",
    "compare_tensor",
    "run_check",
    # lesson 00
    "stable_softmax",
    # lesson 01
    "entropy",
    "kl_categorical",
    "kl_gaussians",
    "monte_carlo_kl",
    # lesson 02
    "average_nll",
    "bigram_counts",
    "bigram_probabilities",
    "gaussian_mle",
    # lesson 03
    "discriminator_loss",
    "generator_loss_non_saturating",
    "jensen_shannon",
    "optimal_discriminator",
    # lesson 04
    "causal_mask",
    "merge_heads",
    "scaled_dot_product_attention",
    "split_heads",
    # lesson 05
    "gaussian_elbo",
    "kl_to_standard_normal",
    "reparameterised_sample",
    "score_function_estimate",
    # lesson 06
    "encoder_decoder_shapes",
    "iwae_bound",
    "negative_elbo",
    "reparameterise",
    # lesson 07 (and lesson 03's GAN losses)
    "frechet_distance",
    "gan_training_step",
    # lesson 08
    "causal_self_attention",
    "kv_cache_update",
    "residual_block",
    "top_k_top_p",
    "training_step",
    # lesson 09
    "continuation_loss",
    "freeze_all_but_adapters",
    "lora_linear",
    "merge_adapter",
    # lesson 10
    "ddim_step",
    "ddpm_step",
    "q_sample",
    "training_loss",
    # lesson 11
    "bits_per_dim",
    "longest_verbatim_substring",
    "perplexity",
    "precision_recall",
    # lesson 12
    "exposure",
    "filter_precision_recall",
    "watermark_z",
]
