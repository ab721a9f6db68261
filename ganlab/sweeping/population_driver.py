"""``python -m ganlab.sweep SWEEP --population K``: the study's trials trained K at a time in one process.

Opens (or resumes) the study and its MLflow parent run as the process sweep does, then runs the
population loop with :class:`~ganlab.sweeping.population_slots.PopulationSlots`. The population is
checkpointed (every member's weights, Adam state and iteration, atomically) at an evaluation at
least every ``checkpoint_every_s`` seconds and when it is interrupted; running the same command
again continues every trial that was running: from the checkpoint when it holds the trial, else
from its first iteration (a trial asked after the last checkpoint). No trial is lost or asked twice.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import os
import re
import sys
import time
import warnings
from pathlib import Path

import optuna
import torch
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig

from ganlab.atomic_files import save_atomic
from ganlab.config.compose import compose_config
from ganlab.config.uris import sqlite_file
from ganlab.config.validate import check_population_fits
from ganlab.errors import ConfigError, one_line
from ganlab.population.cohort import Cohort, build_member
from ganlab.population.member_settings import MAX_SEEDS, cohort_signature, unsupported_reason
from ganlab.population.population_module import PopulationModule
from ganlab.runtime import configure_runtime
from ganlab.signals import Stopped, as_stop, deferred_to_boundaries, raise_pending_stop, stop_on_signals
from ganlab.sweeping.definition import RUN_METRICS, SweepDefinition
from ganlab.sweeping.driver import print_results
from ganlab.sweeping.population_slots import BestMember, PopulationSlots, trial_members, trials_at_once
from ganlab.sweeping.samplers import for_population
from ganlab.sweeping.sole_writer_storage import SoleWriterStorage
from ganlab.sweeping.study import DEFAULT_STORAGE_DIR, open_sole_writer_study, open_study, quiet_optuna
from ganlab.sweeping.summary import (
    close_orphaned_child_runs,
    close_stopped_parent_run,
    finish_parent_run,
    open_parent_run,
)
from ganlab.sweeping.trial_runs import TrialRuns
from ganlab.sweeping.worker_faults import budget_used, population_trials_running
from ganlab.system_metrics import start_system_metrics, stop_system_metrics
from ganlab.training.accelerators import resolve_accelerator
from ganlab.training.runner import make_trainer

PROCESS_KEYS = ("train.accelerator", "train.threads")  # one process, one device: the population's, not a trial's
# 2: one flat weight tensor per network; 3: 1D members hold model.standardize's buffers; 4: each cohort as
# Cohort.checkpoint_state (also a train.seeds run's), with its members' failures; and each member's seed
# ("seeds", read when present: a trial over seeds holds one place per seed)
CHECKPOINT_VERSION = 4


def population_unsupported(sweep: SweepDefinition) -> str | None:
    """Why this sweep cannot train as a population (its trials then run one process each), or None."""
    for objective in sweep.objectives:
        if objective.metric in RUN_METRICS:
            return f"its objective {objective.metric} is a process's own time, which members of a population share"
    for p in sweep.space:
        if p.key in PROCESS_KEYS or p.key.startswith("tracking."):
            return f"it searches {p.key}, which is the population process's own setting"
    for extreme in range(max(len(p.extremes()) for p in sweep.space)):
        values = {p.key: p.extremes()[min(extreme, len(p.extremes()) - 1)] for p in sweep.space}
        reason = unsupported_reason(compose_config(sweep.overrides(values)))
        if reason:
            return reason
    return None


def checkpoint_path(sweep: SweepDefinition, storage_url: str) -> Path:
    """One checkpoint per study and storage: beside a SQLite storage file (so the same command finds
    it from any directory), else under ./mlruns (a database server keeps no files for us)."""
    digest = hashlib.sha1(storage_url.encode()).hexdigest()[:8]
    storage_file = sqlite_file(storage_url)
    folder = DEFAULT_STORAGE_DIR.resolve() if storage_file is None else storage_file.resolve().parent
    name = re.sub(r"[^\w.,=+\[\]-]", "_", sweep.name)  # a study named after overrides may hold a path's slashes
    if name != sweep.name:
        name += "-" + hashlib.sha1(sweep.name.encode()).hexdigest()[:8]
    return folder / "populations" / f"{name}-{digest}.pt"


def save_checkpoint(path: Path, module: PopulationModule, slots: PopulationSlots) -> None:
    state = {"version": CHECKPOINT_VERSION, "step": module.iteration, "rng": torch.get_rng_state(),
             "cohorts": [{"trials": list(c.keys), "seeds": [int(m.train.seed) for m in c.configs],
                          **c.checkpoint_state()} for c in module.cohorts],
             "members": {n: {"joined_at": live.joined_at, "evaluated_at": live.evaluated_at, "rows": live.rows,
                             "frames": live.frames} for n, live in slots.live.items()},
             "best": {n: {"cfg": kept.cfg, "run_id": kept.run_id, "rows": kept.rows, "frames": kept.frames,
                          "sample_seed": kept.sample_seed,
                          "nets": {name: net.state_dict() for name, net in kept.nets.items()}}
                      for n, kept in slots.best.items()}}
    save_atomic(state, path)


def _child_run_id(client: MlflowClient, parent_run_id: str, number: int) -> str | None:
    """The child run of trial ``number`` (set as a trial attribute once known; else found by its tags)."""
    parent = client.get_run(parent_run_id)
    found = client.search_runs([parent.info.experiment_id], filter_string=(
        f"tags.`mlflow.parentRunId` = '{parent_run_id}' and tags.trial_number = '{number}'"), max_results=1)
    return found[0].info.run_id if found else None


def read_checkpoint(path: Path) -> tuple[dict | None, str]:
    """The population checkpoint, or None and why its running trials must start again (said in the
    start line): none was written since they were asked, or it is another version's, or unreadable."""
    if not path.exists():
        return None, "asked after the last checkpoint"
    try:
        saved = torch.load(path, weights_only=False)
        version = saved.get("version")
    except Exception as exc:  # noqa: BLE001 -- a bad file costs the trials' progress, never the sweep
        return None, f"its checkpoint {path.name} could not be read: {one_line(exc)}"
    if version != CHECKPOINT_VERSION:
        return None, (f"its checkpoint {path.name} is of format {version}, written by another ganlab version; "
                      f"this one reads format {CHECKPOINT_VERSION}")
    return saved, "asked after the last checkpoint"


