"""Random Fourier features (Tancik et al. 2020) for D's input points: x -> [x, sin(2 pi x B), cos(2 pi x B)].

An MLP on raw 2D coordinates can only draw smooth functions, so it cannot tell a thin line or a
letter from a blur around it; the sines of random projections let it draw sharp edges. B is fixed
(a buffer, saved with the weights), drawn N(0, scale^2) per entry.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class FourierFeatures(nn.Module):
    """(..., dim) -> (..., dim + 2 * features)."""

    def __init__(self, dim: int, features: int, scale: float) -> None:
        super().__init__()
        self.dim, self.features = dim, features
        self.register_buffer("projection", torch.randn(dim, features) * (2.0 * math.pi * scale))

    def out_features(self) -> int:
        return self.dim + 2 * self.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        angles = x @ self.projection
        return torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=-1)
