"""Sweep throughput and pruning, on the default sweep (20 trials):

(a) 1 worker vs 2 workers, pruning off: trials per hour and their ratio (target >= 1.7 on 2 cores).
    Both run the same 20 parameter sets (drawn once from the sweep's space by a seeded random
    sampler and enqueued), so the ratio measures parallelism, not which trials TPE happened to pick:
    trial cost varies 10x across the space (batch 256 to 2048, 1 to 3 D steps).
(b) the default sweep as defined (TPE), 2 workers, with its median pruner vs without: wall time
    and best KS (target: >= 30 % less time, best value no more than 10 % worse).
Each configuration is a fresh study on a throw-away storage and MLflow store, run as a user would
(`python -m ganlab.sweep`), so process start-up and MLflow logging are included.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _fixed_trials(trials: int, seed: int = 0) -> list[dict]:
    """``trials`` parameter sets drawn from the default sweep's space by a seeded random sampler."""
    from ganlab.sweeping.definition import load

    sweep = load("default")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    sets = []
    for _ in range(trials):
        trial = study.ask()
        sets.append(sweep.suggest(trial))
        study.tell(trial, 0.0)
    return sets


def _run(workers: int, pruning: bool, trials: int, enqueue: list[dict] | None = None) -> dict:
    spec = yaml.safe_load((ROOT / "sweeps" / "default.yaml").read_text())
    spec["trials"] = trials
    if not pruning:
        spec["pruner"] = {"name": "none"}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench_default.yaml"
        path.write_text(yaml.safe_dump(spec))
        storage = f"sqlite:///{tmp}/optuna.db"
        if enqueue:
            from ganlab.sweeping.definition import load
            from ganlab.sweeping.study import open_study

            study = open_study(load(str(path), storage=storage), storage)
            for params in enqueue:
                study.enqueue_trial(params)
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "ganlab.sweep", str(path), "--workers", str(workers),
                               "--storage", storage], cwd=tmp, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"sweep failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        study = optuna.load_study(study_name="bench_default", storage=storage)
        states = [t.state.name for t in study.trials]
        best = min(t.value for t in study.trials if t.state.name == "COMPLETE")
    row = {"workers": workers, "pruning": pruning, "sampler": "fixed set" if enqueue else "tpe",
           "trials": len(states), "complete": states.count("COMPLETE"),
           "pruned": states.count("PRUNED"), "failed": states.count("FAIL"), "wall_s": wall,
           "trials_per_hour": 3600 * len(states) / wall, "best_ks": best}
    print(f"  {row['sampler']:<9}, workers {workers}, pruning {'on ' if pruning else 'off'}: {row['trials']} trials "
          f"({row['pruned']} pruned) in {wall:.0f} s = {row['trials_per_hour']:.0f} trials/h, best KS {best:.4f}",
          flush=True)
    return row


def run(trials: int = 20) -> dict:
    fixed = _fixed_trials(trials)
    one = _run(1, pruning=False, trials=trials, enqueue=fixed)
    two = _run(2, pruning=False, trials=trials, enqueue=fixed)
    tpe = _run(2, pruning=False, trials=trials)
    pruned = _run(2, pruning=True, trials=trials)
    return {
        "trials": trials, "runs": [one, two, tpe, pruned],
        "speedup_2_workers": two["trials_per_hour"] / one["trials_per_hour"], "target_speedup": 1.7,
        "pruning_time_saving": 1 - pruned["wall_s"] / tpe["wall_s"], "target_time_saving": 0.30,
        "pruning_best_ratio": pruned["best_ks"] / tpe["best_ks"], "target_best_ratio_max": 1.10,
        "best_ks_found": min(r["best_ks"] for r in (one, two, tpe, pruned)),
        "longest_sweep_s": max(r["wall_s"] for r in (one, two, tpe, pruned)),
    }