def _restore(path: Path, study: optuna.Study, slots: PopulationSlots, module: PopulationModule,
             client: MlflowClient) -> tuple[int, int, str]:
    """Rejoin every running population trial: from the checkpoint when it holds it, else from the start.
    Returns (trials continued from the checkpoint, trials started again, why those start again)."""
    trials = study.get_trials(deepcopy=False)  # a checkpoint's cohorts may hold trials that ended since
    running = population_trials_running(study)
    saved, why = read_checkpoint(path)
    continued: dict[int, DictConfig] = {}
    cohorts: list[Cohort] = []
    if saved is not None:
        module.iteration = saved["step"]
        for part in saved["cohorts"]:
            numbers = part["trials"]  # a trial over seeds holds one place per seed
            trial_cfgs = {n: slots.configs.compose(trials[n].user_attrs["overrides"]) for n in numbers}
            members = {n: {int(m.train.seed): m for m in trial_members(cfg)} for n, cfg in trial_cfgs.items()}
            seeds = part.get("seeds") or [int(trial_cfgs[n].train.seed) for n in numbers]  # one seed a trial before
            cohort = Cohort([members[n][seed] for n, seed in zip(numbers, seeds, strict=True)], keys=numbers)
            cohort.load_checkpoint_state(part)
            keep = [i for i, n in enumerate(numbers) if n in running and n in saved["members"]]
            for i in keep:
                continued[numbers[i]] = trial_cfgs[numbers[i]]
            assembled = Cohort.assemble([(cohort, keep)])
            if assembled is not None:
                cohorts.append(assembled)
        torch.set_rng_state(saved["rng"])
        for number, kept in saved["best"].items():
            slots.best[number] = _best_member(kept)
    module.set_cohorts(cohorts)
    for number, cfg in continued.items():
        member = saved["members"][number]
        slots.join(optuna.Trial(study, running[number]._trial_id), cfg, member["joined_at"],
                   resume_run_id=_child_run_id(client, slots.parent_run_id, number))
        live = slots.live[number]
        live.rows, live.frames, live.evaluated_at = member["rows"], member["frames"], member["evaluated_at"]
    again: dict[str, list[tuple[int, DictConfig]]] = {}
    for number, frozen in running.items():
        if number in continued:
            continue
        cfg = slots.configs.compose(frozen.user_attrs["overrides"])
        slots.join(optuna.Trial(study, frozen._trial_id), cfg, module.iteration,
                   resume_run_id=_child_run_id(client, slots.parent_run_id, number))
        for member in trial_members(cfg):
            again.setdefault(cohort_signature(member), []).append((number, member))
    slots.assemble(module, again)
    return len(continued), len({number for joining in again.values() for number, _ in joining}), why


