"""Mode-collapse benchmark (PacGAN Table 1 protocol): ring8 and grid25, plain GAN vs PacGAN4 vs
ganlab's recipe, several seeds each; mean and standard error of modes captured, high-quality share
and reverse KL (on 2,500 samples from fixed noise), and wall time per run.

Runs go two at a time (one torch thread each) on a throw-away MLflow store, so each run's wall
time is what it takes on one of two busy cores.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

EXPERIMENTS = ["ring8_gan", "ring8_pacgan", "ring8_ganlab", "grid25_gan", "grid25_pacgan", "grid25_ganlab"]
# PacGAN (Lin et al., NeurIPS 2018), Table 1: mean of 10 runs, ~400k steps, 400-unit networks
PAPER = {
    "ring8": {"GAN": (6.3, 98.2, 0.45), "PacGAN4": (7.8, 95.9, 0.07)},
    "grid25": {"GAN": (17.3, 94.8, 0.70), "PacGAN4": (24.8, 93.6, 0.04)},
}
# the targets for ganlab's recipe: modes >=, HQ % >=, reverse KL <=, wall s <
TARGETS = {"ring8": (7.9, 97.0, 0.05, 300.0), "grid25": (24.8, 95.0, 0.04, 300.0)}
METRICS = ("modes", "hq_share", "reverse_kl", "wall_s")


def _one(job: tuple[str, int, str, list[str]]) -> dict:
    experiment, seed, uri, extra = job
    os.environ["MLFLOW_TRACKING_URI"] = uri
    from ganlab.config.compose import compose_config
    from ganlab.training.runner import TrainingFailed, run_training

    start = time.perf_counter()
    try:
        result = run_training(compose_config([f"experiment={experiment}", f"train.seed={seed}", *extra]),
                              verbose=False)
        m = result.metrics
        row = {"modes": m["modes"], "hq_share": m["hq_share"], "reverse_kl": m["reverse_kl"],
               "sliced_w1": m["sliced_w1"], "wall_s": result.wall_s, "status": "FINISHED"}
    except TrainingFailed as exc:
        row = {"modes": 0.0, "hq_share": 0.0, "reverse_kl": float("nan"), "sliced_w1": float("nan"),
               "wall_s": time.perf_counter() - start, "status": f"FAILED: {exc.reason}"}
    print(f"  {experiment:<14} seed {seed}: modes {row['modes']:.0f}  HQ {row['hq_share']:.1%}  "
          f"rev-KL {row['reverse_kl']:.3f}  {row['wall_s']:.0f} s  {row['status'][:40]}", flush=True)
    return {"experiment": experiment, "seed": seed, **row}


def _mean_se(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return float("nan"), float("nan")
    mean = statistics.fmean(finite)
    se = statistics.stdev(finite) / math.sqrt(len(finite)) if len(finite) > 1 else float("nan")
    return mean, se


def run(experiments: list[str] | None = None, seeds: int = 5, workers: int = 2,
        extra: list[str] | None = None, pacgan_seeds: int = 3) -> dict:
    """``seeds`` runs of each plain GAN and ganlab recipe; PacGAN4, a reference point between them,
    gets ``pacgan_seeds`` to keep the bench within about half an hour on 2 cores."""
    experiments = experiments or EXPERIMENTS
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        jobs = [(e, s, uri, list(extra or [])) for e in experiments
                for s in range(pacgan_seeds if e.endswith("_pacgan") else seeds)]
        jobs.sort(key=lambda j: j[0].endswith("_ganlab"), reverse=True)  # the slowest first
        _one((experiments[0], 0, uri, ["train.iterations=2"]))  # create the store once, before workers race
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            rows = list(pool.map(_one, jobs))
    summary = {}
    for e in experiments:
        mine = [r for r in rows if r["experiment"] == e]
        entry = {"seeds": len(mine), "failed": sum(r["status"] != "FINISHED" for r in mine)}
        for key in METRICS:
            entry[key], entry[f"{key}_se"] = _mean_se([r[key] for r in mine])
        entry["max_wall_s"] = max(r["wall_s"] for r in mine)
        target = e.split("_")[0]
        if e.endswith("_ganlab") and target in TARGETS:
            modes, hq, kl, wall = TARGETS[target]
            entry["meets_targets"] = bool(entry["modes"] >= modes and entry["hq_share"] * 100 >= hq
                                          and entry["reverse_kl"] <= kl and entry["max_wall_s"] < wall)
        summary[e] = entry
    return {"runs": rows, "summary": summary, "paper_table_1": PAPER, "targets_for_ganlab": TARGETS,
            "workers": workers}


def table(result: dict) -> str:
    """A markdown table: ganlab's rows (mean +- SE) and the paper's rows for comparison."""
    lines = ["| run | seeds | modes | HQ % | reverse KL | wall s per run | meets target |",
             "|---|---|---|---|---|---|---|"]
    for name, s in result["summary"].items():
        meets = {True: "yes", False: "no"}.get(s.get("meets_targets"), "")
        lines.append(f"| {name} | {s['seeds']} | {s['modes']:.2f} ± {s['modes_se']:.2f} | "
                     f"{100 * s['hq_share']:.1f} ± {100 * s['hq_share_se']:.1f} | "
                     f"{s['reverse_kl']:.3f} ± {s['reverse_kl_se']:.3f} | "
                     f"{s['wall_s']:.0f} (max {s['max_wall_s']:.0f}) | {meets} |")
    for target, rows in result["paper_table_1"].items():
        for method, (modes, hq, kl) in rows.items():
            lines.append(f"| paper: {method} on {target} | 10 | {modes} | {hq} | {kl} | | |")
    return "\n".join(lines)
