"""Whole-process start-up and overhead, measured as a user meets them (each command a fresh process):

- start-up: the wall time of ``python -m ganlab.train train.iterations=1`` (compose, validate,
  build, one iteration, two evaluations and plots, MLflow run, final artifacts) against
  ``python -c "import torch, pytorch_lightning"``; target ratio <= 1.6.
- overhead: ``python -m ganlab.train experiment=devnag_moments train.iterations=1000`` against
  ``benchmarks/bare_devnag.py 1000``, the same training as a bare PyTorch script; target speed
  ratio (bare wall / ganlab wall) >= 0.9.

Commands alternate within each repeat so machine noise hits both alike; the ratios are of medians.
Every run logs to a throw-away MLflow store that already exists (as a user's ``mlruns/`` does after
the first run), with one torch thread.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _wall(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {proc.stderr[-500:]}")
    return wall


def run(repeats: int = 5, iterations: int = 1000) -> dict:
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db", "OMP_NUM_THREADS": "1"}
        train = [py, "-m", "ganlab.train"]
        _wall([*train, "train.iterations=1"], env)  # creates the store once, warms the file cache
        commands = {
            "import_torch_lightning": [py, "-c", "import torch, pytorch_lightning"],
            "ganlab_1_iteration": [*train, "train.iterations=1"],
            "ganlab_devnag_moments": [*train, "experiment=devnag_moments", f"train.iterations={iterations}"],
            "bare_devnag_moments": [py, str(ROOT / "benchmarks" / "bare_devnag.py"), str(iterations)],
        }
        walls: dict[str, list[float]] = {name: [] for name in commands}
        for i in range(repeats):
            for name, command in commands.items():
                walls[name].append(_wall(command, env))
            print(f"  startup repeat {i + 1}/{repeats}: " + "  ".join(f"{k} {v[-1]:.2f} s" for k, v in walls.items()),
                  flush=True)
    med = {name: statistics.median(values) for name, values in walls.items()}
    return {
        "repeats": repeats, "iterations": iterations, "walls_s": walls, "median_s": med,
        "startup_ratio": med["ganlab_1_iteration"] / med["import_torch_lightning"], "startup_target": 1.6,
        "speed_ratio": med["bare_devnag_moments"] / med["ganlab_devnag_moments"], "speed_target": 0.9,
    }


def table(res: dict) -> str:
    m = res["median_s"]
    return "\n".join([
        "| command | median wall s |", "|---|---|",
        f"| python -c 'import torch, pytorch_lightning' | {m['import_torch_lightning']:.2f} |",
        f"| python -m ganlab.train train.iterations=1 | {m['ganlab_1_iteration']:.2f} |",
        f"| python -m ganlab.train experiment=devnag_moments train.iterations={res['iterations']} | "
        f"{m['ganlab_devnag_moments']:.2f} |",
        f"| python benchmarks/bare_devnag.py {res['iterations']} | {m['bare_devnag_moments']:.2f} |",
        "",
        f"start-up ratio {res['startup_ratio']:.2f} (target <= {res['startup_target']}); "
        f"whole-process speed ratio {res['speed_ratio']:.3f} (target >= {res['speed_target']})",
    ])
