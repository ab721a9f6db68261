"""GAN losses on D's logits. The sigmoid is applied here, in its numerically stable form.

- ``bce``: D minimises BCE(real, 1) + BCE(fake, 0); G minimises BCE(fake, 1) (non-saturating).
- ``bce_saturating``: G minimises log(1 - D(G(z))), the original minimax objective.
- ``clamped_log``: S3's form: -log with the probability clamped at 1e-5 (so it saturates, never NaNs).

``real_target`` < 1 is one-sided label smoothing (S5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CLAMP = 1e-5


def _clamped_bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    p = torch.sigmoid(logits)
    loss = -target * torch.log(p.clamp_min(CLAMP))
    if target < 1:
        loss = loss - (1 - target) * torch.log((1 - p).clamp_min(CLAMP))
    return loss.mean()


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def discriminator_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor,
                       real_target: float = 1.0) -> torch.Tensor:
    if kind == "clamped_log":
        return _clamped_bce(real_logits, real_target) + _clamped_bce(fake_logits, 0.0)
    return _bce(real_logits, real_target) + _bce(fake_logits, 0.0)


def generator_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    if kind == "bce":
        return _bce(fake_logits, 1.0)
    if kind == "bce_saturating":
        return -F.softplus(fake_logits).mean()  # log(1 - sigmoid(l)) = -softplus(l)
    if kind == "clamped_log":
        return _clamped_bce(fake_logits, 1.0)
    raise ValueError(f"unknown loss '{kind}'")