def _best_member(saved: dict) -> BestMember:
    member = build_member(saved["cfg"])
    nets = {"generator.pt": member.generator, "discriminator.pt": member.discriminator,
            "generator_ema.pt": copy.deepcopy(member.generator)}
    for name, net in nets.items():
        net.load_state_dict(saved["nets"][name])
    return BestMember(saved["cfg"], saved["run_id"], nets, saved["rows"], saved["frames"],
                      saved.get("sample_seed", saved["cfg"].train.seed))  # absent before 2026-12-07


def largest_members(sweep: SweepDefinition) -> DictConfig:
    """The sweep's config with each numeric searched key at its largest value: a member's memory at its
    most (batch size, widths, a minibatch layer's kernels, R1 on), for the up-front memory check. Where
    that combination does not compose, the largest batch size alone."""
    largest = {p.key: max(p.extremes()) for p in sweep.space
               if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p.extremes())}
    fixed = [*sweep.base, *sweep.fixed]
    try:
        return compose_config([*fixed, *(f"{key}={value}" for key, value in largest.items())])
    except ConfigError:
        return compose_config([*fixed, *(f"{key}={value}" for key, value in largest.items()
                                         if key == "train.batch_size")])


def run_population_sweep(sweep: SweepDefinition, storage_url: str, tracking_uri: str, size: int,
                         threads: int, stale_after: int = 30) -> int:
    """Run (or resume) the study as a population of ``size`` members. Returns an exit code."""
    if not 1 <= size <= MAX_SEEDS:
        raise ConfigError(f"--population={size} must be between 1 and {MAX_SEEDS}")
    numbers = sum(p.type != "categorical" for p in sweep.space)
    generation = trials_at_once(size, sweep.seeds)  # a trial over seeds is that many members
    sweep = dataclasses.replace(sweep, sampler=for_population(sweep.sampler, generation, numbers))
    base = compose_config([*sweep.base, *sweep.fixed])
    if base.train.seeds > size:
        raise ConfigError(f"--population={size} holds fewer members than train.seeds={base.train.seeds}: a trial's "
                          f"seeds train together, so use --population {base.train.seeds} or more")
    check_population_fits(largest_members(sweep), size, "--population")
    accelerator = resolve_accelerator(base.train.accelerator)
    configure_runtime()
    quiet_optuna()
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    torch.set_num_threads(threads)
    shared = open_study(sweep, storage_url, stale_after)  # as process workers see it, with their heartbeats
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(shared)  # trials of dead process workers: failed, and retried here
    study, storage = open_sole_writer_study(sweep, storage_url)  # from here on this process alone writes it
    runs: TrialRuns | None = None
    module: PopulationModule | None = None
    parent_run_id: str | None = None
    try:  # a stop before training starts closes what is open, and says so in one line; acted on once set-up
        # ends (SIGTERM as Ctrl-C; never inside a store's call), so the parent run is never left RUNNING
        with stop_on_signals(), deferred_to_boundaries("stopping before training starts"):
            parent_run_id = open_parent_run(sweep, tracking_uri, storage_url)
            study.set_user_attr("mlflow_parent_run_id", parent_run_id)
            close_orphaned_child_runs(study, tracking_uri, parent_run_id)
            client = MlflowClient(tracking_uri)
            path = checkpoint_path(sweep, storage_url)
            runs = TrialRuns()
            budget = max(sweep.trials - budget_used(study), 0)
            slots = PopulationSlots(study, sweep, runs, size, parent_run_id, budget,
                                    best_artifacts=sweep.population["best_artifacts"],
                                    write_births=storage.write_births)
            module = PopulationModule([], threads=threads, cpu_pieces=accelerator == "cpu",
                                      cuda_graphs=sweep.population["cuda_graphs"])
            continued, again, why_again = _restore(path, study, slots, module, client)
            existing = budget_used(study)
            seeds = (f" ({slots.trial_slots} trial{'s' * (slots.trial_slots != 1)} of {slots.seeds} seeds at a time, "
                     f"each judged by their median {sweep.objective.metric})" if slots.seeds > 1 else "")
            print(f"ganlab sweep '{sweep.name}': {sweep.trials} trials ({existing} already in the study, "
                  f"{budget} to ask) as a population of {size}{seeds} on {accelerator} "
                  + (f"({threads} cohort worker processes)" if accelerator == "cpu" and threads > 1
                     else f"({threads} torch thread(s))")
                  + (f"; {continued} trials continue from the checkpoint at step {module.iteration}"
                     if continued else "")
                  + (f"; {again} running trials start again ({why_again})" if again else "")
                  + (_cmaes_generations(sweep.sampler, study) if sweep.sampler["name"] == "cmaes" else "")
                  + (f"; warm-up: {slots.warm_up} at a time until {slots.warm_up} have completed (the median pruner "
                     "compares with completed trials)" if slots.open_slots() < slots.trial_slots and budget > 0 else "")
                  + f"\n  storage {storage_url}\n  MLflow parent run {parent_run_id} in experiment "
                  f"'{sweep.experiment_name}' ({tracking_uri})\n  checkpoint {path}", flush=True)
            raise_pending_stop()
    except (KeyboardInterrupt, Stopped) as exc:
        if parent_run_id is None:  # not raised before the parent run exists (deferred); kept for safety
            raise
        return _interrupted_before_training(exc, study, sweep, tracking_uri, parent_run_id, runs, storage,
                                            module)
    last_save = [time.monotonic()]
    checkpoint_every_s = sweep.population["checkpoint_every_s"]

    def checkpoint(module: PopulationModule, force: bool = False) -> None:
        if force or slots.best_changed or time.monotonic() - last_save[0] >= checkpoint_every_s:
            runs.flush()  # what the checkpoint's members have logged is in MLflow before it says so
            storage.flush()  # ... and what they reported and the trials that ended are in the study
            save_checkpoint(path, module, slots)
            last_save[0], slots.best_changed = time.monotonic(), False

    slots.on_boundary = checkpoint
    start = time.perf_counter()
    loader = torch.utils.data.DataLoader(_Steps(), batch_size=None)
    # one process trains every trial: its system metrics (if asked for) go to the parent run
    system = start_system_metrics(parent_run_id, tracking_uri, resumed=True) if base.tracking.system_metrics else None
    try:
        if slots.live or budget > 0:
            # SIGTERM as Ctrl-C: checkpoint, child runs KILLED, exit 143; a first signal waits for the
            # end of the population step (every cohort at the same whole iteration; see population_module)
            with stop_on_signals(), deferred_to_boundaries():
                make_trainer(base, [slots]).fit(module, loader)
        module.close()  # the workers (fit's end closed them already unless there was nothing to train)
        slots.log_best_artifacts()
        runs.close()
        storage.close()
    except BaseException as exc:
        module.close()
        stop_system_metrics(system)
        return _stopped(exc, study, sweep, tracking_uri, parent_run_id, slots, module, runs, storage, path)
    stop_system_metrics(system)
    path.unlink(missing_ok=True)
    finish_parent_run(study, sweep, tracking_uri, parent_run_id)
    fit_s = time.perf_counter() - start
    busy = "" if module.workers_busy is None else (
        f"; the {threads} cohort worker processes trained {module.workers_busy:.0%} of the steps' wall time")
    print(f"ganlab: evaluation took {slots.eval_seconds:.1f} s of the {fit_s:.1f} s "
          f"({slots.eval_seconds / max(fit_s, 1e-9):.0%}), starting trials (ask, compose, build) "
          f"{slots.refill_seconds:.1f} s{busy}", flush=True)
    return print_results(study, sweep, fit_s, tracking_uri)


