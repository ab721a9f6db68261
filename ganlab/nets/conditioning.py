"""Class conditioning (S4's conditional GAN): the class, one-hot encoded, is appended to G's noise
and to D's input. Any network family can be made conditional this way, with no change to its layers."""

from __future__ import annotations

import torch
from torch.nn import functional as F


class LabelConditioning:
    """Joins inputs with one-hot labels; with ``classes == 0`` (an unconditional model) it passes
    inputs through unchanged, so the training loop treats every model the same way."""

    def __init__(self, classes: int = 0) -> None:
        self.classes = classes

    def extra_features(self) -> int:
        """How many inputs the one-hot code adds to G and to D."""
        return self.classes

    def join(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if not self.classes:
            return x
        if labels is None:
            raise ValueError(f"this model is conditional on {self.classes} classes: pass one label per sample")
        return torch.cat([x, F.one_hot(labels, self.classes).to(x.dtype)], dim=1)
