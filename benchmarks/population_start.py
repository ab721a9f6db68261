"""Starting a population sweep's trials: what filling N empty slots costs before any member trains.

A population sweep asks, writes, composes and builds each of its trials on the training thread; with
1,024 trials that was the largest fixed cost of a GPU sweep (about 90 s of start-up on the H200 run).
This measures one refill of N slots as the sweep driver does it (warm-up off, so every slot opens at
once), in the parts that ``PopulationSlots.refill`` runs, plus the wait for the child runs that the
MLflow thread creates meanwhile. Each repeat is a fresh study and MLflow store in a temporary folder.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from pathlib import Path

import optuna

PARTS = ("ask", "write", "compose", "assemble", "refill", "mlflow_runs")


def _timed(parts: dict[str, float], name: str, fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            parts[name] += time.perf_counter() - start
    return wrapper


def _once(trials: int, tmp: Path) -> dict[str, float]:
    from ganlab.population.population_module import PopulationModule
    from ganlab.sweeping.definition import load
    from ganlab.sweeping.population_slots import PopulationSlots
    from ganlab.sweeping.study import open_sole_writer_study
    from ganlab.sweeping.summary import open_parent_run
    from ganlab.sweeping.trial_runs import TrialRuns

    storage_url, tracking_uri = f"sqlite:///{tmp}/optuna.db", f"sqlite:///{tmp}/mlflow.db"
    sweep = load("default", trials=trials, storage=storage_url)
    study, storage = open_sole_writer_study(sweep, storage_url)
    parent = open_parent_run(sweep, tracking_uri, storage_url)
    runs = TrialRuns()
    parts = dict.fromkeys(PARTS, 0.0)
    slots = PopulationSlots(study, sweep, runs, trials, parent, trials, verbose=False,
                            write_births=_timed(parts, "write", storage.write_births))
    slots.warm_up = 0
    slots._ask = _timed(parts, "ask", slots._ask)
    slots.configs.compose = _timed(parts, "compose", slots.configs.compose)
    slots.assemble = _timed(parts, "assemble", slots.assemble)
    module = PopulationModule([], threads=1, cpu_pieces=True)
    start = time.perf_counter()
    slots.refill(module)
    parts["refill"] = time.perf_counter() - start
    start = time.perf_counter()
    runs.flush()
    parts["mlflow_runs"] = time.perf_counter() - start
    assert len(slots.live) == trials and sum(len(c.keys) for c in module.cohorts) == trials
    runs.close()
    storage.close()
    return parts


def run(trials: int = 1024, repeats: int = 3) -> dict:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    for r in range(repeats):
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parts = _once(trials, Path(tmp))
        rows.append(parts)
        print(f"  repeat {r + 1}/{repeats}: refill {parts['refill']:.1f} s, then MLflow runs "
              f"{parts['mlflow_runs']:.1f} s", flush=True)
    median = {p: statistics.median(row[p] for row in rows) for p in PARTS}
    return {"sweep": "default", "trials": trials, "repeats": repeats, "runs": rows, "median_s": median,
            "per_trial_ms": {p: 1000 * v / trials for p, v in median.items()}}


def table(res: dict) -> str:
    names = {"ask": "ask (sampler)", "write": "write the births to the study", "compose": "compose the configs",
             "assemble": "build and stack the members", "refill": "refill, in all",
             "mlflow_runs": "then wait for the child runs (MLflow thread)"}
    lines = [f"| part (median of {res['repeats']}, {res['trials']} trials) | s | ms per trial |", "|---|---|---|"]
    lines += [f"| {names[p]} | {res['median_s'][p]:.1f} | {res['per_trial_ms'][p]:.1f} |" for p in PARTS]
    return "\n".join(lines)
