"""Fixed affine layers between the data's units and standard units (``model.standardize``).

G's last layer and D's first are linear, so a target far from the origin or much wider or narrower
than 1 (N(100, 10^2), a mixture spread over [-50, 50]) must be reached by growing weights step by
step: Adam moves each weight by about the learning rate a step, so G's bias crawls to 100 and the run
ends far off (the default recipe on N(100, 10^2): KS 0.64 after its 4,000 iterations). With these
layers G and D work in standard units (the target's mean 0 and std 1 per coordinate) whatever the
data's scale: G's output is mapped to data units, and D's input back, by the target's own mean and
std. Nothing outside the networks changes: samples, metrics, plots and the saved generator are in
the data's units.

The mean and std are buffers (saved with the weights, never trained). They apply per coordinate;
the leading dimensions of the input broadcast, including a population's members when the buffers
hold one row per member (``population/stacked_nets.py`` stacks every buffer).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class _Units(nn.Module):
    def __init__(self, mean: Sequence, std: Sequence) -> None:
        """Per coordinate ([dim]), or one row per member ([K, dim])."""
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def _rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) shaped to broadcast over the samples: [1, dim], or [K, 1, dim] for K members."""
        return self.mean.unsqueeze(-2), self.std.unsqueeze(-2)


class ToDataUnits(_Units):
    """G's output layer: standard units -> the data's, x * std + mean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._rows()
        return torch.addcmul(mean, x, std)


class ToStandardUnits(_Units):
    """D's input layer: the data's units -> standard, (x - mean) / std."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._rows()
        return (x - mean) / std
