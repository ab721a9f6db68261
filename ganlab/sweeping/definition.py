"""Sweep definitions: ``sweeps/<name>.yaml`` parsed into a checked :class:`SweepDefinition`.

Every key of the search space and every fixed override is checked against the training schema
before anything runs, by composing the base config with the lowest and the highest value of every
parameter: a typo, an empty range or a value the trainer would refuse is a one-line error.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig

from ganlab.config.compose import GROUPS, compose_config, hydra_error_message
from ganlab.config.flatten import flatten_config
from ganlab.data.targets import TARGETS
from ganlab.errors import ConfigError
from ganlab.metrics import HEADLINE_BY_FAMILY, LOGGED_METRICS, METRICS_BY_FAMILY
from ganlab.sweeping.samplers import PRUNERS, SAMPLERS, make_pruner, make_sampler, sampler_notice

SWEEPS_DIR = Path(__file__).resolve().parents[2] / "sweeps"
DIRECTIONS = ("minimize", "maximize")
RUN_METRICS = ("wall_s", "fit_s")  # objectives measured on the run itself, not by the evaluator
TOP_KEYS = {"description", "base", "fixed", "space", "objective", "second_objective", "trials", "sampler",
            "pruner", "storage", "study_name", "population"}
# `population:` settings of a sweep trained with --population K (see ganlab.sweeping.population_driver)
# warm_up: train only as many trials as a median pruner needs finished until they have finished (then all K);
# cuda_graphs: on a CUDA device, capture each cohort's iteration as a CUDA graph (ganlab.population.cuda_graphs)
POPULATION_DEFAULTS = {"best_artifacts": 3, "checkpoint_every_s": 60, "warm_up": True, "cuda_graphs": False}
POPULATION_SWITCHES = ("warm_up", "cuda_graphs")


@dataclass
class Param:
    """One search-space dimension: float (low/high/log), int (low/high/step/log) or categorical."""

    key: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: int | float | None = None
    choices: list[Any] = field(default_factory=list)

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.type == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.key, self.low, self.high, log=self.log, step=self.step or 1)
        return trial.suggest_categorical(self.key, self.choices)

    def extremes(self) -> list[Any]:
        return [self.low, self.high] if self.type != "categorical" else list(self.choices)


@dataclass
class Objective:
    metric: str
    direction: str = "minimize"


@dataclass
class SweepDefinition:
    name: str
    base: list[str]
    fixed: list[str]
    space: list[Param]
    objective: Objective
    second_objective: Objective | None
    trials: int
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    storage: str | None
    description: str = ""
    population: dict[str, Any] = field(default_factory=lambda: dict(POPULATION_DEFAULTS))
    experiment: str = ""  # the MLflow experiment of the parent and child runs ("sweep-<name>" if empty)
    register: str | None = None  # tracking.register of the base config: the best trial's generator, at the end
    grid: list[dict[str, Any]] = field(default_factory=list)  # trials enqueued in this order (a -m multirun)
    notices: list[str] = field(default_factory=list)  # what loading changed, for the command line to print
    seeds: int = 1  # train.seeds of the fixed config: each trial trains that many seeds and reports their median
    accelerator: str = "cpu"  # train.accelerator of the fixed config: a missing GPU is refused before the study opens

    def objective_label(self, metric: str) -> str:
        """How the summary names an objective: ``ks``, or ``ks (median of 3 seeds)``."""
        return metric if self.seeds == 1 or metric in RUN_METRICS else f"{metric} (median of {self.seeds} seeds)"

    @property
    def objectives(self) -> list[Objective]:
        return [self.objective] + ([self.second_objective] if self.second_objective else [])

    def overrides(self, values: dict[str, Any]) -> list[str]:
        """The training overrides for one trial: base, fixed, then the suggested values."""
        return [*self.base, *self.fixed, *(f"{k}={_override_value(v)}" for k, v in values.items())]

    def trial_overrides(self, values: dict[str, Any]) -> list[str]:
        """A trial's full overrides: its runs go to the sweep's experiment, and only the sweep registers."""
        # Hydra's quoted strings ([,= are its grammar): backslashes double only before a quote or at the end
        quoted = re.sub(r"(\\+)(?='|$)", r"\1\1", self.experiment_name).replace("'", "\\'")
        return [*self.overrides(values), f"tracking.experiment='{quoted}'", "tracking.register=null"]

    @property
    def experiment_name(self) -> str:
        return self.experiment or f"sweep-{self.name}"

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        return {p.key: p.suggest(trial) for p in self.space}


def _override_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ",".join(_override_value(v) for v in value) + "]"
    return str(value)


def _fail(path: Path, message: str) -> None:
    raise ConfigError(f"sweep {path.name}: {message}")


def resolve_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    candidate = SWEEPS_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    if path.suffix in (".yaml", ".yml") or len(path.parts) > 1:  # meant as a file
        raise ConfigError(f"no sweep file {name_or_path} (from {Path.cwd()}); give an existing .yaml file "
                          f"or a sweep name: {', '.join(available())}")
    known = ", ".join(available())
    raise ConfigError(f"unknown sweep '{name_or_path}'; available: {known} (or a path to a .yaml file)")


def available() -> list[str]:
    return sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))


def _param(path: Path, key: str, spec: Any) -> Param:
    if not isinstance(spec, dict) or spec.get("type") not in ("float", "int", "categorical"):
        _fail(path, f"space.{key} needs type: float, int or categorical, got {spec!r}")
    kind = spec["type"]
    allowed = {"type", "choices"} if kind == "categorical" else {"type", "low", "high", "log", "step"}
    extra = set(spec) - allowed
    if extra:
        _fail(path, f"space.{key} has unknown field(s) {sorted(extra)}; a {kind} takes {sorted(allowed)}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            _fail(path, f"space.{key} is categorical with no choices; give choices: [a, b, ...]")
        return Param(key, kind, choices=choices)
    low, high = spec.get("low"), spec.get("high")
    number = int if kind == "int" else (int, float)
    if not isinstance(low, number) or not isinstance(high, number) or isinstance(low, bool):
        _fail(path, f"space.{key} needs numeric low and high ({kind}), got low={low!r} high={high!r}")
    if not low < high:
        _fail(path, f"space.{key} has an empty range: low={low} must be < high={high}")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        _fail(path, f"space.{key} is log-scaled, so low must be > 0, got {low}")
    step = spec.get("step")
    if step is not None and (log or step <= 0):
        _fail(path, f"space.{key}: step={step} must be > 0 and cannot be combined with log")
    return Param(key, kind, low, high, log, step)


def _objective(path: Path, spec: Any, field_name: str) -> Objective:
    if isinstance(spec, str):
        spec = {"metric": spec}
    if not isinstance(spec, dict) or "metric" not in spec:
        _fail(path, f"{field_name} needs a metric, e.g. {{metric: ks, direction: minimize}}")
    direction = spec.get("direction", "minimize")
    if direction not in DIRECTIONS:
        _fail(path, f"{field_name}.direction={direction!r}; allowed: {', '.join(DIRECTIONS)}")
    return Objective(str(spec["metric"]), direction)


def _population(path: Path, spec: Any) -> dict[str, Any]:
    spec = spec or {}
    if not isinstance(spec, dict) or set(spec) - set(POPULATION_DEFAULTS):
        _fail(path, f"population takes {', '.join(POPULATION_DEFAULTS)}, got {spec!r}")
    out = {**POPULATION_DEFAULTS, **spec}
    for key in POPULATION_SWITCHES:
        if not isinstance(out[key], bool):
            _fail(path, f"population.{key}={out[key]!r} must be true or false")
    for key, value in out.items():
        if key in POPULATION_SWITCHES:
            continue
        least = 0 if key == "best_artifacts" else 1
        if not isinstance(value, int | float) or isinstance(value, bool) or not least <= value < math.inf:
            _fail(path, f"population.{key}={value!r} must be a number >= {least}")
    return out


def _check_against_schema(path: Path, sweep: SweepDefinition) -> DictConfig:
    """Compose the base config and the space's extremes; return the base config."""
    try:
        cfg = compose_config([*sweep.base, *sweep.fixed])
    except ConfigError as exc:
        _fail(path, f"base/fixed overrides: {exc}")
    if any(p.key == "train.seeds" for p in sweep.space):
        _fail(path, "train.seeds cannot be searched (it is how many seeds judge a trial, not a hyperparameter); "
                    "put train.seeds=N in fixed to judge every trial by its median over N seeds")
    keys = set(flatten_config(cfg))
    for p in sweep.space:
        if p.key in GROUPS:
            _fail(path, f"space key '{p.key}' is a config group: a study searches values, not group options; "
                        f"pick one in fixed: ['{p.key}=<option>'] and run one sweep per option")
        if p.key not in keys:
            close = difflib.get_close_matches(p.key, sorted(keys), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            _fail(path, f"space key '{p.key}' is not a config key{hint}")
    for extreme in range(max(len(p.extremes()) for p in sweep.space) if sweep.space else 0):
        values = {p.key: p.extremes()[min(extreme, len(p.extremes()) - 1)] for p in sweep.space}
        try:
            compose_config(sweep.overrides(values))
        except ConfigError as exc:  # also a train.seeds=N the population engine cannot train together
            _fail(path, f"the search space reaches a config the trainer refuses: {exc}")
    return cfg


def _check_arguments(path: Path, sampler: dict[str, Any], pruner: dict[str, Any]) -> None:
    """Build the sampler and pruner once, so a misspelt or out-of-range argument is one line now, not
    Optuna's traceback from every worker later."""
    trial_space = {"search_space": {"x": [0]}} if sampler["name"] == "grid" else {}  # the real one: at open
    for kind, spec, build in (("sampler", {**sampler, **trial_space}, make_sampler), ("pruner", pruner, make_pruner)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                build(spec)
        except (TypeError, ValueError) as exc:
            shown = {k: v for k, v in spec.items() if k != "search_space"}
            _fail(path, f"{kind} {shown}: {str(exc).splitlines()[0]}")


MAX_NAME_CHARS = 120  # a study named after its overrides; longer lists are named by their digest


def _command_line_overrides(path: Path, sweep: SweepDefinition, overrides: list[str]) -> bool:
    """Add config overrides typed after the sweep's name (``ganlab.sweep default data=ring8``) to its fixed
    ones. They make a different study: its name (and MLflow experiment) carry them, so the same command
    resumes it and the plain sweep's study is left as it was. Returns whether they change the data."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise ConfigError(hydra_error_message(exc)) from None
    searched = {p.key for p in sweep.space}
    moved = False
    for override in parsed:
        key = override.key_or_group  # without a +, ++ or ~ prefix, which would slip past the checks below
        moved = moved or key in ("data", "experiment") or key.startswith("data.")
        if override.is_sweep_override():
            raise ConfigError(f"{override.input_line} gives several values; an override of a sweep fixes one value "
                              f"(search a key by adding it to the space of {path.name})")
        if key in searched:
            raise ConfigError(f"{override.input_line}: {key} is searched by {path.name} (its space); override "
                              "only keys the sweep does not search, or copy the file and change its space")
        if key == "tracking.uri":
            raise ConfigError(f"{override.input_line}: give the sweep's tracking store with --tracking-uri, "
                              "which its parent run and every trial use")
        if key == "tracking.experiment":
            sweep.experiment = "" if override.is_delete() or override.value() is None else str(override.value())
    compose_config([*sweep.base, *sweep.fixed, *overrides])  # a bad override: its own one-line error, unprefixed
    sweep.fixed = [*sweep.fixed, *overrides]
    suffix = ",".join(overrides).replace("'", "").replace('"', "")  # quotes would end MLflow's filter strings
    if len(suffix) > MAX_NAME_CHARS:
        suffix = hashlib.sha1(suffix.encode()).hexdigest()[:8]
    sweep.name = f"{sweep.name}[{suffix}]"
    return moved


def load(name_or_path: str, trials: int | None = None, storage: str | None = None,
         overrides: list[str] | None = None) -> SweepDefinition:
    """Parse and check a sweep definition; ``trials`` / ``storage`` override the file's values, and
    ``overrides`` (config overrides) are added to its fixed ones."""
    path = resolve_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        _fail(path, f"not valid YAML ({str(exc).splitlines()[0]})")
    if not isinstance(raw, dict):
        _fail(path, "must be a mapping of keys (base, fixed, space, objective, ...)")
    unknown = set(raw) - TOP_KEYS
    if unknown:
        _fail(path, f"unknown key(s) {sorted(unknown)}; allowed: {', '.join(sorted(TOP_KEYS))}")
    space_raw = raw.get("space") or {}
    if not isinstance(space_raw, dict) or not space_raw:
        _fail(path, "space must map at least one config key to its range")
    sampler = dict(raw.get("sampler") or {"name": "tpe"})
    pruner = dict(raw.get("pruner") or {"name": "none"})
    if sampler.get("name") not in SAMPLERS:
        _fail(path, f"sampler.name={sampler.get('name')!r}; {SAMPLERS.allowed()}")
    if pruner.get("name") not in PRUNERS:
        _fail(path, f"pruner.name={pruner.get('name')!r}; {PRUNERS.allowed()}")
    n_trials = trials if trials is not None else raw.get("trials", 20)
    if not isinstance(n_trials, int) or n_trials < 1:
        _fail(path, f"trials={n_trials!r} must be a positive integer")
    population = _population(path, raw.get("population"))
    second = raw.get("second_objective")
    sweep = SweepDefinition(
        name=str(raw.get("study_name") or path.stem),
        base=[str(o) for o in raw.get("base") or []],
        fixed=[str(o) for o in raw.get("fixed") or []],
        space=[_param(path, str(k), v) for k, v in space_raw.items()],
        objective=_objective(path, raw.get("objective", {"metric": "ks"}), "objective"),
        second_objective=_objective(path, second, "second_objective") if second else None,
        trials=n_trials, sampler=sampler, pruner=pruner,
        storage=storage or raw.get("storage"), description=str(raw.get("description", "")), population=population,
    )
    if sweep.second_objective and pruner["name"] != "none":
        _fail(path, "Optuna cannot prune multi-objective studies: set pruner: {name: none}")
    if sampler["name"] == "grid" and any(p.type == "float" and p.step is None for p in sweep.space):
        _fail(path, "the grid sampler needs a step for every float parameter (or categorical choices)")
    _check_arguments(path, sampler, pruner)
    notice = sampler_notice(sampler, [p.key for p in sweep.space if p.type == "categorical"])
    if notice:
        sweep.notices.append(notice)
    moved = _command_line_overrides(path, sweep, overrides) if overrides else False
    cfg = _check_against_schema(path, sweep)
    sweep.register, sweep.seeds, sweep.accelerator = cfg.tracking.register, cfg.train.seeds, cfg.train.accelerator
    _check_objectives(path, sweep, cfg, follow_data=moved)
    return sweep


def _check_objectives(path: Path, sweep: SweepDefinition, cfg: DictConfig, follow_data: bool) -> None:
    """Every objective must be a metric the trials log for this sweep's data. ``follow_data``: command-line
    overrides moved the sweep to another kind of target (``default data=ring8``), so an objective that
    is the old kind's headline metric (KS) becomes the new kind's (sliced W1), with a notice."""
    for obj in sweep.objectives:
        per_class = re.fullmatch(r"(\w+)_class\d+", obj.metric)
        if obj.metric not in (*LOGGED_METRICS, *RUN_METRICS) and not (per_class and per_class[1] in LOGGED_METRICS):
            _fail(path, f"objective metric '{obj.metric}' is not logged; allowed: "
                        f"{', '.join((*LOGGED_METRICS, *RUN_METRICS))} (or <metric>_class<k> for conditional models)")
    family = TARGETS[cfg.data.name].family
    logged = METRICS_BY_FAMILY[family]
    for obj in sweep.objectives:
        metric = re.sub(r"_class\d+$", "", obj.metric)
        if obj.metric in RUN_METRICS or metric in logged:
            continue
        headline = HEADLINE_BY_FAMILY[family]
        taken = {o.metric for o in sweep.objectives}
        if follow_data and obj.metric in HEADLINE_BY_FAMILY.values() and headline not in taken:
            sweep.notices.append(f"objective {obj.direction} {obj.metric} is not logged for data={cfg.data.name} "
                                 f"(a {family} target): this study minimises {headline}, its headline metric")
            obj.metric, obj.direction = headline, "minimize"
            continue
        _fail(path, f"objective metric '{obj.metric}' is not logged for data={cfg.data.name} (a {family} target); "
                    f"it logs {', '.join((*logged, *RUN_METRICS))}")
