"""What judging a config by N seeds costs: the whole-process wall of the default recipe with
``train.seeds=N`` (N seeds trained together, one process, one thread) against one seed, as a trial of a
sweep with ``train.seeds=N`` in its fixed list pays it. Commands alternate within each repeat so
machine noise hits every N alike; the ratios are of medians.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile

from benchmarks.startup import _wall

COUNTS = (1, 3, 8)


def run(repeats: int = 3, counts: tuple[int, ...] = COUNTS) -> dict:
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db", "OMP_NUM_THREADS": "1"}
        train = [py, "-m", "ganlab.train", "train.threads=1"]
        _wall([*train, "train.iterations=1"], env)  # creates the store once, warms the file cache
        walls: dict[int, list[float]] = {n: [] for n in counts}
        for i in range(repeats):
            for n in counts:
                walls[n].append(_wall([*train, f"train.seeds={n}"], env))
            print(f"  seeds repeat {i + 1}/{repeats}: " + "  ".join(f"{n} seed(s) {v[-1]:.1f} s"
                                                                    for n, v in walls.items()), flush=True)
    med = {n: statistics.median(v) for n, v in walls.items()}
    one = med[counts[0]]
    return {"repeats": repeats, "command": "python -m ganlab.train train.threads=1 train.seeds=N (default recipe)",
            "walls_s": {str(n): v for n, v in walls.items()}, "median_s": {str(n): m for n, m in med.items()},
            "ratio_to_one_seed": {str(n): m / one for n, m in med.items()},
            "seconds_per_seed": {str(n): m / n for n, m in med.items()}}


def table(res: dict) -> str:
    lines = ["| seeds | median wall s | vs one seed | s per seed |", "|---|---|---|---|"]
    for n, wall in res["median_s"].items():
        lines.append(f"| {n} | {wall:.1f} | {res['ratio_to_one_seed'][n]:.2f}x | {res['seconds_per_seed'][n]:.1f} |")
    return "\n".join(lines)
