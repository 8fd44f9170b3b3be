"""The course's Fashion-MNIST classifier: the feature space of the course's FID (lessons 07, 10, 11).

    image (B, 1, 28, 28) -> conv 3x3, 32 -> ReLU -> max-pool 2     (B, 32, 14, 14)
                         -> conv 3x3, 64 -> ReLU -> max-pool 2     (B, 64, 7, 7)
                         -> flatten -> linear 128 -> ReLU           (B, 128): the FID features
                         -> dropout -> linear 10                    (B, 10): class logits

Papers compute FID with Inception-v3 features of ImageNet photographs; garments on 28 x 28 pixels
are better described by a small network trained on them. :mod:`aigc_course.metrics` computes the
measures from its features; :mod:`aigc_course.trainers.classifier` trains it (about 92% test
accuracy) and loads the pretrained weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ClassifierConfig:
    features: int = 128  # the width of the FID feature space
    dropout: float = 0.3
    n_classes: int = 10

    def to_dict(self) -> dict:
        return asdict(self)


class FashionClassifier(nn.Module):
    """Two conv layers and a hidden layer whose activations are the FID features."""

    def __init__(self, config: ClassifierConfig = ClassifierConfig()) -> None:
        super().__init__()
        self.config = config
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 7, 7)
            nn.Flatten(), nn.Linear(64 * 7 * 7, config.features), nn.ReLU(),  # (B, 128)
        )  # fmt: skip
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.features, config.n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 1, 28, 28)`` in [0, 1] -> features ``(B, 128)``."""
        return self.body(x)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Features ``(B, 128)`` -> class logits ``(B, 10)``."""
        return self.head(self.dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 1, 28, 28)`` in [0, 1] -> class logits ``(B, 10)``."""
        return self.logits(self.features(x))
