"""Minibatch discrimination (Salimans et al. 2016), the layer behind S3's `--minibatch` model.

Lets a per-sample discriminator see how close each sample is to the rest of its batch, so a
generator that collapses to one point is easy to spot.
"""

from __future__ import annotations

import torch
from torch import nn

# A minibatch D's mean output (d_real, d_fake) is taken over about this many of the evaluation points,
# in whole training batches: the layer compares every pair in a batch, and over all 20,000 points the two
# means took 17 % of a model=minibatch run (2026-12-07). Their spread over 4,096 points is ~0.001.
EVAL_SAMPLES_JUDGED = 4096


def rows_judged_at_evaluation(n: int, batch: int) -> int:
    """How many of n evaluation points a minibatch D judges: whole batches, at most about
    ``EVAL_SAMPLES_JUDGED`` (at least one batch where n holds one)."""
    return min(n, max(EVAL_SAMPLES_JUDGED, batch)) // batch * batch


class MinibatchDiscrimination(nn.Module):
    """features (B, A) -> concat(features, o) with o_bk = sum_j exp(-||M_bk - M_jk||_1), (B, A + K).

    M = features @ T reshaped to (B, kernels, kernel_dim). The sum runs over every sample of the
    batch, the sample itself included (it adds exp(0) = 1 to every entry, as in S3).
    """

    # population training (ganlab.population.stacked_nets) lends T as [K, in, kernels * kernel_dim], one
    # per member, with features [K, ..., in]
    takes_member_weights = True

    def __init__(self, in_features: int, kernels: int, kernel_dim: int, init_std: float = 0.02,
                 twice_differentiable: bool = False) -> None:
        """``twice_differentiable``: for a gradient penalty (``train.r1_gamma``), which differentiates D's
        input gradient again; torch has no second derivative of ``cdist``, so the distances are then
        taken by broadcasting (C times the memory)."""
        super().__init__()
        self.kernels, self.kernel_dim = kernels, kernel_dim
        self.twice_differentiable = twice_differentiable
        self.T = nn.Parameter(torch.randn(in_features, kernels * kernel_dim) * init_std)

    @property
    def out_extra(self) -> int:
        return self.kernels

    def _project(self, features: torch.Tensor) -> torch.Tensor:
        if self.T.dim() == 3:  # K members' T: features [K, ..., in], each member's rows by its own T
            m = torch.bmm(features.flatten(1, -2), self.T).view(*features.shape[:-1], -1)
        else:
            m = features @ self.T
        return m.unflatten(-1, (self.kernels, self.kernel_dim))

    def against(self, features: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Each row of ``features`` as if it were in one batch with the rows of ``context``
        (for drawing D's output over x without the grid points judging each other)."""
        closeness = 1.0 + _summed_closeness(self._project(features), self._project(context),
                                           self.twice_differentiable)
        return torch.cat([features, closeness], dim=-1)  # the 1.0: exp(0) for the sample itself

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, A) -> (B, A + K); a leading dimension (G, B, A) holds G independent batches."""
        m = self._project(features)  # (..., B, K, C)
        return torch.cat([features, _summed_closeness(m, m, self.twice_differentiable)], dim=-1)


def _summed_closeness(rows: torch.Tensor, context: torch.Tensor, twice_differentiable: bool = False) -> torch.Tensor:
    """(..., B, K, C) rows and (..., N, K, C) context -> (..., B, K): sum_j exp(-||rows_bk - context_jk||_1).

    One ``torch.cdist(p=1)`` per kernel instead of materialising the (B, N, K, C) differences: about
    C times less memory, and several times faster at batch 1,024 (``benchmarks/minibatch_layer.py``).
    ``twice_differentiable`` materialises them, for a gradient penalty (cdist has no second derivative)."""
    rows, context = rows.transpose(-2, -3), context.transpose(-2, -3)  # (..., K, B, C), (..., K, N, C)
    if twice_differentiable and torch.is_grad_enabled():  # (evaluation needs no derivative: cdist's values)
        l1 = (rows.unsqueeze(-2) - context.unsqueeze(-3)).abs().sum(dim=-1)  # (..., K, B, N)
    else:
        l1 = torch.cdist(rows, context, p=1.0)  # (..., K, B, N)
    return torch.exp(-l1).sum(dim=-1).transpose(-1, -2)
