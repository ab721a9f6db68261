"""A population sweep's slots: Optuna trials trained together, refilled as they end.

A Lightning callback on the population loop. Every trial is a member of a cohort (members of one
batch size and shape). At each member's evaluation (every ``eval_every`` of its own iterations) its
metrics go to its MLflow child run and its objective to Optuna's pruner; a pruned member is told
PRUNED, a member whose loss turned non-finite FAIL, a member at its last iteration COMPLETE. Freed
slots are filled at once by ``study.ask()`` (so the sampler learns from every result), and the
cohorts are reassembled from the members that go on plus the new ones. Only this process writes the
study. The best ``best_artifacts`` completed trials (at the end of the sweep) get a single run's
artifacts (samples, weights, plots); every trial gets its params, config, metrics over training and
final state.

Warm-up: a median pruner compares a trial only with completed ones, so none of K trials started
together could be pruned. Until its ``n_startup_trials`` have completed, only that many slots are
open (``population.warm_up``, on by default), as if that many process workers ran.

Trials over seeds (``train.seeds=N`` in the sweep's fixed list): a trial is N members side by side in
one cohort (its seeds, ``member_configs``), evaluated together and judged by their median, as a
``train.seeds`` run is; a seed that fails fails its trial. K members then hold K // N trials.
"""

from __future__ import annotations

import math
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from ganlab.config.compose import ConfigFamily
from ganlab.errors import ConfigError
from ganlab.plots.plotter import build_plotter
from ganlab.population.cohort import Cohort, build_member
from ganlab.population.member_settings import cohort_signature, member_configs
from ganlab.population.population_evaluation import PopulationEvaluator, median_member
from ganlab.population.population_module import PopulationModule
from ganlab.population.population_runner import log_per_seed, per_seed_record, seed_failure, summarise
from ganlab.sweeping.definition import SweepDefinition
from ganlab.sweeping.samplers import finished_trials_to_compare
from ganlab.sweeping.summary import best_trials, short_reason, trial_line
from ganlab.sweeping.trial_runs import TrialRuns
from ganlab.training.history import History
from ganlab.training.runner import final_sample_count, log_history_figures, log_samples, log_weights

MAX_STEPS_AHEAD = 200  # iterations in one population step, at most (see PopulationSlots.steps_ahead)
STEP_SECONDS = 1.0  # ... and about this long


@dataclass
class LiveTrial:
    """A trial training as a member: its Optuna handle, config, when it joined (in population steps)."""

    trial: optuna.Trial
    cfg: DictConfig
    joined_at: int
    run: Future
    rows: list[dict[str, float]] = field(default_factory=list)
    frames: list = field(default_factory=list)
    evaluated_at: int = -1  # the population step of its last evaluation (a member is evaluated once a step)

    def __post_init__(self) -> None:
        # read once: whether a member is due is asked every step, and a config read costs ~10 us
        self.eval_every, self.iterations = int(self.cfg.train.eval_every), int(self.cfg.train.iterations)

    def iteration(self, step: int) -> int:
        return step - self.joined_at


@dataclass
class BestMember:
    """A completed trial among the best so far: what its artifacts are made of."""

    cfg: DictConfig
    run_id: str
    nets: dict[str, torch.nn.Module]  # generator.pt, discriminator.pt, generator_ema.pt (plain modules, CPU)
    rows: list[dict[str, float]]
    frames: list
    sample_seed: int  # samples.npy's noise seed + 1: the trial's train.seed (over seeds, not its median seed's)


class _AskTellSampler(optuna.samplers.BaseSampler):
    """The study's sampler for ask/tell: samplers that end a study (grid, once every point is taken)
    call ``study.stop()``, which Optuna allows only inside ``study.optimize``; here the budget ends it."""

    def __init__(self, inner: optuna.samplers.BaseSampler) -> None:
        self.inner = inner

    def infer_relative_search_space(self, study, trial):
        return self.inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self.inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        try:
            self.inner.after_trial(study, trial, state, values)
        except RuntimeError as exc:
            if "Study.stop" not in str(exc):
                raise

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()


