"""The optimizers a population can train with, by ``optim.name``: what each needs per member and per
network, so that the cohort holds it as tensors (restacked, moved and checkpointed with the weights)
without knowing which optimizer it runs.

An entry names the ``optim`` keys that may differ between members (each becomes a ``member_<key>``
buffer) and the per-network state buffers (``<optim>_<net>_<part>``), and builds the optimizer over
them. A config whose ``optim.name`` is not here trains alone (``member_settings.unsupported_reason``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ganlab.population.member_rows_optimizer import MemberRowsOptimizer
from ganlab.population.stacked_adam import AdamState, StackedAdam
from ganlab.population.stacked_sgd import StackedSGD
from ganlab.registry import Registry


@dataclass(frozen=True)
class PopulationOptimizer:
    """``settings``: per-member ``optim`` keys; ``state``: a network's state parts and how to make them
    empty for a [K, P] parameter; ``build(param, lr, settings, state)``."""

    settings: tuple[str, ...]
    state: tuple[str, ...]
    zeros: Callable[[torch.Tensor], list[torch.Tensor]]
    build: Callable[[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], list[torch.Tensor]], MemberRowsOptimizer]


def _adam_zeros(param: torch.Tensor) -> list[torch.Tensor]:
    state = AdamState.zeros(param)
    return [state.steps, state.exp_avg, state.exp_avg_sq]


STACKED_OPTIMIZERS: Registry[PopulationOptimizer] = Registry("optim.name")
STACKED_OPTIMIZERS.add("adam", PopulationOptimizer(
    settings=("beta1", "beta2"), state=("steps", "m", "v"), zeros=_adam_zeros,
    build=lambda param, lr, s, state: StackedAdam(param, lr, s["beta1"], s["beta2"], state=AdamState(*state))))
STACKED_OPTIMIZERS.add("sgd", PopulationOptimizer(
    settings=("momentum",), state=("momentum",), zeros=lambda param: [torch.zeros_like(param)],
    build=lambda param, lr, s, state: StackedSGD(param, lr, s["momentum"], buffer=state[0])))
