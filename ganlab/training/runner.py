"""Build a run from a validated config, train it under Lightning, and record it in MLflow.

This is the single entry point every caller uses (the CLI, tests, benchmarks, later the sweeps).
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

if TYPE_CHECKING:
    from ganlab.tracking import Tracker
    from ganlab.tracking_process import TrackerProcess

from ganlab.config.recipes import recipe_summary
from ganlab.config.uris import resolve_tracking_uri
from ganlab.data.loaders import training_loader
from ganlab.generator_sampling import build_parts
from ganlab.nets.models import build_discriminator, build_lift
from ganlab.plots.plotter import Plotter, build_plotter
from ganlab.preprocess import build_preprocess
from ganlab.signals import Stopped, check_stop, deferred_to_boundaries, reclaim_stop_signals
from ganlab.training.accelerators import resolve_accelerator
from ganlab.training.checkpoints import CheckpointWriter
from ganlab.training.evaluation import Evaluator, TrainingMonitor
from ganlab.training.gan_module import GANModule, NonFiniteLossError
from ganlab.training.history import History
from ganlab.training.optimizers import short_run_note

FINAL_SAMPLES = 10_000
FINAL_SAMPLES_MAX_VALUES = 4_000_000  # samples.npy stays under ~16 MB: 10,000 digits, 5,102 MNIST, 1,302 CIFAR


def final_sample_count(dim: int) -> int:
    """How many final samples a run saves: 10,000, fewer for large images."""
    return min(FINAL_SAMPLES, FINAL_SAMPLES_MAX_VALUES // dim)


class EarlyStop(Exception):
    """Raised by an ``on_evaluate`` hook to end a run early (a pruned sweep trial): the MLflow run is
    marked KILLED with the reason in its ``stopped_reason`` tag, and the exception propagates with
    the run's id in ``run_id``."""

    run_id: str | None = None


class TrainingFailed(RuntimeError):
    """Training raised or diverged; the MLflow run is already marked FAILED with the reason."""

    def __init__(self, reason: str, run_id: str) -> None:
        super().__init__(reason)
        self.reason, self.run_id = reason, run_id


@dataclass
class ResumePoint:
    """An existing MLflow run and the checkpoint it goes on from."""

    run_id: str
    state: dict


@dataclass
class RunResult:
    run_id: str
    experiment: str
    tracking_uri: str
    artifact_uri: str
    metrics: dict[str, float]
    wall_s: float
    fit_s: float
    iterations: int
    history: list[dict[str, float]] = field(default_factory=list)
    registered: str | None = None  # models:/<name>/<version> when tracking.register named one


def build_module(cfg: DictConfig) -> GANModule:
    target, noise, conditioning, generator = build_parts(cfg)
    extra = conditioning.extra_features()
    lift = build_lift(cfg.model, target.dim + extra)
    point_dim = lift.out_features() if lift is not None else target.dim + extra
    preprocess = build_preprocess(cfg.preprocess, cfg.train.batch_size, point_dim)
    units = target.standard_units() if cfg.model.standardize else None
    discriminator = build_discriminator(cfg.model, preprocess, lift, units, twice_differentiable=cfg.train.r1_gamma > 0)
    return GANModule(generator, discriminator, target, noise, cfg.train, cfg.optim, conditioning)


class _StopSignalsStayOurs(pl.Callback):
    """Lightning registers its SIGTERM handler as fit starts; ganlab's comes back before the first step."""

    def on_train_start(self, trainer, module) -> None:
        reclaim_stop_signals()


def make_trainer(cfg: DictConfig, callbacks: list[pl.Callback]) -> pl.Trainer:
    """A quiet trainer: no Lightning logger, progress bar, checkpointing or summary (ganlab does its own);
    SIGINT and SIGTERM stay ganlab's (``ganlab.signals``)."""
    return pl.Trainer(
        accelerator=resolve_accelerator(cfg.train.accelerator), devices=1, max_epochs=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, callbacks=[_StopSignalsStayOurs(), *callbacks],
    )


