"""The recipe matrix: every data family x model, as a user types it (`python -m ganlab.train data=X
model=Y`, nothing else), a few seeds, whole-process wall and the family's quality metric.

Held-out inputs, never used to tune the recipes: a 1D mixture with unequal weights and widths, and
pictures drawn here at run time (a thin spiral, text, blobs of unequal brightness, a ring of five
dots) instead of the shipped ones. Runs go two at a time (one torch thread each) on a throw-away
MLflow store; metrics are read back from the finished runs.
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["quantile", "vanilla", "minibatch", "devnag"]
HELD_OUT_MIXTURE = ["data=mixture_1d", "data.weights=[0.2,0.5,0.3]", "data.means=[-3.0,0.5,3.0]",
                    "data.stds=[0.3,0.8,0.5]"]
PICTURES = ("spiral", "text", "unequal_blobs", "ring5")
# the targets per family: metric -> (bound, "<=" or ">="), and the whole-process wall bound
TARGETS = {
    "gaussian_1d": ({"ks": (0.03, "<=")}, 90.0),
    "mixture_1d": ({"ks": (0.02, "<=")}, 60.0),
    "ring8": ({"modes": (8, ">="), "hq_share": (0.97, ">="), "reverse_kl": (0.02, "<=")}, 120.0),
    "grid25": ({"modes": (25, ">="), "hq_share": (0.95, ">=")}, 180.0),
    "picture": ({"off_density": (0.10, "<="), "sliced_w1": (0.01, "<=")}, 150.0),
}


def draw_picture(kind: str, path: Path, side: int = 256) -> Path:
    """A held-out grayscale picture (white = mass), drawn with Pillow."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    image = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(image)
    if kind == "spiral":
        t = np.linspace(0.0, 4.0 * math.pi, 800)
        r = 0.05 + 0.4 * t / t[-1]
        points = [(side * (0.5 + x), side * (0.5 + y)) for x, y in zip(r * np.cos(t), r * np.sin(t), strict=True)]
        draw.line(points, fill=255, width=3)
    elif kind == "text":
        font = ImageFont.load_default(size=side // 4)
        draw.text((side * 0.08, side * 0.35), "GAN", fill=255, font=font)
    elif kind == "unequal_blobs":
        for (cx, cy, radius, level) in ((0.3, 0.3, 0.12, 255), (0.7, 0.35, 0.08, 120), (0.5, 0.75, 0.1, 60)):
            draw.ellipse([side * (cx - radius), side * (cy - radius), side * (cx + radius), side * (cy + radius)],
                         fill=level)
        image = image.filter(ImageFilter.GaussianBlur(side / 64))
    elif kind == "ring5":
        for k in range(5):
            angle = 2 * math.pi * k / 5
            cx, cy, radius = 0.5 + 0.3 * math.cos(angle), 0.5 + 0.3 * math.sin(angle), 0.04
            draw.ellipse([side * (cx - radius), side * (cy - radius), side * (cx + radius), side * (cy + radius)],
                         fill=255)
    else:
        raise ValueError(f"unknown picture {kind!r}; allowed: {', '.join(PICTURES)}")
    image.save(path)
    return path


def cells(pictures_dir: Path) -> list[tuple[str, str, list[str]]]:
    """(family, label, overrides) for each data input; each is crossed with every model."""
    out = [("gaussian_1d", "gaussian_1d", []), ("mixture_1d", "mixture_1d (held out)", HELD_OUT_MIXTURE),
           ("ring8", "ring8", ["data=ring8"]), ("grid25", "grid25", ["data=grid25"])]
    for kind in PICTURES:
        path = draw_picture(kind, pictures_dir / f"{kind}.png")
        out.append(("picture", f"picture {kind}", ["data=image_density", f"data.path={path}"]))
    return out


def _run_cli(job: tuple[str, str, str, list[str], int, str]) -> dict:
    family, label, model, overrides, seed, uri = job
    command = [sys.executable, "-m", "ganlab.train", *overrides, f"model={model}", f"train.seed={seed}",
               f"tracking.uri={uri}", "tracking.experiment=matrix"]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - start
    row = {"family": family, "data": label, "model": model, "seed": seed, "wall_s": wall, "rc": proc.returncode}
    if proc.returncode != 0:
        row["error"] = (proc.stderr.strip().splitlines() or ["?"])[-1][:300]
    else:
        row["run_id"] = _run_id(proc.stdout)
        row["recipe"] = _recipe(proc.stdout)
    print(f"  {label:<24} {model:<10} seed {seed}: rc {proc.returncode}, {wall:.0f} s {row.get('error', '')}",
          flush=True)
    return row


def _run_id(stdout: str) -> str | None:
    for word in stdout.split():
        if len(word) == 32 and all(c in "0123456789abcdef" for c in word):
            return word
    return None


def _recipe(stdout: str) -> str:
    first = stdout.splitlines()[0] if stdout else ""
    return first.split("recipe ", 1)[1].rstrip(")") if "recipe " in first else ""


def _metrics(uri: str, rows: list[dict]) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    for row in rows:
        if row.get("run_id"):
            run = client.get_run(row["run_id"])
            row["status"] = run.info.status
            row["metrics"] = dict(run.data.metrics)


def _meets(family: str, metrics: dict[str, float], wall: float) -> bool:
    bounds, wall_bound = TARGETS[family]
    ok = wall <= wall_bound
    for key, (bound, sense) in bounds.items():
        value = metrics.get(key, float("nan"))
        ok &= (value <= bound) if sense == "<=" else (value >= bound)
    return bool(ok)


def run(seeds: int = 3, workers: int = 2, models: list[str] | None = None, only: list[str] | None = None) -> dict:
    models = models or MODELS
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        grid = [c for c in cells(Path(tmp)) if not only or c[0] in only or c[1] in only]
        _run_cli(("gaussian_1d", "warm-up", "quantile", ["train.iterations=1"], 0, uri))  # creates the store
        jobs = [(family, label, model, overrides, seed, uri)
                for family, label, overrides in grid for model in models for seed in range(seeds)]
        with ThreadPoolExecutor(workers) as pool:
            rows = list(pool.map(_run_cli, jobs))
        _metrics(uri, rows)
    summary = []
    for family, label, _ in grid:
        for model in models:
            mine = [r for r in rows if r["data"] == label and r["model"] == model]
            ok = [r for r in mine if r.get("status") == "FINISHED"]
            entry = {"family": family, "data": label, "model": model, "runs": len(mine), "finished": len(ok),
                     "recipe": next((r.get("recipe") for r in mine if r.get("recipe")), ""),
                     "error": next((r["error"] for r in mine if "error" in r), "")}
            if ok:
                entry["median_wall_s"] = statistics.median(r["wall_s"] for r in ok)
                for key in TARGETS[family][0]:
                    entry[f"median_{key}"] = statistics.median(r["metrics"].get(key, float("nan")) for r in ok)
                entry["seeds_meeting_targets"] = sum(_meets(family, r["metrics"], r["wall_s"]) for r in ok)
            summary.append(entry)
    return {"seeds": seeds, "workers": workers, "targets": {k: [v[0], v[1]] for k, v in TARGETS.items()},
            "runs": rows, "summary": summary}


def table(result: dict) -> str:
    lines = ["| data | model | recipe | finished | median quality | median wall s | seeds meeting targets |",
             "|---|---|---|---|---|---|---|"]
    for s in result["summary"]:
        if not s["finished"]:
            lines.append(f"| {s['data']} | {s['model']} | | 0/{s['runs']} | {s['error'][:80]} | | |")
            continue
        quality = ", ".join(f"{k[7:]} {v:.3g}" for k, v in s.items()
                            if k.startswith("median_") and k != "median_wall_s")
        lines.append(f"| {s['data']} | {s['model']} | {s['recipe']} | {s['finished']}/{s['runs']} | {quality} | "
                     f"{s['median_wall_s']:.0f} | {s['seeds_meeting_targets']}/{s['finished']} |")
    return "\n".join(lines)
