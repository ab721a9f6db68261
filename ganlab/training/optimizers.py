"""Optimisers and learning-rate schedules (config group ``optim``), one pair per network, and their registries."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, ExponentialLR, LinearLR, LRScheduler

from ganlab.registry import Registry


@dataclass(frozen=True)
class Optimizer:
    """An ``optim.name``: torch's class, its keyword arguments from the ``optim`` config node, and
    whether a step moves the weights by about the rate whatever the gradient's size (Adam's does; SGD's
    is the rate times the gradient): only then may a short run raise the rate (:func:`short_run_boost`)."""

    cls: type[torch.optim.Optimizer]
    options: Callable[[Any], dict[str, Any]]
    rate_sized_steps: bool


OPTIMIZERS: Registry[Optimizer] = Registry("optim.name")
OPTIMIZERS.add("adam", Optimizer(torch.optim.Adam, lambda c: {"betas": (c.beta1, c.beta2)}, rate_sized_steps=True))
OPTIMIZERS.add("sgd", Optimizer(torch.optim.SGD, lambda c: {"momentum": c.momentum}, rate_sized_steps=False))


@dataclass(frozen=True)
class Schedule:
    """A learning-rate decay: ``make`` builds torch's scheduler for one run (stepped once per
    iteration; None: constant), ``factor`` is its closed form lr(t) / lr(0) for a population, whose
    members each have their own final fraction (a test checks the two agree)."""

    make: Callable[[torch.optim.Optimizer, int, float], LRScheduler] | None
    factor: Callable[[float, int, Any], Any]


def _progress(t, total: int):
    """min(t, total) / total for an iteration count, or for a tensor of per-member counts."""
    return (t.clamp(max=total) if torch.is_tensor(t) else min(t, total)) / total


def _cosine_factor(t, total: int, frac):
    p = _progress(t, total)
    return frac + (1.0 - frac) * (1.0 + (torch.cos(math.pi * p) if torch.is_tensor(p) else math.cos(math.pi * p))) / 2.0


SCHEDULES: Registry[Schedule] = Registry("optim.schedule")
SCHEDULES.add("none", Schedule(None, lambda t, total, frac: 1.0 + 0.0 * frac))
SCHEDULES.add("cosine", Schedule(lambda opt, total, frac: CosineAnnealingLR(opt, T_max=total,
                                                                            eta_min=frac * opt.param_groups[0]["lr"]),
                                 _cosine_factor))
SCHEDULES.add("linear", Schedule(lambda opt, total, frac: LinearLR(opt, start_factor=1.0, end_factor=frac,
                                                                   total_iters=total),
                                 lambda t, total, frac: 1.0 + (frac - 1.0) * _progress(t, total)))
SCHEDULES.add("exponential", Schedule(lambda opt, total, frac: ExponentialLR(opt, gamma=frac ** (1.0 / total)),
                                      lambda t, total, frac: frac ** _progress(t, total)))


def make_optimizer(optim_cfg, params, lr: float) -> torch.optim.Optimizer:
    """The fused kernel when this torch has it (3x faster steps for these small nets), else foreach."""
    params = list(params)
    optimizer = OPTIMIZERS[optim_cfg.name]
    cls, kwargs = optimizer.cls, optimizer.options(optim_cfg)
    try:
        return cls(params, lr=lr, fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return cls(params, lr=lr, foreach=True, **kwargs)


MAX_SHORT_RUN_BOOST = 4.0


def short_run_boost(optim_cfg, iterations: int) -> float:
    """How much both learning rates rise in a run shorter than ``optim.short_run_reference``
    iterations: reference / iterations, at most x4, so the weights can travel about as far in fewer
    steps (Adam's step is about the rate). Measured with the 1D recipe as 16-seed populations (seeds
    100-115, median KS): 500 iterations 0.075 unboosted, 0.096 at x2.8 (the earlier square-root law),
    0.040 at x4 (this law), 0.054 at x5.7; 1,000 iterations 0.021 at x2 (this law), 0.033 at x2.5;
    2,000 iterations 0.015 unboosted, 0.013 at x1.4. The cap (2026-12-06, standard units): uncapped,
    a 20-iteration run got x100 and G collapsed to a point (KS 0.61, 0.35 unboosted, 0.21 at x4); 50
    iterations 0.30 / 0.17 / 0.057 (uncapped / none / x4), 200 0.034 / 0.073 / 0.017; docs/recipes.md.
    1 for longer runs, when the reference is 0 (off: every reproduction, and any run whose rates were
    typed), and for SGD, whose step grows with the gradient (x66 at 30 iterations diverged)."""
    reference = optim_cfg.short_run_reference
    if not OPTIMIZERS[optim_cfg.name].rate_sized_steps:
        return 1.0
    return min(reference / iterations, MAX_SHORT_RUN_BOOST) if 0 < iterations < reference else 1.0


def short_run_note(optim_cfg, iterations: int) -> str:
    """'' or, for the run's first line, how much its learning rates were raised and how to turn it off."""
    boost = short_run_boost(optim_cfg, iterations)
    if boost == 1.0:
        return ""
    return (f"; a short run: learning rates x{boost:.3g}, d_lr {boost * optim_cfg.d_lr:.3g}, g_lr "
            f"{boost * optim_cfg.g_lr:.3g} (optim.short_run_reference={optim_cfg.short_run_reference}; 0: off)")


def make_schedule(optim_cfg, optimizer: torch.optim.Optimizer, iterations: int) -> LRScheduler | None:
    """Decay from lr to final_lr_fraction * lr over the run, stepped once per iteration."""
    make = SCHEDULES[optim_cfg.schedule].make
    return None if make is None else make(optimizer, max(iterations, 1), optim_cfg.final_lr_fraction)


def stretch_schedule(schedule: LRScheduler, optim_cfg, iterations: int) -> None:
    """Re-plan a restored schedule for a new run length (a resumed run that was extended): the
    learning rate becomes what the schedule gives at this step had the run been planned that long."""
    frac, total = optim_cfg.final_lr_fraction, max(iterations, 1)
    if isinstance(schedule, CosineAnnealingLR):
        schedule.T_max = total
    elif isinstance(schedule, LinearLR):
        schedule.total_iters = total
    elif isinstance(schedule, ExponentialLR):
        schedule.gamma = frac ** (1.0 / total)
    lrs = schedule._get_closed_form_lr()
    for group, lr in zip(schedule.optimizer.param_groups, lrs, strict=True):
        group["lr"] = lr
    schedule._last_lr = list(lrs)
