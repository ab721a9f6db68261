"""The sampler and pruner registries of a sweep definition (``sampler: {name: ...}``, ``pruner: ...``).

Each entry turns the definition's arguments into an Optuna object, with ganlab's defaults spelled out
(Optuna 5 changed TPE's). Definitions are checked against these names; the study builds from them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import optuna

from ganlab.registry import Registry

SAMPLERS: Registry[Callable[..., optuna.samplers.BaseSampler]] = Registry("sampler.name")
SAMPLERS.add("tpe", lambda **a: optuna.samplers.TPESampler(
    **{"seed": 0, "n_startup_trials": 5, "multivariate": True, "constant_liar": True, **a}))
SAMPLERS.add("random", lambda **a: optuna.samplers.RandomSampler(**{"seed": 0, **a}))
# CMA-ES searches numbers only: a categorical parameter is drawn at random, which Optuna would say in a
# multi-line warning for every trial; the sweep says it once at its start instead (``sampler_notice``)
SAMPLERS.add("cmaes", lambda **a: optuna.samplers.CmaEsSampler(
    **{"seed": 0, "warn_independent_sampling": False, **a}))
SAMPLERS.add("grid", lambda **a: optuna.samplers.GridSampler(**{"seed": 0, **a}))

# pruners compare trials at equal iteration counts (the reported step is the iteration)
PRUNERS: Registry[Callable[..., optuna.pruners.BasePruner]] = Registry("pruner.name")
MEDIAN_DEFAULTS = {"n_startup_trials": 3, "n_warmup_steps": 0}
PRUNERS.add("median", lambda **a: optuna.pruners.MedianPruner(**{**MEDIAN_DEFAULTS, **a}))
PRUNERS.add("hyperband", lambda **a: optuna.pruners.HyperbandPruner(**a))
PRUNERS.add("successive_halving", lambda **a: optuna.pruners.SuccessiveHalvingPruner(**a))
PRUNERS.add("none", lambda **a: optuna.pruners.NopPruner())


def make_sampler(spec: dict[str, Any]) -> optuna.samplers.BaseSampler:
    return SAMPLERS[spec["name"]](**{k: v for k, v in spec.items() if k != "name"})


def make_pruner(spec: dict[str, Any]) -> optuna.pruners.BasePruner:
    return PRUNERS[spec["name"]](**{k: v for k, v in spec.items() if k != "name"})


def cmaes_default_popsize(numeric_params: int) -> int:
    """The cmaes package's own generation size for this many searched numbers: 4 + floor(3 ln n)."""
    return 4 + math.floor(3 * math.log(max(numeric_params, 1)))


def for_population(spec: dict[str, Any], size: int, numeric_params: int) -> dict[str, Any]:
    """The sampler of a sweep trained ``size`` trials at a time. CMA-ES updates its distribution once a
    generation's ``popsize`` trials have completed and ignores later results of that generation; with
    its default generation (8 trials for 4 numbers) a population of 256 would have most of its results
    ignored. So a generation is the population, unless the definition sets ``popsize``, and never fewer
    trials than the default (the update's weights degenerate below it)."""
    if spec["name"] != "cmaes" or "popsize" in spec:
        return spec
    return {**spec, "popsize": max(size, cmaes_default_popsize(numeric_params))}


def sampler_notice(spec: dict[str, Any], categorical: list[str]) -> str | None:
    """One line for the start of a sweep whose sampler leaves some parameters to chance, else None."""
    if spec["name"] != "cmaes" or not categorical:
        return None
    return (f"sampler cmaes draws {', '.join(categorical)} at random: CMA-ES searches numbers, not "
            "categories (tpe searches both)")


def finished_trials_to_compare(spec: dict[str, Any]) -> int:
    """How many trials must be COMPLETE before the pruner prunes anything: the median pruner compares a
    trial only with completed ones (``n_startup_trials`` of them); successive halving and Hyperband
    compare trials at the same rung, running ones included, so they need none."""
    if spec["name"] != "median":
        return 0
    return int(spec.get("n_startup_trials", MEDIAN_DEFAULTS["n_startup_trials"]))
