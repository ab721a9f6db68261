"""The sweep driver: opens (or resumes) the study and its MLflow parent run, starts the worker
processes that share the study, and prints the summary. ``python -m ganlab.sweep`` calls it."""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
import time
import warnings


def _exit_with_parent(parent_pid: int) -> None:
    """A worker whose driver was killed stops too (its trial is failed later by the heartbeat check)."""
    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(1.0)

    threading.Thread(target=watch, daemon=True).start()


def _worker(index: int, sweep, storage_url: str, tracking_uri: str, parent_run_id: str, parent_pid: int,
            threads: int, stale_after: int) -> None:
    _exit_with_parent(parent_pid)
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    import optuna
    import torch

    from ganlab.errors import ConfigError
    from ganlab.runtime import configure_runtime
    from ganlab.sweeping.study import open_study
    from ganlab.sweeping.summary import STARTED, best_trials, counts, started
    from ganlab.sweeping.trial import TrialObjective
    from ganlab.training.runner import TrainingFailed

    configure_runtime()
    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seeded = dict(sweep.sampler)
    seeded["seed"] = int(seeded.get("seed", 0)) + index  # distinct seeds: workers must not suggest alike
    sweep.sampler = seeded
    study = open_study(sweep, storage_url, stale_after)
    if started(study) >= sweep.trials:
        return
    objective = TrialObjective(sweep, parent_run_id)

    def progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        n = counts(study)
        done = sum(n.get(k, 0) for k in ("complete", "pruned", "fail"))
        best = best_trials(study)
        best_text = f"best {best[0].values[0]:.4g}" if best and len(study.directions) == 1 else ""
        value = (" ".join(f"{v:.4g}" for v in trial.values) if trial.values else
                 trial.user_attrs.get("failure_reason", "")[:60])
        params = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
        print(f"[sweep {sweep.name}] trial {trial.number:>3} {trial.state.name:<8} {value}  | {params}  "
              f"({done}/{sweep.trials} done, {best_text})", flush=True)

    try:
        study.optimize(objective, catch=(TrainingFailed, ConfigError), gc_after_trial=True,
                       callbacks=[optuna.study.MaxTrialsCallback(sweep.trials, states=STARTED), progress])
    except KeyboardInterrupt:  # Ctrl-C reaches every worker: the driver reports it, once
        sys.exit(130)


def run_sweep(sweep, storage_url: str, tracking_uri: str, workers: int, threads: int = 1,
              stale_after: int = 30) -> int:
    """Open (or resume) the study and its parent run, run the workers, summarise. Returns an exit code."""
    import optuna

    from ganlab.runtime import configure_runtime
    from ganlab.sweeping.study import enqueue_grid, open_study
    from ganlab.sweeping.summary import (
        close_orphaned_child_runs,
        finish_parent_run,
        open_parent_run,
        started,
    )

    configure_runtime()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(sweep, storage_url, stale_after)
    enqueue_grid(study, sweep)
    parent_run_id = open_parent_run(sweep, tracking_uri, storage_url)
    study.set_user_attr("mlflow_parent_run_id", parent_run_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    close_orphaned_child_runs(study, tracking_uri, parent_run_id)
    existing = started(study)
    remaining = max(sweep.trials - existing, 0)
    print(f"ganlab sweep '{sweep.name}': {sweep.trials} trials ({existing} already in the study, {remaining} to run) "
          f"with {min(workers, remaining) if remaining else 0} worker(s)\n  storage {storage_url}\n"
          f"  MLflow parent run {parent_run_id} in experiment '{sweep.experiment_name}' ({tracking_uri})", flush=True)
    start = time.perf_counter()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(i, sweep, storage_url, tracking_uri, parent_run_id, os.getpid(),
                                               threads, stale_after), daemon=False)
             for i in range(min(workers, remaining))]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.join(timeout=30)
        finish_parent_run(study, sweep, tracking_uri, parent_run_id, status="KILLED")
        print("ganlab sweep: interrupted; run the same command again to continue the study", file=sys.stderr)
        return 130
    finish_parent_run(study, sweep, tracking_uri, parent_run_id)
    return print_results(study, sweep, time.perf_counter() - start)


def print_results(study, sweep, seconds: float) -> int:
    """The end of a sweep: the counts, the best trials as a table, how to re-run the best. Returns an exit code."""
    from ganlab.sweeping.summary import best_trials, counts, rerun_command

    n = counts(study)
    print(f"\nganlab sweep '{sweep.name}' done in {seconds:.0f} s: "
          + ", ".join(f"{v} {k}" for k, v in sorted(n.items())))
    best = best_trials(study)
    if not best:
        print("no trial completed; see the failure reasons above and in MLflow")
        return 1
    names = [o.metric for o in sweep.objectives]
    print("\n| rank | trial | " + " | ".join(names) + " | " + " | ".join(p.key for p in sweep.space) + " |")
    print("|---" * (2 + len(names) + len(sweep.space)) + "|")
    for rank, t in enumerate(best[:5], 1):
        params = " | ".join(_fmt(t.params.get(p.key)) for p in sweep.space)
        print(f"| {rank} | {t.number} | " + " | ".join(_fmt(v) for v in t.values) + f" | {params} |")
    print(f"\nre-run the best trial:\n  {rerun_command(best[0])}")
    return 0


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
