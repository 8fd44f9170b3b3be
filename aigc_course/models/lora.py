"""LoRA: low-rank adaptation of a frozen model (Hu et al., 2021), from scratch.

A pretrained linear layer computes ``y = x W^T + b`` with ``W`` of shape ``(out, in)``. Fine-tuning
all of ``W`` trains ``out * in`` numbers per layer. LoRA freezes ``W`` and learns a low-rank change
beside it:

    y = x W^T + b + (alpha / r) * x A^T B^T          A: (r, in),  B: (out, r),  r << min(in, out)

so the layer's weight is, in effect, ``W + (alpha / r) B A``: ``r * (in + out)`` trainable numbers
instead of ``in * out``. ``B`` starts at zero, so before the first step the adapted model *is* the
pretrained one, exactly; ``A`` starts random (as an ``nn.Linear`` weight), so the first gradient of
``B`` is not zero. The factor ``alpha / r`` keeps the update's size comparable across ranks: choose
``alpha`` once, then change ``r`` without retuning the learning rate.

After training, :meth:`LoRALinear.merge` adds ``(alpha / r) B A`` into ``W``: the adapted model
then costs nothing extra to run; :meth:`LoRALinear.unmerge` takes it out again.

:func:`add_lora` wraps chosen linear layers of a :class:`~aigc_course.models.gpt.GPT` (the attention
projections, the MLP, or both) and freezes every other parameter.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn

from aigc_course.errors import SettingError
from aigc_course.i18n import _

Targets = Literal["attention", "mlp", "both"]

#: The linear layers of a GPT block that each choice of targets adapts (names inside a block).
TARGET_LAYERS: dict[str, tuple[str, ...]] = {
    "attention": ("attn.qkv", "attn.proj"),
    "mlp": ("mlp.fc", "mlp.proj"),
    "both": ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj"),
}


@dataclass(frozen=True)
class LoRAConfig:
    rank: int = 4  # r
    alpha: float = 4.0  # the update is scaled by alpha / r
    targets: Targets = "attention"

    def __post_init__(self) -> None:
        if not isinstance(self.rank, int) or self.rank < 1:
            raise SettingError(
                _("the LoRA rank must be a whole number of at least 1, got {rank}").format(
                    rank=repr(self.rank)
                )
            )
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            raise SettingError(
                _("LoRA's alpha must be a positive number, got {alpha}").format(
                    alpha=repr(self.alpha)
                )
            )
        if self.targets not in TARGET_LAYERS:
            raise SettingError(
                _("LoRA targets must be one of {choices}, got {targets}").format(
                    choices=", ".join(TARGET_LAYERS), targets=repr(self.targets)
                )
            )

    def to_dict(self) -> dict:
        return asdict(self)


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` with a trainable low-rank update beside it: ``(B, T, in) -> (B, T, out)``."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        if rank > min(base.in_features, base.out_features):
            raise SettingError(
                _(
                    "rank {rank} is more than the layer's smaller side "
                    "({inputs} -> {outputs}): not a low-rank update"
                ).format(rank=rank, inputs=base.in_features, outputs=base.out_features)
            )
        self.base = base
        for parameter in base.parameters():
            parameter.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear initialises a weight
        self.scale = alpha / rank
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """The update to the frozen weight, ``(alpha / r) B A``: ``(out, in)``."""
        return self.scale * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.merged:
            return y
        # x A^T B^T: through the rank-r bottleneck, never forming the (out, in) matrix.
        return y + self.scale * ((x @ self.lora_A.T) @ self.lora_B.T)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the frozen weight (``W <- W + (alpha / r) B A``)."""
        if not self.merged:
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update out of the weight again (``W <- W - (alpha / r) B A``)."""
        if self.merged:
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
            self.merged = False

    def extra_repr(self) -> str:
        return f"rank={self.lora_A.shape[0]}, scale={self.scale:g}, merged={self.merged}"


def add_lora(model: nn.Module, config: LoRAConfig) -> list[str]:
    """Freeze every parameter of ``model`` (a GPT) and wrap the ``config.targets`` linear layers of each
    of its blocks in :class:`LoRALinear`, in place. Returns the wrapped layers' names."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    wrapped = []
    for index, block in enumerate(model.blocks):
        for name in TARGET_LAYERS[config.targets]:
            parent_name, child_name = name.split(".")
            parent = getattr(block, parent_name)
            layer = getattr(parent, child_name)
            if isinstance(layer, LoRALinear):
                raise SettingError(
                    _("{layer} already has a LoRA adapter").format(layer=f"blocks.{index}.{name}")
                )
            setattr(parent, child_name, LoRALinear(layer, config.rank, config.alpha))
            wrapped.append(f"blocks.{index}.{name}")
    return wrapped


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    """The model's LoRA layers, in order."""
    return [module for module in model.modules() if isinstance(module, LoRALinear)]


def merge_lora(model: nn.Module) -> None:
    """Merge every adapter into its frozen weight (see :meth:`LoRALinear.merge`)."""
    for layer in lora_layers(model):
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    """Take every adapter out of its weight again."""
    for layer in lora_layers(model):
        layer.unmerge()


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapters' tensors (``...lora_A`` and ``...lora_B``): what a LoRA checkpoint saves."""
    return {name: tensor for name, tensor in model.state_dict().items() if ".lora_" in name}


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters, each shared tensor (a tied weight) counted once."""
    parameters = list(model.parameters())  # yields a shared tensor once
    trainable = sum(p.numel() for p in parameters if p.requires_grad)
    return trainable, sum(p.numel() for p in parameters)
