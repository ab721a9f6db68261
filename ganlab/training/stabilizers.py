"""Optional stabilisers any experiment can switch on (EMA of G's weights, the R1 penalty), and what a
run whose loss blew up should lower (the learning rates, and R1 when it is on)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def ema_generator(generator: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of G (torch's AveragedModel), used for evaluation.

    The decay warms up as min(decay, (1 + n) / (10 + n)) so early evaluations are not dominated by
    the random initial weights. Buffers are averaged too (BatchNorm's running statistics, S2's G),
    except integer counters, which are copied.
    """

    def average(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged) -> None:
        n = float(num_averaged)
        beta = min(decay, (1.0 + n) / (10.0 + n))
        floats = [(a, c) for a, c in zip(averaged, current, strict=True) if a.is_floating_point()]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], 1.0 - beta)  # in place, at once
        for a, c in zip(averaged, current, strict=True):  # counters (BatchNorm's num_batches_tracked) are copied
            if not a.is_floating_point():
                a.copy_(c)

    return AveragedModel(generator, multi_avg_fn=average, use_buffers=True)


def r1_penalty(discriminate: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
               gamma: float | torch.Tensor, input_std: torch.Tensor | None = None) -> torch.Tensor:
    """gamma / 2 * E[||grad_x D(x)||^2] on real data (Mescheder et al. 2018), per D output.

    ``discriminate`` maps samples to logits (a conditional D gets its labels inside it), so the
    gradient is taken with respect to the samples only, never the one-hot class. ``input_std``: what
    D divides its input by (``model.standardize``), broadcastable to ``real``; the gradient is then
    taken in D's standard units, so one gamma means the same at any scale of the data.
    ``real`` is [n, dim], or [K, n, dim] for K stacked members (populations): the mean then runs
    over each member's own batch, ``gamma`` is one per member and the result is [K].
    """
    real = real.detach().requires_grad_(True)
    logits = discriminate(real)
    (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
    if input_std is not None:
        grad = grad * input_std
    return 0.5 * gamma * grad.pow(2).sum(dim=(-2, -1)) / logits.shape[-2]


def non_finite_reason(iteration: int, d_loss: float, g_loss: float, r1_gamma: float) -> str:
    """Why a run (or a population member) stopped when its loss turned NaN/inf, and what to try:
    the learning rates first; with R1 on, its weight too (an R1 of 1 under SGD's 1e-2 blows D up
    within three iterations on the picture targets, whose D reads Fourier features)."""
    advice = "try a smaller learning rate" + (f" or train.r1_gamma (now {r1_gamma:g})" if r1_gamma > 0 else "")
    return f"loss became non-finite at iteration {iteration} (D {d_loss}, G {g_loss}); {advice}"
