"""GAN losses on D's logits (config key ``train.loss``) and their registry. The sigmoid is applied here,
in its numerically stable form.

- ``bce``: D minimises BCE(real, 1) + BCE(fake, 0); G minimises BCE(fake, 1) (non-saturating).
- ``bce_saturating``: G minimises log(1 - D(G(z))), the original minimax objective.
- ``clamped_log``: S3's form: -log with the probability clamped at 1e-5 (so it saturates, never NaNs).

``real_target`` < 1 is one-sided label smoothing (S5).

Logits are ``[n, 1]`` (one run: the loss is a scalar) or ``[K, n, 1]`` (a population: one loss per
member, and ``real_target`` a float or a ``[K, 1, 1]`` tensor). Each loss averages over the last two
dimensions, so a member's loss never mixes with another's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ganlab.registry import Registry

CLAMP = 1e-5


def _mean(values: torch.Tensor) -> torch.Tensor:
    return values.mean(dim=(-2, -1))


def _clamped_bce(logits: torch.Tensor, target: float | torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    loss = -target * torch.log(p.clamp_min(CLAMP))
    if not isinstance(target, float) or target < 1:
        loss = loss - (1 - target) * torch.log((1 - p).clamp_min(CLAMP))
    return _mean(loss)


def _bce(logits: torch.Tensor, target: float | torch.Tensor) -> torch.Tensor:
    targets = torch.full_like(logits, target) if isinstance(target, float) else target.expand_as(logits)
    if logits.dim() == 2:  # one run: torch's fused mean, the same numbers as before populations existed
        return F.binary_cross_entropy_with_logits(logits, targets)
    return _mean(F.binary_cross_entropy_with_logits(logits, targets, reduction="none"))


@dataclass(frozen=True)
class Loss:
    """D's loss on (real logits, fake logits, real target) and G's loss on fake logits."""

    discriminator: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
    generator: Callable[[torch.Tensor], torch.Tensor]


def _bce_d(real: torch.Tensor, fake: torch.Tensor, real_target: float) -> torch.Tensor:
    return _bce(real, real_target) + _bce(fake, 0.0)


LOSSES: Registry[Loss] = Registry("train.loss")
LOSSES.add("bce", Loss(_bce_d, lambda fake: _bce(fake, 1.0)))
# log(1 - sigmoid(l)) = -softplus(l)
LOSSES.add("bce_saturating", Loss(_bce_d, lambda fake: -_mean(F.softplus(fake))))
LOSSES.add("clamped_log", Loss(lambda real, fake, t: _clamped_bce(real, t) + _clamped_bce(fake, 0.0),
                               lambda fake: _clamped_bce(fake, 1.0)))


def discriminator_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor,
                       real_target: float = 1.0) -> torch.Tensor:
    return LOSSES[kind].discriminator(real_logits, fake_logits, real_target)


def generator_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    return LOSSES[kind].generator(fake_logits)
