"""`python -m ganlab.train train.seeds=N`: one config, N seeds trained together, one MLflow run.

The run logs, at every evaluation, each metric's median over the seeds under the metric's own name
(so runs compare as usual in the UI), its min and max (``<metric>_min``/``_max``), and the headline
metric of every seed (``<metric>_seed<s>``). At the end: ``seeds.json`` (every seed's final metrics
and any failure), and for the *median seed* (by the headline metric) the artifacts a single run has:
samples.npy, weights, the animation and the metric curves.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from ganlab.config.recipes import recipe_summary
from ganlab.metrics import headline
from ganlab.plots.plotter import build_plotter
from ganlab.population.cohort import Cohort
from ganlab.population.member_settings import member_configs
from ganlab.population.population_evaluation import PopulationEvaluator, headline_key, median_member
from ganlab.population.population_module import PopulationModule
from ganlab.population.seeds_checkpoints import restore_seeds_state, seeds_training_state
from ganlab.training.accelerators import resolve_accelerator
from ganlab.training.checkpoints import CheckpointWriter
from ganlab.training.history import History
from ganlab.training.optimizers import short_run_note
from ganlab.training.runner import (
    EarlyStop,
    ResumePoint,
    RunResult,
    TrainingFailed,
    final_sample_count,
    finish_killed,
    interruption_behind,
    log_history_figures,
    log_samples,
    log_weights,
    make_trainer,
    open_tracker,
    register_if_asked,
    stop_early,
)


def summarise(rows: list[dict[str, float]], seeds: list[int], alive: list[bool]) -> dict[str, float]:
    """Median, min and max over the live seeds of every metric, and each seed's headline metric."""
    live = [row for row, ok in zip(rows, alive, strict=True) if ok] or rows
    out: dict[str, float] = {}
    for key in rows[0]:
        values = [row[key] for row in live if np.isfinite(row[key])] or [float("nan")]
        out[key], out[f"{key}_min"], out[f"{key}_max"] = statistics.median(values), min(values), max(values)
    key = headline_key(rows[0])
    out.update({f"{key}_seed{s}": row[key] for s, row in zip(seeds, rows, strict=True)})
    return out


def per_seed_record(seeds: list[int], rows: list[dict[str, float]], failures: dict[int, str],
                    median: int) -> dict:
    """What ``seeds.json`` holds: the median seed, and each seed's status and final metrics (and why a
    failed one failed); ``failures`` and ``median`` are positions in ``seeds``."""
    return {"median_seed": seeds[median],
            "seeds": [{"seed": s, "status": "FAILED" if i in failures else "FINISHED", **row,
                       **({"failure": failures[i]} if i in failures else {})}
                      for i, (s, row) in enumerate(zip(seeds, rows, strict=True))]}


