"""The sampler and pruner registries of a sweep definition (``sampler: {name: ...}``, ``pruner: ...``).

Each entry turns the definition's arguments into an Optuna object, with ganlab's defaults spelled out
(Optuna 5 changed TPE's). Definitions are checked against these names; the study builds from them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna

from ganlab.registry import Registry

SAMPLERS: Registry[Callable[..., optuna.samplers.BaseSampler]] = Registry("sampler.name")
SAMPLERS.add("tpe", lambda **a: optuna.samplers.TPESampler(
    **{"seed": 0, "n_startup_trials": 5, "multivariate": True, "constant_liar": True, **a}))
SAMPLERS.add("random", lambda **a: optuna.samplers.RandomSampler(**{"seed": 0, **a}))
SAMPLERS.add("cmaes", lambda **a: optuna.samplers.CmaEsSampler(**{"seed": 0, **a}))
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


def finished_trials_to_compare(spec: dict[str, Any]) -> int:
    """How many trials must be COMPLETE before the pruner prunes anything: the median pruner compares a
    trial only with completed ones (``n_startup_trials`` of them); successive halving and Hyperband
    compare trials at the same rung, running ones included, so they need none."""
    if spec["name"] != "median":
        return 0
    return int(spec.get("n_startup_trials", MEDIAN_DEFAULTS["n_startup_trials"]))
