"""Hydra's multirun (``python -m ganlab.train -m key=a,b other=range(0,3)``) run as a ganlab sweep.

Hydra's override grammar (comma lists, ``range()``, ``choice()``, ``glob()`` over a group's options)
is parsed by Hydra's own parser and expanded, as Hydra's basic sweeper does, into the cartesian product
of the swept values. The combinations become trials enqueued in order in an Optuna study, so they run
through the sweep driver: its worker pool, one MLflow parent run with a child run per combination,
the summary table ranked by the data's headline metric, and resume by running the same command again.
With ``train.seeds=N`` each combination trains its N seeds together and is ranked by their median.
"""

from __future__ import annotations

import hashlib
import itertools

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob, Override
from hydra.errors import HydraException
from omegaconf import DictConfig

from ganlab.config.compose import GROUPS, ConfigFamily, compose_config, group_options, hydra_error_message
from ganlab.data.targets import TARGETS
from ganlab.errors import ConfigError
from ganlab.metrics import HEADLINE_BY_FAMILY
from ganlab.sweeping.definition import Objective, Param, SweepDefinition


def split_overrides(overrides: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """The fixed overrides, and each swept key's values as override strings, in the order typed."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise ConfigError(f"{hydra_error_message(exc)} (Hydra's sweep grammar: a,b  range(0,3)  choice(a,b)  "
                          "glob(*))") from None
    fixed: list[str] = []
    swept: dict[str, list[str]] = {}
    for override in parsed:
        key = override.get_key_element()
        if not override.is_sweep_override():
            fixed.append(override.input_line)  # as typed: Hydra's re-escaped form shows sqlite\:////...
            continue
        values = _sweep_values(override)
        if not values:
            raise ConfigError(f"{override.input_line!r} sweeps over no value")
        swept[key] = values
    return fixed, swept


def _normalised(fixed: list[str]) -> list[str]:
    """Fixed overrides as Hydra prints them (``1e-3`` -> ``0.001``): the study's name follows what they
    mean, not how they were typed (and stays what it was before they were kept as typed)."""
    return [f"{o.get_key_element()}={o.get_value_element_as_str()}"
            for o in OverridesParser.create().parse_overrides(fixed)]


def _sweep_values(override: Override) -> list[str]:
    if isinstance(override.value(), Glob):
        group = override.key_or_group
        if group not in GROUPS:
            raise ConfigError(f"{override.input_line!r}: glob() selects options of a config group "
                              f"({', '.join(GROUPS)}), and '{group}' is not one")
        return override.value().filter(group_options(group))
    if not override.is_discrete_sweep():
        raise ConfigError(f"{override.input_line!r}: interval() is a continuous range, which -m cannot enumerate; "
                          "search it with a sweep file: python -m ganlab.sweep (see docs/sweeps.md)")
    return list(override.sweep_string_iterator())


def combinations(swept: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination of the swept values (the last key varies fastest, as in Hydra)."""
    keys = list(swept)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*swept.values())]


def _check(fixed: list[str], swept: dict[str, list[str]]) -> list[str]:
    """Compose the fixed overrides with every swept value once (the others at their first value), so a
    bad key or value is a one-line error before anything trains; return each family the values reach."""
    first = {key: values[0] for key, values in swept.items()}
    configs = ConfigFamily()
    families = []
    for key, values in swept.items():
        for value in values:
            chosen = {**first, key: value}
            try:
                cfg = configs.compose([*fixed, *(f"{k}={v}" for k, v in chosen.items())])
            except ConfigError as exc:
                raise (exc if f"{key}=" in str(exc) else ConfigError(f"{key}={value}: {exc}")) from None
            families.append(TARGETS[cfg.data.name].family)
    return families


def multirun_definition(overrides: list[str]) -> tuple[SweepDefinition, DictConfig]:
    """A sweep whose trials are the combinations, enqueued in order (``grid``), and the config of the
    fixed overrides alone (where the runs are tracked)."""
    fixed, swept = split_overrides(overrides)
    if not swept:
        raise ConfigError("-m needs at least one swept key, e.g. optim.d_lr=1e-4,1e-3 or 'train.seed=range(0,3)'")
    for key, values in swept.items():
        if key.lstrip("+~") == "train.seeds":  # a median of 3 would be ranked against single readings
            raise ConfigError(f"train.seeds={','.join(values)}: -m cannot sweep train.seeds (how many seeds judge "
                              "each combination); give it one value, e.g. train.seeds=3")
    base = compose_config(fixed)  # a bad fixed override is reported as itself, before the swept ones
    families = _check(fixed, swept)
    digest = hashlib.sha1("\n".join([*_normalised(fixed), *(f"{k}={v}" for k, v in swept.items())]).encode()
                          ).hexdigest()[:8]
    grid = combinations(swept)
    metric = HEADLINE_BY_FAMILY[families[0]] if len(set(families)) == 1 else "fit_s"
    return SweepDefinition(
        name=f"multirun-{digest}", base=[], fixed=fixed,
        space=[Param(key, "categorical", choices=values) for key, values in swept.items()],
        objective=Objective(metric), second_objective=None, trials=len(grid), sampler={"name": "grid", "seed": 0},
        pruner={"name": "none"}, storage=None, description="python -m ganlab.train -m " + " ".join(overrides),
        experiment=base.tracking.experiment, register=base.tracking.register, grid=grid,
        seeds=base.train.seeds), base


def run_multirun(overrides: list[str], workers: int, list_only: bool = False) -> int:
    """Run every combination (or, ``list_only``, print them); returns the exit code."""
    sweep, base = multirun_definition(overrides)
    if list_only:
        print(describe(sweep))
        return 0
    from ganlab.config.uris import resolve_tracking_uri
    from ganlab.sweeping.driver import run_sweep
    from ganlab.sweeping.study import storage_url

    tracking_uri = resolve_tracking_uri(base.tracking.uri)
    return run_sweep(sweep, storage_url(sweep, beside=tracking_uri), tracking_uri, workers)


def describe(sweep: SweepDefinition) -> str:
    """What ``--cfg -m`` prints: the combinations, one per line, without training."""
    lines = [f"{len(sweep.grid)} combinations (study {sweep.name}, MLflow experiment '{sweep.experiment_name}'):"]
    fixed = " ".join(sweep.fixed)
    for i, combo in enumerate(sweep.grid):
        lines.append(f"  #{i:<3} {' '.join(f'{k}={v}' for k, v in combo.items())}" + (f"  {fixed}" if fixed else ""))
    return "\n".join(lines)
