"""Minibatch discrimination (Salimans et al. 2016), the layer behind S3's `--minibatch` model.

Lets a per-sample discriminator see how close each sample is to the rest of its batch, so a
generator that collapses to one point is easy to spot.
"""

from __future__ import annotations

import torch
from torch import nn


class MinibatchDiscrimination(nn.Module):
    """features (B, A) -> concat(features, o) with o_bk = sum_j exp(-||M_bk - M_jk||_1), (B, A + K).

    M = features @ T reshaped to (B, kernels, kernel_dim). The sum runs over every sample of the
    batch, the sample itself included (it adds exp(0) = 1 to every entry, as in S3).
    """

    def __init__(self, in_features: int, kernels: int, kernel_dim: int, init_std: float = 0.02) -> None:
        super().__init__()
        self.kernels, self.kernel_dim = kernels, kernel_dim
        self.T = nn.Parameter(torch.randn(in_features, kernels * kernel_dim) * init_std)

    @property
    def out_extra(self) -> int:
        return self.kernels

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        m = (features @ self.T).view(-1, self.kernels, self.kernel_dim)
        l1 = (m.unsqueeze(0) - m.unsqueeze(1)).abs().sum(dim=3)  # (B, B, K)
        closeness = torch.exp(-l1).sum(dim=0)  # (B, K)
        return torch.cat([features, closeness], dim=1)