def open_tracker(cfg: DictConfig, run_name: str | None, tags: dict[str, str] | None, resume: ResumePoint | None,
                 tracking: TrackerProcess | None, plotter: Plotter) -> Tracker | TrackerProcess:
    """The run's tracker, its run created (or reopened). A stop signal meanwhile waits for the run to
    exist, then ends it KILLED: raised while the tracking process created it, it left the run RUNNING
    and the CLI said that it had stopped before the run was created."""
    with deferred_to_boundaries("stopping once the run exists"):
        tracker = _open_tracker(cfg, run_name, tags, resume, tracking, plotter)
        stop = check_stop()
    if stop is not None:
        finish_killed(tracker, stop, resumed=resume is not None)
        raise stop
    return tracker


def _open_tracker(cfg: DictConfig, run_name: str | None, tags: dict[str, str] | None, resume: ResumePoint | None,
                  tracking: TrackerProcess | None, plotter: Plotter) -> Tracker | TrackerProcess:
    if tracking is not None and resume is None:
        return tracking.open(cfg, run_name=run_name, tags=tags)
    from ganlab.tracking import Tracker  # MLflow loads here, after the model is built

    if resume is not None:
        return Tracker(cfg, resume_run_id=resume.run_id, plotter=plotter)
    return Tracker(cfg, run_name=run_name, tags=tags, plotter=plotter)


def _log_final_artifacts(module: GANModule, plotter, history: History, tracker: Tracker | TrackerProcess,
                         cfg: DictConfig) -> None:
    seed = cfg.train.seed
    samples, labels = module.sample(final_sample_count(module.target.dim), torch.Generator().manual_seed(seed + 1))
    samples = samples.float().cpu().numpy()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        log_samples(tracker, samples, labels, tmp_path)
        weights = {"generator.pt": module.generator, "discriminator.pt": module.discriminator}
        if module.ema is not None:
            weights["generator_ema.pt"] = module.ema.module
        log_weights(tracker, weights, tmp_path)
    tracker.log_generator(copy.deepcopy(module.eval_generator).cpu(), module.generator_input_example(), cfg)
    log_history_figures(tracker, history, plotter)


def log_samples(tracker: Tracker | TrackerProcess, samples: np.ndarray, labels: torch.Tensor | None,
                folder: Path) -> None:
    """samples.npy and, for a conditional model, labels.npy (row i of the samples was generated for class
    labels[i]): what ``ganlab.sample`` and a user's own analysis read back."""
    np.save(folder / "samples.npy", samples)
    tracker.log_artifact(folder / "samples.npy")
    if labels is not None:
        np.save(folder / "labels.npy", labels.cpu().numpy())
        tracker.log_artifact(folder / "labels.npy")


def log_weights(tracker: Tracker | TrackerProcess, weights: dict[str, torch.nn.Module], folder: Path) -> None:
    """Each network's state dict as model/<name> (what `ganlab.sample` and resume read back)."""
    for name, net in weights.items():
        torch.save(net.state_dict(), folder / name)
        tracker.log_artifact(folder / name, "model")


def log_history_figures(tracker: Tracker | TrackerProcess, history: History, plotter) -> None:
    """The training animation (from the plotted frames) and the metric curves."""
    if len(history.frames) > 1:
        tracker.log_animation(history.frames, f"plots/{plotter.animation_name}.gif")
    if history.rows:
        tracker.log_metric_curves(history.rows, "plots/metrics.png")


