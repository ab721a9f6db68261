"""Image benchmark (S2, S5) on scikit-learn's 8x8 digits: S2's MLP GAN, S5's dropout MLP GAN and
ganlab's digits recipe, several seeds each: the Frechet distance (classifier features, against the
held-out digits), the class KL and wall time per run; plus the floor (real training digits scored
like a generator) and the ceiling (each experiment's untrained generator, its iteration-0 score).

Gap closed = (ceiling - FD) / (ceiling - floor): 1 is as close to the held-out digits as real
digits are. Runs go two at a time, one torch thread each, on a throw-away MLflow store.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

EXPERIMENTS = ["goodfellow_digits", "ganotes_digits", "ganlab_digits"]
TARGET_GAP, TARGET_WALL_S = 0.90, 600.0  # the target for ganlab's recipe


def _one(job: tuple[str, int, str]) -> dict:
    experiment, seed, uri = job
    os.environ["MLFLOW_TRACKING_URI"] = uri
    from ganlab.config.compose import compose_config
    from ganlab.training.runner import TrainingFailed, run_training

    start = time.perf_counter()
    try:
        result = run_training(compose_config([f"experiment={experiment}", f"train.seed={seed}"]), verbose=False)
        row = {"fd": result.metrics["frechet_distance"], "class_kl": result.metrics["class_kl"],
               "fd_untrained": result.history[0]["frechet_distance"], "wall_s": result.wall_s,
               "best_fd": min(r["frechet_distance"] for r in result.history), "status": "FINISHED"}
    except TrainingFailed as exc:
        row = {"fd": math.nan, "class_kl": math.nan, "fd_untrained": math.nan, "best_fd": math.nan,
               "wall_s": time.perf_counter() - start, "status": f"FAILED: {exc.reason}"}
    print(f"  {experiment:<18} seed {seed}: FD {row['fd']:.2f} (untrained {row['fd_untrained']:.2f})  "
          f"class-KL {row['class_kl']:.3f}  {row['wall_s']:.0f} s  {row['status'][:40]}", flush=True)
    return {"experiment": experiment, "seed": seed, **row}


def floor(eval_samples: int = 2000, repeats: int = 5) -> dict:
    """Real training digits scored as a generator would be (same count, drawn with replacement as
    the evaluation set is): the best any generator can expect."""
    import torch

    from ganlab.config.compose import compose_config
    from ganlab.data.targets import build_target
    from ganlab.metrics.metrics_images import image_quality

    digits = build_target(compose_config(["data=digits"]).data)
    quality = image_quality(digits)
    values = []
    for seed in range(repeats):
        real = digits.sample(eval_samples, generator=torch.Generator().manual_seed(seed)).numpy()
        values.append(quality(real)["frechet_distance"])
    return {"fd": statistics.median(values), "runs": values, "classifier_accuracy": quality.accuracy}


def run(experiments: list[str] | None = None, seeds: int = 3, workers: int = 2) -> dict:
    experiments = experiments or EXPERIMENTS
    real = floor()
    print(f"  floor (real training digits): FD {real['fd']:.2f}; classifier held-out accuracy "
          f"{real['classifier_accuracy']:.1%}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        jobs = [(e, s, uri) for e in experiments for s in range(seeds)]
        from mlflow.tracking import MlflowClient

        MlflowClient(uri).search_experiments()  # create the store once, before two workers race to
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            rows = list(pool.map(_one, jobs))
    summary = {}
    for e in experiments:
        mine = [r for r in rows if r["experiment"] == e and r["status"] == "FINISHED"]
        entry = {"seeds": len(mine), "failed": sum(r["experiment"] == e for r in rows) - len(mine)}
        for key in ("fd", "class_kl", "fd_untrained", "best_fd", "wall_s"):
            values = [r[key] for r in mine]
            entry[key] = statistics.median(values) if values else math.nan
        entry["max_wall_s"] = max((r["wall_s"] for r in mine), default=math.nan)
        gaps = [(r["fd_untrained"] - r["fd"]) / (r["fd_untrained"] - real["fd"]) for r in mine]
        entry["gap_closed"] = statistics.median(gaps) if gaps else math.nan
        entry["min_gap_closed"] = min(gaps, default=math.nan)
        summary[e] = entry
    best = summary.get("ganlab_digits")
    if best:
        best["meets_targets"] = bool(best["min_gap_closed"] >= TARGET_GAP and best["max_wall_s"] < TARGET_WALL_S)
    return {"runs": rows, "summary": summary, "floor": real, "workers": workers,
            "targets_for_ganlab": {"gap_closed": TARGET_GAP, "wall_s": TARGET_WALL_S}}


def table(result: dict) -> str:
    lines = ["| experiment | seeds | median FD | untrained FD | gap closed (min) | class KL | median wall s |",
             "|---|---|---|---|---|---|---|"]
    for name, s in result["summary"].items():
        lines.append(f"| {name} | {s['seeds']} | {s['fd']:.2f} | {s['fd_untrained']:.1f} | "
                     f"{s['gap_closed']:.1%} ({s['min_gap_closed']:.1%}) | {s['class_kl']:.3f} | "
                     f"{s['wall_s']:.0f} (max {s['max_wall_s']:.0f}) |")
    lines.append(f"| real training digits (floor) | {len(result['floor']['runs'])} draws | "
                 f"{result['floor']['fd']:.2f} | | 100 % | | |")
    return "\n".join(lines)
