"""LoRA from scratch (aigc_course.models.lora): the adapted model starts as the base model, merging
changes nothing but speed, and only the adapters learn."""

from __future__ import annotations

import copy

import pytest
import torch

from aigc_course.errors import SettingError
from aigc_course.models.gpt import GPT, GPTConfig
from aigc_course.models.lora import (
    LoRAConfig,
    LoRALinear,
    adapter_state_dict,
    add_lora,
    lora_layers,
    merge_lora,
    parameter_counts,
    unmerge_lora,
)

CONFIG = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.0)


def tokens(seed: int = 0) -> torch.Tensor:
    return torch.randint(
        0, CONFIG.vocab_size, (3, 8), generator=torch.Generator().manual_seed(seed)
    )


def base_and_adapted(targets: str = "both", rank: int = 2) -> tuple[GPT, GPT]:
    torch.manual_seed(0)
    base = GPT(CONFIG).eval()
    adapted = copy.deepcopy(base)
    add_lora(adapted, LoRAConfig(rank=rank, alpha=4.0, targets=targets))
    return base, adapted.eval()


def randomise_adapters(model: GPT) -> None:
    """Give every B a non-zero value, as training would."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=generator) * 0.1)


@pytest.mark.parametrize("targets", ["attention", "mlp", "both"])
def test_the_adapted_model_starts_exactly_at_the_base_model(targets):
    base, adapted = base_and_adapted(targets)
    with torch.no_grad():
        torch.testing.assert_close(adapted(tokens())[0], base(tokens())[0], rtol=0, atol=0)
    assert all(layer.lora_A.abs().sum() > 0 for layer in lora_layers(adapted)), "A is random"


def test_merged_equals_unmerged_and_unmerging_restores_the_base_weights():
    base, adapted = base_and_adapted()
    randomise_adapters(adapted)
    with torch.no_grad():
        unmerged = adapted(tokens())[0]
        assert not torch.allclose(unmerged, base(tokens())[0]), "the adapters change the output"
        merge_lora(adapted)
        assert all(layer.merged for layer in lora_layers(adapted))
        torch.testing.assert_close(adapted(tokens())[0], unmerged, rtol=1e-5, atol=1e-5)
        merge_lora(adapted)  # merging twice must not add the update twice
        torch.testing.assert_close(adapted(tokens())[0], unmerged, rtol=1e-5, atol=1e-5)
        unmerge_lora(adapted)
    layer = adapted.blocks[0].attn.qkv
    torch.testing.assert_close(layer.base.weight, base.blocks[0].attn.qkv.weight)


def test_the_update_is_b_times_a_scaled_by_alpha_over_r():
    linear = torch.nn.Linear(6, 5)
    layer = LoRALinear(linear, rank=2, alpha=3.0)
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(4, 6)
    by_hand = x @ (linear.weight + 1.5 * layer.lora_B @ layer.lora_A).T + linear.bias
    torch.testing.assert_close(layer(x), by_hand)


def test_only_the_adapters_receive_gradients():
    _, adapted = base_and_adapted("attention")
    adapted.train()
    _, loss = adapted(tokens(), tokens(1))
    loss.backward()
    for name, parameter in adapted.named_parameters():
        if ".lora_" in name:
            assert parameter.requires_grad
            if name.endswith(
                "lora_B"
            ):  # B = 0 at the start, so A's gradient is 0 there: B's is not
                assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
        else:
            assert not parameter.requires_grad and parameter.grad is None, name


def test_parameter_counts_and_the_adapter_state():
    base, adapted = base_and_adapted("both", rank=2)
    trainable, total = parameter_counts(adapted)
    c, layers = CONFIG.n_embd, CONFIG.n_layer
    per_block = 2 * (c + 3 * c) + 2 * (c + c) + 2 * (c + 4 * c) + 2 * (4 * c + c)  # r (in + out)
    assert trainable == layers * per_block
    assert total == parameter_counts(base)[1] + trainable
    state = adapter_state_dict(adapted)
    assert len(state) == 2 * 4 * layers and all(".lora_" in name for name in state)
    assert sum(t.numel() for t in state.values()) == trainable


def test_bad_settings_are_refused_with_what_to_do():
    with pytest.raises(SettingError, match="rank must be a whole number"):
        LoRAConfig(rank=0)
    with pytest.raises(SettingError, match="alpha must be a positive number"):
        LoRAConfig(alpha=float("nan"))
    with pytest.raises(SettingError, match="targets must be one of attention, mlp, both"):
        LoRAConfig(targets="everything")
    with pytest.raises(SettingError, match="not a low-rank update"):
        LoRALinear(torch.nn.Linear(4, 3), rank=4, alpha=1.0)
    _, adapted = base_and_adapted("mlp")
    with pytest.raises(SettingError, match="already has a LoRA adapter"):
        add_lora(adapted, LoRAConfig(targets="mlp"))