def run_training(cfg: DictConfig, run_name: str | None = None, verbose: bool = True,
                 on_evaluate: Callable[[int, dict[str, float]], None] | None = None,
                 tags: dict[str, str] | None = None, resume: ResumePoint | None = None,
                 tracking: TrackerProcess | None = None) -> RunResult:
    """Train one GAN as configured; return the final metrics and where the run lives in MLflow.

    ``on_evaluate(iteration, metrics)`` is called after every evaluation (the sweeps report to their
    pruner there); ``tags`` are added to the MLflow run (e.g. ``mlflow.parentRunId``). ``resume``
    continues an existing run from its checkpoint (see ``ganlab.training.resume``). ``tracking``: a
    started :class:`TrackerProcess` to record the run from another process (the CLI's), else the run
    is recorded in this process.
    """
    start = time.perf_counter()
    accelerator = resolve_accelerator(cfg.train.accelerator)  # fail on a missing GPU before a run exists
    torch.set_num_threads(cfg.train.threads)
    pl.seed_everything(cfg.train.seed, verbose=False)
    module = build_module(cfg)
    history = History()
    resolve_tracking_uri(cfg.tracking.uri)  # a bad URI is a one-line ConfigError here, wherever it is tracked
    if resume is not None:
        module.load_training_state(resume.state)
        history.restore(resume.state)
    plotter = build_plotter(module.target)
    tracker = open_tracker(cfg, run_name, tags, resume, tracking, plotter)
    first = module.iteration
    if verbose:
        action = f"resumed at iteration {first} of" if resume is not None else "in"
        print(f"ganlab: run {tracker.run_id} {action} experiment '{tracker.experiment_name}' "
              f"({cfg.model.name} on {cfg.data.name}, {cfg.train.iterations} iterations, {accelerator}; "
              f"recipe {recipe_summary(cfg)}"
              # a resumed run keeps its checkpoint's rates, whatever the new length would give
              f"{short_run_note(cfg.optim, cfg.train.iterations) if resume is None else ''})", flush=True)
    fit_start = time.perf_counter()
    try:  # from here on the run exists: whatever fails ends it FAILED (or KILLED), never RUNNING
        monitor = TrainingMonitor(Evaluator(module, cfg.train.eval_samples, cfg.train.seed), plotter, tracker,
                                  cfg.train, history, print_interval_s=2.0 if verbose else float("inf"),
                                  on_evaluate=on_evaluate)
        loader = training_loader(module.target, cfg.train, first)
        make_trainer(cfg, [monitor, CheckpointWriter(tracker, cfg, history)]).fit(module, loader)
        fit_s = time.perf_counter() - fit_start
        _log_final_artifacts(module, plotter, history, tracker, cfg)
        registered = register_if_asked(tracker, cfg)
    except EarlyStop as exc:
        stop_early(tracker, exc)
        raise
    except NonFiniteLossError as exc:
        tracker.finish("FAILED", str(exc))
        raise TrainingFailed(str(exc), tracker.run_id) from exc
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
    tracker.finish("FINISHED")
    return RunResult(tracker.run_id, tracker.experiment_name, tracker.uri, tracker.artifact_uri,
                     history.last(), time.perf_counter() - start, fit_s, module.iteration, history.rows, registered)


def stop_early(tracker: Tracker | TrackerProcess, exc: EarlyStop) -> None:
    """An ``on_evaluate`` hook ended the run (a pruned trial): KILLED, the reason in ``stopped_reason``;
    the exception learns the run's id."""
    tracker.set_tag("stopped_reason", str(exc))
    tracker.finish("KILLED")
    exc.run_id = tracker.run_id


def interruption_behind(exc: BaseException) -> KeyboardInterrupt | Stopped | None:
    """The Ctrl-C or stop signal (KeyboardInterrupt, ``Stopped``) an error was raised while handling,
    if any: e.g. torch's zip writer, cut mid-write, raises a RuntimeError of its own. Not SystemExit
    or GeneratorExit: an error raised while those unwind is a failure of its own."""
    seen: set[int] = set()
    link = exc.__cause__ or exc.__context__
    while link is not None and id(link) not in seen:
        if isinstance(link, KeyboardInterrupt | Stopped):
            return link
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return None


def finish_killed(tracker: Tracker | TrackerProcess, exc: BaseException, resumed: bool = False) -> None:
    """SIGINT/SIGTERM (``Stopped``), Ctrl-C or SystemExit: the run ends KILLED with the reason, never
    RUNNING; the exception learns which run it stopped (the CLI's message names it) and, if the fit's
    checkpointer could not say (stopped before the fit), whether a checkpoint exists: a resumed run's."""
    tracker.finish("KILLED", f"stopped by {exc.name}" if isinstance(exc, Stopped) else "interrupted")
    exc.run_id = tracker.run_id  # a sweep's worker tags its trial's run with it
    if isinstance(exc, Stopped) and exc.checkpointed is None:
        exc.checkpointed = resumed


def register_if_asked(tracker: Tracker | TrackerProcess, cfg: DictConfig) -> str | None:
    """``tracking.register=<name>``: the run's generator Model as that name's next version; its URI."""
    name = cfg.tracking.register
    if name is None:
        return None
    version = tracker.register_generator(name)
    return f"models:/{name}/{version}" if version is not None else None  # None: waiting in the tracking spool