def _cmaes_generations(spec: dict, study: optuna.Study) -> str:
    """The start line's word on CMA-ES's generation size. Optuna stores CMA-ES's state in the study once
    a first generation has completed (``cma:optimizer:*`` on a trial), and a continued study then keeps
    the generation size it began with, whatever --population is now; before that, it takes this one."""
    stored = any(key.startswith("cma:optimizer") for t in study.get_trials(deepcopy=False) for key in t.system_attrs)
    if stored:
        return "; CMA-ES keeps the generation size this study began with"
    return f"; CMA-ES generations of {spec['popsize']} trials"


def _interrupted_before_training(exc: KeyboardInterrupt | Stopped, study, sweep, tracking_uri, parent_run_id,
                                 runs: TrialRuns | None, storage: SoleWriterStorage,
                                 module: PopulationModule | None) -> int:
    """Ctrl-C or SIGTERM while the population was being set up (trials reopened, the checkpoint read):
    nothing has trained, so nothing is checkpointed; the study keeps its trials as they were for the
    next run. Returns 128 + the signal's number."""
    closers = ([] if module is None else [module.close]) + ([] if runs is None else [runs.close]) + [storage.close]
    for close in closers:
        try:
            close()
        except Exception:  # noqa: BLE001 -- the parent run still gets closed
            pass
    parent = close_stopped_parent_run(study, sweep, tracking_uri, parent_run_id)
    stop = as_stop(exc)
    print(f"ganlab sweep: stopped by {stop.name} before training started; the study's trials are as they "
          f"were{parent}; run the same command again to continue", file=sys.stderr)
    return stop.exit_code