class PopulationSlots(pl.Callback):
    def __init__(self, study: optuna.Study, sweep: SweepDefinition, runs: TrialRuns, size: int, parent_run_id: str,
                 budget: int, best_artifacts: int = 3,
                 on_boundary: Callable[[PopulationModule], None] | None = None, verbose: bool = True,
                 write_births: Callable[[], None] = lambda: None) -> None:
        self.study, self.sweep, self.runs, self.size = study, sweep, runs, size
        self.write_births = write_births  # the study storage's (sole_writer_storage.py): asked trials, written at once
        study.sampler = _AskTellSampler(study.sampler)
        self.parent_run_id, self.budget = parent_run_id, budget
        self.best_artifacts, self.on_boundary, self.verbose = best_artifacts, on_boundary, verbose
        self.live: dict[int, LiveTrial] = {}
        self.best: dict[int, BestMember] = {}  # completed trials among the best, until their artifacts are logged
        self.best_changed = False
        self.ended: Counter[str] = Counter()
        self.evaluators: dict[str, tuple[PopulationEvaluator, Any]] = {}
        self.eval_seconds = 0.0
        self.refill_seconds = 0.0  # asking, writing, composing and building new members
        self._start = time.perf_counter()
        self._last_status = 0.0
        self._member_iterations = 0
        self.configs = ConfigFamily()  # the trials' configs share their group choices: composed once
        self.warm_up = finished_trials_to_compare(sweep.pruner) if sweep.population["warm_up"] else 0
        self.seeds = max(int(sweep.seeds), 1)  # members per trial
        self.trial_slots = trials_at_once(size, self.seeds)

    # -- joining -------------------------------------------------------------------------------------
    def open_slots(self) -> int:
        """How many trials train at once: ``size``, or during the warm-up (fewer trials completed than the
        pruner compares with) only that many, so that later trials can be pruned from their first wave."""
        if self.warm_up == 0 or self.warm_up >= self.trial_slots:
            return self.trial_slots
        done = len(self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        return self.trial_slots if done >= self.warm_up else self.warm_up

    def _ask(self) -> tuple[optuna.Trial, list[str]]:
        with warnings.catch_warnings():  # the storage's heartbeats serve process workers; members have none
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = self.study.ask()
        try:
            values = self.sweep.suggest(trial)
            overrides = self.sweep.trial_overrides(values)
            trial.set_user_attr("overrides", overrides)
            trial.set_user_attr("population", True)
        except Exception as exc:  # half asked: a trial without its overrides could never be continued
            trial.set_user_attr("failure_reason", f"asking it failed: {type(exc).__name__}: {exc}")
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        return trial, overrides

    def join(self, trial: optuna.Trial, cfg: DictConfig, step: int, resume_run_id: str | None = None) -> None:
        """Register a trial as a live member (its cohort is assembled by the caller)."""
        tags = {"mlflow.parentRunId": self.parent_run_id, "sweep": self.sweep.name,
                "trial_number": str(trial.number), "trial_state": "running", "population": "true"}
        run = self.runs.open(trial.number, cfg, f"trial-{trial.number:03d}", tags, resume_run_id=resume_run_id)
        self.live[trial.number] = LiveTrial(trial, cfg, step, run)

    def refill(self, module: PopulationModule) -> None:
        """Ask new trials for the free slots and reassemble the cohorts (members that go on + new ones).
        The trials are all asked and composed first, then written to the study together
        (``write_births``), then built. A trial whose config is refused fails, and its slot is asked again."""
        start = time.perf_counter()
        composed: list[tuple[optuna.Trial, DictConfig]] = []
        refused: list[tuple[optuna.Trial, ConfigError]] = []
        while len(self.live) + len(composed) < self.open_slots() and self.budget > 0:
            trial, overrides = self._ask()
            self.budget -= 1
            try:
                composed.append((trial, self.configs.compose(overrides)))
            except ConfigError as exc:  # a combination the trainer refuses: that trial fails, the sweep goes on
                refused.append((trial, exc))
        self.write_births()
        for trial, exc in refused:
            trial.set_user_attr("failure_reason", str(exc))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self.ended["fail"] += 1
            if self.verbose:
                print(f"[sweep {self.sweep.name}] trial {trial.number:>3} FAIL     {exc}", flush=True)
        new: dict[str, list[tuple[int, DictConfig]]] = {}
        for trial, cfg in composed:
            self.join(trial, cfg, module.iteration)
            for member in trial_members(cfg):
                new.setdefault(cohort_signature(member), []).append((trial.number, member))
        self.assemble(module, new)
        self.refill_seconds += time.perf_counter() - start

    def assemble(self, module: PopulationModule, new: dict[str, list[tuple[int, DictConfig]]]) -> None:
        cohorts = []
        kept: dict[str, list[tuple[Cohort, list[int]]]] = {}
        for cohort in module.cohorts:
            idx = [k for k, key in enumerate(cohort.keys) if key in self.live and cohort.alive[k]]
            kept.setdefault(cohort_signature(cohort.configs[0]), []).append((cohort, idx))
        for signature in dict.fromkeys([*kept, *new]):
            joining = new.get(signature)
            extra = None
            if joining:
                extra = Cohort([cfg for _, cfg in joining], keys=[n for n, _ in joining]).to(module.device)
            cohort = Cohort.assemble(kept.get(signature, []), extra)
            if cohort is not None:
                cohorts.append(cohort)
        module.set_cohorts(cohorts)

    # -- Lightning hooks -----------------------------------------------------------------------------
    def on_train_start(self, trainer, module: PopulationModule) -> None:
        self._start = time.perf_counter()
        self.refill(module)
        # iteration 0 of every new member (the starting point of its curves), and a continued member's
        # evaluation that was due when the population was stopped: it may end trials, whose slots refill
        self._evaluate(module)
        self._fill(module)
        module.steps_per_call = self.steps_ahead(module)
        if not self.live:
            trainer.should_stop = True

    def on_train_batch_end(self, trainer, module: PopulationModule, outputs, batch, batch_idx: int) -> None:
        self._member_iterations += len(self.live) * self.seeds * module.last_steps
        if not self._evaluate(module):
            module.steps_per_call = self.steps_ahead(module)
            return
        self._fill(module)
        if self.on_boundary is not None:
            self.on_boundary(module)
        self._status(module)
        module.steps_per_call = self.steps_ahead(module)
        if not self.live:
            trainer.should_stop = True

    def _fill(self, module: PopulationModule) -> None:
        """Ask trials for the free slots and drop ended members, then evaluate the new members' iteration
        0; again while that left slots free and trials to ask (an evaluation may end members)."""
        while len(self.live) < self.open_slots() and self.budget > 0 or any(not all(c.alive) for c in module.cohorts):
            self.refill(module)
            self._evaluate(module)

    def steps_ahead(self, module: PopulationModule) -> int:
        """Iterations until a member is next due for evaluation: the population takes them in one step,
        with no stop between (a stop costs the CPU's cohort workers a wait for each other; measured with
        threads, 13 % of a step of eight mixed members on two). At most ``MAX_STEPS_AHEAD`` and about
        ``STEP_SECONDS`` of training, so that a stop signal, which waits for the step's end, is obeyed soon."""
        ahead = min(MAX_STEPS_AHEAD, max(1, int(STEP_SECONDS / max(module.seconds_per_iteration, 1e-9))))
        for live in self.live.values():
            it = live.iteration(module.iteration)
            ahead = min(ahead, live.eval_every - it % live.eval_every, live.iterations - it)
        return max(ahead, 1)

    # -- evaluation and the trials' ends -------------------------------------------------------------
    def _due(self, live: LiveTrial, step: int) -> bool:
        if live.evaluated_at == step:
            return False
        it = live.iteration(step)
        return it % live.eval_every == 0 or it >= live.iterations

    def _evaluate(self, module: PopulationModule) -> bool:
        """Evaluate the cohorts with a member due; end trials as their results say. True if any was due."""
        step = module.iteration
        any_due = False
        start = time.perf_counter()
        for cohort in list(module.cohorts):
            due: dict[int, list[int]] = {}  # trial number -> its members' places in the cohort
            for k, key in enumerate(cohort.keys):
                if cohort.alive[k] and key in self.live and self._due(self.live[key], step):
                    due.setdefault(key, []).append(k)
            if not due:
                continue
            any_due = True
            failed: dict[int, list[tuple[int, str]]] = {}  # trial -> its seeds found non-finite, and why
            for k, reason in cohort.collect_failures().items():
                failed.setdefault(cohort.keys[k], []).append((int(cohort.configs[k].train.seed), reason))
            for number, seeds in failed.items():
                if number not in self.live:
                    continue
                reason = seeds[0][1]
                if self.seeds > 1:  # one failed seed ends its trial; its other seeds stop with it
                    reason = seed_failure(seeds[0][0], reason)
                    self.runs.call(number, "set_tag", "failed_seeds", ", ".join(str(seed) for seed, _ in seeds))
                self._stop_members(cohort, number)
                self._end(number, "fail", reason=reason)
            evaluator, plotter = self._evaluator(cohort)
            rows, samples = evaluator.evaluate(cohort)
            for number, ks in due.items():
                if number in self.live and all(cohort.alive[k] for k in ks):
                    self._record(cohort, ks, rows, samples, evaluator.labels_np, plotter, step)
        self.eval_seconds += time.perf_counter() - start
        return any_due

    def _evaluator(self, cohort: Cohort) -> tuple[PopulationEvaluator, Any]:
        signature = cohort_signature(cohort.configs[0])
        if signature not in self.evaluators:  # seeded by the trial's train.seed, not a member's seed + s
            live = self.live.get(cohort.keys[0])
            cfg = (live.cfg if live is not None else cohort.configs[0]).train
            self.evaluators[signature] = (PopulationEvaluator(cohort, cfg.eval_samples, cfg.seed),
                                          build_plotter(cohort.target))
        return self.evaluators[signature]

    @staticmethod
    def _stop_members(cohort: Cohort, number: int) -> None:
        for k, key in enumerate(cohort.keys):
            if key == number:
                cohort.stop(k)

    def _record(self, cohort: Cohort, ks: list[int], rows: list[dict[str, float]], samples: np.ndarray,
                labels: np.ndarray | None, plotter, step: int) -> None:
        """One trial's evaluation: its member's metrics, or over seeds their summary (medians, ranges and
        each seed's headline metric, as a ``train.seeds`` run logs) with the median seed's samples
        (generated for ``labels``, a conditional model's classes)."""
        number = cohort.keys[ks[0]]
        live = self.live[number]
        if len(ks) == 1:
            k, row = ks[0], rows[ks[0]]
        else:
            members, seeds = [rows[k] for k in ks], [int(cohort.configs[j].train.seed) for j in ks]
            median = median_member(members, [True] * len(ks))
            k, row = ks[median], summarise(members, seeds, [True] * len(ks))
        sample = samples[k]
        live.evaluated_at = step
        it = live.iteration(step)
        train = live.cfg.train
        live.rows.append({"iteration": it, **row})
        self.runs.log_metrics(number, row, it)
        if live.run.done() and "mlflow_run_id" not in live.trial.user_attrs:
            live.trial.set_user_attr("mlflow_run_id", live.run.result())
        if it % train.plot_every == 0 or it >= train.iterations:
            live.frames.append(plotter.frame(sample, labels, it, lambda points, label: None))
        if it >= train.iterations:
            self._complete(cohort, k, row, per_seed_record(seeds, members, {}, median) if len(ks) > 1 else None)
            return
        if it == 0 or len(self.sweep.objectives) > 1:
            return
        value = row.get(self.sweep.objective.metric, math.nan)
        with warnings.catch_warnings():  # a resumed member reports steps again: Optuna keeps the first
            warnings.simplefilter("ignore")
            live.trial.report(value if math.isfinite(value) else float("inf"), it)
        if live.trial.should_prune():
            self._stop_members(cohort, number)
            self._end(number, "pruned", reason=f"pruned at iteration {it} ({self.sweep.objective.metric}={value:.4g})")

    def _complete(self, cohort: Cohort, k: int, row: dict[str, float], per_seed: dict | None = None) -> None:
        """The trial of member ``k`` (its median seed, over seeds, with ``per_seed``: what seeds.json
        holds) has trained its last iteration."""
        number = cohort.keys[k]
        self._stop_members(cohort, number)
        if per_seed is not None:  # as a trial over seeds in a process worker records it
            self.runs.with_tracker(number, lambda tracker: log_per_seed(tracker, per_seed))
        values = [row.get(o.metric, math.nan) for o in self.sweep.objectives]
        bad = [o.metric for o, v in zip(self.sweep.objectives, values, strict=True) if not math.isfinite(v)]
        if bad:
            self._end(number, "fail", reason=f"objective {bad[0]} is {row.get(bad[0])}")
            return
        self._end(number, "complete", values=values, cohort=cohort, k=k)

    def _end(self, number: int, state: str, reason: str | None = None, values: list[float] | None = None,
             cohort: Cohort | None = None, k: int | None = None) -> None:
        """Tell Optuna first (the study is the record of truth), then close the child run."""
        live = self.live.pop(number)
        trial = live.trial
        if reason:
            trial.set_user_attr("failure_reason" if state == "fail" else "stopped_reason", reason)
        if live.run.done():
            trial.set_user_attr("mlflow_run_id", live.run.result())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if state == "complete":
                frozen = self.study.tell(trial, values[0] if len(values) == 1 else values)
            else:
                frozen = self.study.tell(trial, state=optuna.trial.TrialState.PRUNED if state == "pruned"
                                         else optuna.trial.TrialState.FAIL)
        self.ended[state] += 1
        self.runs.call(number, "set_tag", "trial_state", {"fail": "failed"}.get(state, state))
        if state == "complete" and cohort is not None and self.best_artifacts:
            self._keep_if_best(frozen, live, cohort, k)
        if state == "pruned":
            self.runs.call(number, "set_tag", "stopped_reason", reason)
        self.runs.finish(number, {"complete": "FINISHED", "pruned": "KILLED", "fail": "FAILED"}[state],
                         reason if state == "fail" else None)
        if self.verbose:
            shown = " ".join(f"{v:.4g}" for v in values) if values else short_reason(reason or "")
            print(trial_line(self.study, self.sweep, frozen, shown), flush=True)

    def _keep_if_best(self, frozen: optuna.trial.FrozenTrial, live: LiveTrial, cohort: Cohort, k: int) -> None:
        """Hold a completed trial's networks while it is among the best ``best_artifacts`` (its artifacts
        are logged when the sweep ends: only the final best get them)."""
        best = [t.number for t in best_trials(self.study)[:self.best_artifacts]]
        if frozen.number in best:
            nets = {"generator.pt": cohort.generator.member(k), "discriminator.pt": cohort.discriminator.member(k),
                    "generator_ema.pt": cohort.ema.member(k)}
            self.best_changed = True  # worth a checkpoint: these weights exist nowhere else
            self.best[frozen.number] = BestMember(cohort.configs[k], live.run.result(),
                                                  {n: net.cpu() for n, net in nets.items()}, live.rows, live.frames,
                                                  int(live.cfg.train.seed))
        for number in [n for n in self.best if n not in best]:
            del self.best[number]

    def log_best_artifacts(self) -> None:
        """What a single run logs at its end, for the best trials: samples.npy, weights, plots."""
        for number, kept in sorted(self.best.items()):
            member = build_member(kept.cfg)
            n = final_sample_count(member.target.dim)
            z, labels = member.conditioning.draw_inputs(member.noise, member.target, n,
                                                        torch.Generator().manual_seed(kept.sample_seed + 1))
            with torch.no_grad():
                samples = kept.nets["generator_ema.pt"](member.conditioning.join(z, labels)).float().numpy()
            plotter = build_plotter(member.target)
            last = kept.frames[-1]
            example = member.conditioning.input_example(member.noise, member.target)

            def log(tracker, samples=samples, labels=labels, kept=kept, plotter=plotter, last=last,
                    example=example) -> None:
                """As a single run's end (the runner's own loggers), on the trial's run."""
                with tempfile.TemporaryDirectory() as tmp:
                    log_samples(tracker, samples, labels, Path(tmp))
                    log_weights(tracker, kept.nets, Path(tmp))
                tracker.log_generator(kept.nets["generator_ema.pt"], example, kept.cfg)
                tracker.log_frame(last, kept.rows[-1], f"plots/{plotter.animation_name}_{last.iteration:06d}.png")
                log_history_figures(tracker, History(kept.rows, kept.frames), plotter)

            self.runs.attach(number, kept.cfg, kept.run_id)
            self.runs.with_tracker(number, log)
            self.runs.call(number, "set_tag", "best_artifacts", "true")
            self.runs.release(number)

    def _status(self, module: PopulationModule) -> None:
        now = time.perf_counter()
        if not self.verbose or now - self._last_status < 10.0:
            return
        self._last_status = now
        best = best_trials(self.study)
        best_text = f"best {self.sweep.objective.metric} {best[0].values[0]:.4g}" if best else "no trial complete"
        rate = self._member_iterations / max(now - self._start, 1e-9)
        ended = f" ({', '.join(f'{v} {k}' for k, v in self.ended.items())})" if self.ended else ""
        left = self.member_iterations_left(module.iteration)
        eta = f", {time_left(left / rate)} left at this rate (less if trials are pruned)" if rate > 0 and left else ""
        print(f"[population] step {module.iteration}: {len(self.live)} trials training in {len(module.cohorts)} "
              f"cohort(s), {sum(self.ended.values())} ended{ended}, "
              f"{best_text}; {rate:.0f} member-iterations/s{eta}", flush=True)

    def member_iterations_left(self, step: int) -> int:
        """What the sweep has left to train if no trial ends early: the live members' remaining iterations
        and, for each trial still to ask, as many as the longest live member's (the trials' usual length)."""
        lengths = [live.iterations for live in self.live.values()]
        running = sum(max(live.iterations - live.iteration(step), 0) for live in self.live.values())
        return (running + self.budget * max(lengths, default=0)) * self.seeds


def trials_at_once(members: int, seeds: int) -> int:
    """How many trials ``members`` members hold when each trial is ``seeds`` of them (at least one)."""
    return max(members // max(seeds, 1), 1)


def trial_members(cfg: DictConfig) -> list[DictConfig]:
    """A trial's members: itself, or over seeds (``train.seeds=N``) one config per seed, in seed order."""
    return member_configs(cfg) if cfg.train.seeds > 1 else [cfg]


def time_left(seconds: float) -> str:
    """'about 40 s', 'about 12 min', 'about 2.5 h': a progress line's estimate, rounded as it deserves."""
    if seconds < 90:
        return f"about {max(seconds, 1):.0f} s"
    if seconds < 90 * 60:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"
