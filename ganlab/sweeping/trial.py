"""One sweep trial: compose its config from the suggestions, train with the same code as
``ganlab.train``, report every evaluation to the pruner, return the objective(s).

A trial of a sweep with ``train.seeds=N`` trains its N seeds together (one ``train.seeds`` run) and is
judged by their median, which is what its pruner sees too; if one of its seeds fails, the trial fails."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import optuna
from mlflow.tracking import MlflowClient

from ganlab.config.compose import compose_config
from ganlab.errors import ConfigError, EnvironmentFault, environment_fault
from ganlab.population.population_runner import run_population
from ganlab.run_heartbeat import process_tag
from ganlab.signals import Stopped
from ganlab.sweeping.definition import SweepDefinition
from ganlab.sweeping.worker_faults import WORKER_ATTR
from ganlab.training.runner import EarlyStop, RunResult, TrainingFailed, run_training


class TrialObjective:
    """Callable for ``study.optimize``; each trial is an MLflow child run of the sweep's parent run."""

    def __init__(self, sweep: SweepDefinition, parent_run_id: str) -> None:
        self.sweep, self.parent_run_id = sweep, parent_run_id

    def _reporter(self, trial: optuna.Trial):
        metric = self.sweep.objective.metric
        prunable = len(self.sweep.objectives) == 1

        def report(iteration: int, metrics: dict[str, float]) -> None:
            value = metrics.get(metric)
            if not prunable or value is None or iteration == 0:
                return
            trial.report(value if math.isfinite(value) else float("inf"), iteration)
            if trial.should_prune():
                raise EarlyStop(f"pruned at iteration {iteration} ({metric}={value:.4g})")

        return report

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        trial.set_user_attr(WORKER_ATTR, process_tag())  # a dead worker's trial is found by it, and retried
        values = self.sweep.suggest(trial)
        overrides = self.sweep.trial_overrides(values)
        trial.set_user_attr("overrides", overrides)
        try:
            cfg = compose_config(overrides)
        except ConfigError as exc:  # a combination the trainer refuses fails alone (the study goes on)
            trial.set_user_attr("failure_reason", str(exc))
            raise
        tags = {"mlflow.parentRunId": self.parent_run_id, "sweep": self.sweep.name,
                "trial_number": str(trial.number), "trial_state": "running"}
        run = dict(run_name=f"trial-{trial.number:03d}", verbose=False, on_evaluate=self._reporter(trial), tags=tags)
        try:
            if cfg.train.seeds > 1:  # a seed that fails fails the trial, as a trial of one seed that diverges
                result = run_population(cfg, all_must_live=True, **run)
            else:
                result = run_training(cfg, **run)
        except EarlyStop as exc:
            trial.set_user_attr("mlflow_run_id", exc.run_id)
            MlflowClient().set_tag(exc.run_id, "trial_state", "pruned")
            raise optuna.TrialPruned(str(exc)) from None
        except (KeyboardInterrupt, Stopped, SystemExit) as exc:  # the run is KILLED; the trial is queued again
            if getattr(exc, "run_id", None):
                with contextlib.suppress(Exception):
                    MlflowClient().set_tag(exc.run_id, "trial_state", "interrupted")
            raise
        except TrainingFailed as exc:
            self._failed(trial, exc)
        except ConfigError as exc:  # refused before its run existed (a missing GPU): the trial fails alone
            trial.set_user_attr("failure_reason", str(exc))
            raise
        trial.set_user_attr("mlflow_run_id", result.run_id)
        try:
            objectives = tuple(self._value(result, o.metric) for o in self.sweep.objectives)
        except TrainingFailed as exc:
            self._failed(trial, exc)
        MlflowClient().set_tag(result.run_id, "trial_state", "complete")
        return objectives[0] if len(objectives) == 1 else objectives

    @staticmethod
    def _failed(trial: optuna.Trial, exc: TrainingFailed) -> None:
        """A failed configuration records why and fails alone. A run the machine stopped (a full disk)
        says nothing about the configuration: the worker stops and the trial is queued again."""
        if environment_fault(exc):
            with contextlib.suppress(Exception):  # the same fault may refuse this write too
                MlflowClient().set_tag(exc.run_id, "trial_state", "interrupted")
            raise EnvironmentFault(f"trial {trial.number} stopped: {exc.reason}") from exc
        trial.set_user_attr("failure_reason", exc.reason)
        trial.set_user_attr("mlflow_run_id", exc.run_id)
        MlflowClient().set_tag(exc.run_id, "trial_state", "failed")
        raise exc

    @staticmethod
    def _value(result: RunResult, metric: str) -> Any:
        if metric in ("wall_s", "fit_s"):
            return getattr(result, metric)
        value = result.metrics[metric]
        if not math.isfinite(value):
            raise TrainingFailed(f"objective {metric} is {value}", result.run_id)
        return value