def _stopped(exc: BaseException, study, sweep, tracking_uri, parent_run_id, slots: PopulationSlots,
             module: PopulationModule, runs: TrialRuns, storage: SoleWriterStorage, path: Path) -> int:
    """Interrupted or crashed: checkpoint the members, close their child runs KILLED (the trials stay
    RUNNING in the study: the same command continues them), close the parent run. A step that did not
    end whole (a worker process died, a second signal) is not checkpointed: its cohorts may be part-way
    through an iteration; the trials continue from the last checkpoint instead."""
    interrupted = isinstance(exc, KeyboardInterrupt | SystemExit | Stopped)
    reason = (f"stopped by {exc.name}" if isinstance(exc, Stopped) else "interrupted" if interrupted
              else one_line(exc))
    saved = True
    try:
        storage.flush()  # the reports and results so far are in the study before the checkpoint says so
        if module.mid_step:
            saved = False
        elif slots.live and module.cohorts:
            save_checkpoint(path, module, slots)
    except Exception:  # noqa: BLE001 -- a full disk must not hide the first error
        saved = False
    try:  # the runs' thread may have failed (the fault that stopped the sweep): their runs are reopened later
        for number in list(slots.live):
            runs.call(number, "set_tag", "trial_state", "interrupted")  # "running" again when continued
            runs.call(number, "set_tag", "stopped_reason",
                      f"population stopped ({reason}); run the sweep again to continue")
            runs.finish(number, "KILLED")
    except Exception:  # noqa: BLE001 -- the first error is the one to report
        pass
    for close in (runs.close, storage.close):
        try:
            close()
        except Exception:  # noqa: BLE001
            pass
    parent = close_stopped_parent_run(study, sweep, tracking_uri, parent_run_id)
    where = f"; checkpoint {path}" if saved and slots.live else ""
    if module.mid_step and slots.live:
        where = "; the step in progress did not end whole, so they continue from the last checkpoint"
    print(f"ganlab sweep: {reason}; {len(slots.live)} trials stay running in the study{where}{parent}; "
          "run the same command again to continue them", file=sys.stderr)
    return exc.exit_code if isinstance(exc, Stopped) else 130 if interrupted else 1


class _Steps(torch.utils.data.IterableDataset):
    """Population steps without end: the slots stop the trainer when the study is done."""

    def __iter__(self):
        return iter(itertools.count())
