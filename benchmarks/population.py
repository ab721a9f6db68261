"""Population throughput: member-iterations per second of the population loop for K members trained
together, against the single-run loop (GANModule) on the same config, same device, same process.

Both loops run ``iterations`` training iterations under Lightning with no evaluation or tracking, so
this measures the training step itself. Each cell is the median of ``repeats`` timings; the single
loop is re-timed between population sizes so machine noise hits both. Run with ``--device cuda`` on a
GPU machine (benchmarks/gpu_population.sh).
"""

from __future__ import annotations

import statistics
import time

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ganlab.config.compose import compose_config
from ganlab.population.cohort import Cohort
from ganlab.population.population_module import PopulationModule
from ganlab.training.runner import build_module

CASES = {  # label -> overrides (the default recipe at two batch sizes, ring8's points recipe, and the
    # minibatch model at its recipe's batch and at one in S3's sweep range, 4-32)
    "default 1D, batch 1024": [],
    "default 1D, batch 128": ["train.batch_size=128"],
    "ring8, batch 256": ["data=ring8"],
    "minibatch 1D, batch 128": ["model=minibatch"],
    "minibatch 1D, batch 16": ["model=minibatch", "train.batch_size=16"],
}
SIZES = (1, 8, 32, 128)


def cases_named(words: list[str] | None) -> dict[str, list[str]]:
    """The cases whose label contains any of ``words`` (all when None or empty)."""
    picked = {label: o for label, o in CASES.items() if not words or any(w in label for w in words)}
    if not picked:
        raise SystemExit(f"--population-cases {' '.join(words)}: no case matches; cases: {', '.join(CASES)}")
    return picked


def _fit_seconds(module: pl.LightningModule, iterations: int, device: str) -> float:
    trainer = pl.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=1, max_epochs=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    start = time.perf_counter()
    trainer.fit(module, DataLoader(range(iterations), batch_size=None))
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _single(cfg, iterations: int, device: str) -> float:
    pl.seed_everything(0, verbose=False)
    return iterations / _fit_seconds(build_module(cfg), iterations, device)


def population_of_seeds(cfg, k: int, cuda_graphs: bool = False) -> PopulationModule:
    """K seeds of one config (built once per size: 1,024 members take ~15 s to build on CPU)."""
    configs = []
    for s in range(k):
        member = cfg.copy()
        member.train.seed = s
        configs.append(member)
    return PopulationModule([Cohort(configs)], cuda_graphs=cuda_graphs)


def _population(module: PopulationModule, iterations: int, device: str) -> float:
    """Member-iterations/s of ``iterations`` more iterations (a repeat continues the same members)."""
    k = sum(c.members for c in module.cohorts)
    return k * iterations / _fit_seconds(module, iterations, device)


def run(iterations: int = 40, repeats: int = 3, sizes: tuple[int, ...] = SIZES, device: str = "cpu",
        cases: dict[str, list[str]] | None = None, cuda_graphs: bool = False) -> dict:
    """``cuda_graphs``: the population replays each iteration as a CUDA graph (on a CUDA device)."""
    if device == "cpu":
        torch.set_num_threads(1)
    rows = []
    for label, overrides in (cases or CASES).items():
        cfg = compose_config([*overrides, f"train.iterations={iterations}",
                              f"train.accelerator={'gpu' if device == 'cuda' else 'cpu'}"])
        for k in sizes:
            singles, pops = [], []
            module = population_of_seeds(cfg, k, cuda_graphs)
            for _ in range(repeats):
                singles.append(_single(cfg, iterations, device))
                pops.append(_population(module, iterations, device))
            single, pop = statistics.median(singles), statistics.median(pops)
            rows.append({"case": label, "members": k, "single_it_s": single, "population_member_it_s": pop,
                         "speedup": pop / single, "cuda_graphs": cuda_graphs})
            print(f"  {label:<24} K={k:<4} single {single:7.0f} it/s   population {pop:8.0f} member-it/s   "
                  f"x{pop / single:.2f}", flush=True)
    return {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu (1 thread)",
            "iterations": iterations, "repeats": repeats, "rows": rows}


def table(result: dict) -> str:
    lines = [f"device: {result['device']}", "| case | K | single it/s | population member-it/s | speed-up |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['case']}{', CUDA graphs' if r.get('cuda_graphs') else ''} | {r['members']} | "
              f"{r['single_it_s']:.0f} | {r['population_member_it_s']:.0f} | "
              f"{r['speedup']:.2f}x |" for r in result["rows"]]
    return "\n".join(lines)