def log_per_seed(tracker, per_seed: dict) -> None:
    """``seeds.json`` and the ``median_seed`` tag on a run over seeds (a train.seeds run, or a sweep's
    trial over seeds, from a process worker or a population sweep)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "seeds.json"
        path.write_text(json.dumps(per_seed, indent=1, default=float))
        tracker.log_artifact(path)
    tracker.set_tag("median_seed", str(per_seed["median_seed"]))


def seed_failure(seed: int, reason: str) -> str:
    """Why a sweep trial over seeds failed: one of its seeds did (a run or a population sweep's trial)."""
    return f"seed {seed} failed (a trial over seeds fails with any of its seeds): {reason}"


class SeedsFailed(RuntimeError):
    """Raised at an evaluation that ends a train.seeds run FAILED: every seed has failed (nothing is left
    to train), or, with ``all_must_live``, any one has."""


class PopulationMonitor(pl.Callback):
    """Evaluates every ``eval_every`` iterations: logs the summary, prints progress, plots the median seed."""

    def __init__(self, evaluator: PopulationEvaluator, plotter, tracker, train_cfg, history: History,
                 verbose: bool, on_evaluate: Callable[[int, dict[str, float]], None] | None = None,
                 all_must_live: bool = False) -> None:
        self.evaluator, self.plotter, self.tracker, self.cfg = evaluator, plotter, tracker, train_cfg
        self.history, self.verbose, self.on_evaluate = history, verbose, on_evaluate
        self.all_must_live = all_must_live
        self.rows: list[dict[str, float]] = []
        self._start, self._last_print, self._first = time.perf_counter(), 0.0, 0
        self.seconds = 0.0  # spent evaluating and handing results to the tracker (its share of the fit is reported)

    def on_train_start(self, trainer, module: PopulationModule) -> None:
        self._start, self._first = time.perf_counter(), module.iteration
        if module.iteration == 0:  # a resumed run's checkpoint holds the evaluation of its own iteration
            self.evaluate(module, plot=True)

    def on_train_batch_end(self, trainer, module: PopulationModule, outputs, batch, batch_idx: int) -> None:
        it, last = module.iteration, module.iteration >= self.cfg.iterations
        if it % self.cfg.eval_every == 0 or last:
            self.evaluate(module, plot=it % self.cfg.plot_every == 0 or last)

    def evaluate(self, module: PopulationModule, plot: bool) -> None:
        start = time.perf_counter()
        try:
            self._evaluate(module.cohorts[0], module.iteration, plot)
        finally:
            self.seconds += time.perf_counter() - start

    def _evaluate(self, cohort: Cohort, it: int, plot: bool) -> None:
        cohort.collect_failures()
        self.rows, samples = self.evaluator.evaluate(cohort)
        alive = list(cohort.alive)
        summary = summarise(self.rows, cohort.keys, alive)
        self.history.rows.append({"iteration": it, **summary})
        self.tracker.log_metrics(summary, step=it)
        if plot:
            k = median_member(self.rows, alive)
            frame = self.plotter.frame(samples[k], self.evaluator.labels_np, it, lambda points, label: None)
            self.history.frames.append(frame)
            self.tracker.log_frame(frame, self.rows[k], f"plots/{self.plotter.animation_name}_{it:06d}.png")
        now = time.perf_counter()
        if self.verbose and (now - self._last_print >= 2.0 or it in (0, self.cfg.iterations)):
            self._last_print = now
            key = headline_key(self.rows[0])
            rate = (it - self._first) / max(now - self._start, 1e-9)
            print(f"[it {it:>{len(str(self.cfg.iterations))}}/{self.cfg.iterations}] median of {len(alive)} seeds: "
                  f"{headline(summary)}  ({key} {summary[f'{key}_min']:.4f}-{summary[f'{key}_max']:.4f}; "
                  f"{sum(alive)} training)" + (f"  ({rate:.0f} it/s)" if it > self._first else ""), flush=True)
        self._check_failures(cohort)
        if self.on_evaluate is not None:  # last: an EarlyStop raised there ends a run whose evaluation is logged
            self.on_evaluate(it, summary)

    def _check_failures(self, cohort: Cohort) -> None:
        failures = cohort.failures
        if len(failures) == cohort.members:
            raise SeedsFailed("every seed failed: " + failures[min(failures)])
        if failures and self.all_must_live:
            k = min(failures)
            raise SeedsFailed(seed_failure(cohort.keys[k], failures[k]))


def _log_final_artifacts(cohort: Cohort, monitor: PopulationMonitor, history: History, tracker,
                         cfg: DictConfig) -> None:
    """seeds.json, and the median seed's samples (with labels.npy, conditional), weights and generator
    Model; the figures."""
    seed = cfg.train.seed
    failures = cohort.failures
    alive = [k not in failures for k in range(cohort.members)]
    k = median_member(monitor.rows, alive)
    per_seed = per_seed_record(cohort.keys, monitor.rows, failures, k)
    log_per_seed(tracker, per_seed)
    z, labels = cohort.conditioning.draw_inputs(cohort.noise, cohort.target, final_sample_count(cohort.target.dim),
                                                torch.Generator().manual_seed(seed + 1))
    generator = cohort.ema.member(k)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        with torch.no_grad():
            samples = generator(cohort.conditioning.join(z, labels).to(cohort.device)).float().cpu().numpy()
        log_samples(tracker, samples, labels, tmp_path)
        log_weights(tracker, {"generator.pt": cohort.generator.member(k),
                              "discriminator.pt": cohort.discriminator.member(k), "generator_ema.pt": generator},
                    tmp_path)
    tracker.log_generator(generator.cpu(), cohort.conditioning.input_example(cohort.noise, cohort.target),
                          member_configs(cfg)[k])
    log_history_figures(tracker, history, monitor.plotter)


def run_population(cfg: DictConfig, run_name: str | None = None, verbose: bool = True,
                   tracking=None, resume: ResumePoint | None = None,
                   on_evaluate: Callable[[int, dict[str, float]], None] | None = None,
                   tags: dict[str, str] | None = None, all_must_live: bool = False) -> RunResult:
    """Train ``cfg.train.seeds`` seeds of ``cfg`` together; record one MLflow run (see the module docstring).
    ``resume`` continues an existing run from its checkpoint (``ganlab.training.resume``).
    ``on_evaluate(iteration, summary)`` and ``tags`` as in :func:`run_training`: a sweep trial over seeds
    reports the medians to its pruner, and an ``EarlyStop`` raised there ends the run KILLED.
    The run ends FAILED at the evaluation that finds every seed failed, or, ``all_must_live`` (a sweep
    trial: the survivors' median would flatter a config that diverges), any one."""
    start = time.perf_counter()
    accelerator = resolve_accelerator(cfg.train.accelerator)  # fail on a missing GPU before a run exists
    torch.set_num_threads(cfg.train.threads)
    pl.seed_everything(cfg.train.seed, verbose=False)
    configs = member_configs(cfg)
    cohort = Cohort(configs, keys=[c.train.seed for c in configs])
    # a stop signal is raised by the CheckpointWriter, after the step's evaluation and checkpoint
    module = PopulationModule([cohort], stop_at_step_end=False)
    pl.seed_everything(cfg.train.seed, verbose=False)  # the training draws do not depend on how many were built
    history = History()
    if resume is not None:
        restore_seeds_state(module, history, resume.state)
    plotter = build_plotter(cohort.target)
    tracker = open_tracker(cfg, run_name, {**(tags or {}), "seeds": str(cfg.train.seeds)}, resume, tracking, plotter)
    seeds = cohort.keys
    if verbose:
        action = f"resumed at iteration {module.iteration} of" if resume is not None else "in"
        print(f"ganlab: run {tracker.run_id} {action} experiment '{tracker.experiment_name}' ({cfg.model.name} on "
              f"{cfg.data.name}, seeds {seeds[0]}-{seeds[-1]} together, {cfg.train.iterations} iterations, "
              f"{accelerator}; recipe {recipe_summary(cfg)}"
              f"{short_run_note(cfg.optim, cfg.train.iterations) if resume is None else ''})", flush=True)
    fit_start = time.perf_counter()
    try:  # from here on the run exists: whatever fails ends it FAILED (or KILLED), never RUNNING
        monitor = PopulationMonitor(PopulationEvaluator(cohort, cfg.train.eval_samples, cfg.train.seed), plotter,
                                    tracker, cfg.train, history, verbose, on_evaluate, all_must_live)
        checkpoints = CheckpointWriter(tracker, cfg, history, state_of=seeds_training_state)
        loader = torch.utils.data.DataLoader(range(module.iteration, cfg.train.iterations), batch_size=None)
        make_trainer(cfg, [monitor, checkpoints]).fit(module, loader)
        fit_s = time.perf_counter() - fit_start
        _log_final_artifacts(cohort, monitor, history, tracker, cfg)
        tracker.set_tag("evaluation_share", f"{monitor.seconds / fit_s:.3f}")
        if verbose:
            print(f"ganlab: evaluation and logging took {monitor.seconds:.1f} s of the {fit_s:.1f} s fit "
                  f"({monitor.seconds / fit_s:.0%})", flush=True)
        if cohort.failures:
            tracker.set_tag("failed_seeds", ", ".join(str(seeds[k]) for k in sorted(cohort.failures)))
    except EarlyStop as exc:
        stop_early(tracker, exc)
        raise
    except SeedsFailed as exc:
        tracker.set_tag("failed_seeds", ", ".join(str(seeds[k]) for k in sorted(cohort.failures)))
        tracker.finish("FAILED", str(exc))
        raise TrainingFailed(str(exc), tracker.run_id) from None
    except Exception as exc:
        interruption = interruption_behind(exc)
        if interruption is not None:  # a library turned a Ctrl-C into its own error: still a stop
            finish_killed(tracker, interruption, resumed=resume is not None)
            raise interruption from None
        reason = f"{type(exc).__name__}: {exc}"
        tracker.finish("FAILED", reason)
        raise TrainingFailed(reason, tracker.run_id) from exc
    except BaseException as exc:
        finish_killed(tracker, exc, resumed=resume is not None)
        raise
    try:
        registered = register_if_asked(tracker, cfg)
    except Exception as exc:
        tracker.finish("FAILED", f"{type(exc).__name__}: {exc}")
        raise
    except BaseException as exc:  # a stop while registering: the run exists, and ends KILLED
        finish_killed(tracker, exc, resumed=True)  # trained to the end: its final checkpoint exists
        raise
    tracker.finish("FINISHED")
    return RunResult(tracker.run_id, tracker.experiment_name, tracker.uri, tracker.artifact_uri, history.last(),
                     time.perf_counter() - start, fit_s, module.iteration, history.rows, registered)
