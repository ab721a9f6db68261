"""Why a population sweep's cohorts train in worker processes: two cohorts trained in two threads of one
process (as ``PopulationModule`` trained them until 2026-12-02) against the same two in two processes.

A cohort iteration is ~1,200 small torch operations whose Python side holds the GIL, so two cohort
threads of one process contend; two processes do not. Each case trains identical cohorts of the
default recipe (``d_steps=2``, ``g_steps=2``, one torch thread each) and reports cohort-iterations/s
against one cohort on one thread, as the median of ``repeats`` alternating repeats.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import torch

CASES = ((256, 8, 60), (1024, 4, 30), (2048, 2, 30))  # (batch size, members, iterations a repeat)


def _cohort(batch: int, members: int):
    """``members`` seeds of the default recipe at ``batch``, as one cohort."""
    from benchmarks.population import population_of_seeds
    from ganlab.config.compose import compose_config

    cfg = compose_config([f"train.batch_size={batch}", "train.d_steps=2", "train.g_steps=2"])
    return population_of_seeds(cfg, members).cohorts[0]


def _train(cohort, iterations: int) -> None:
    torch.set_num_threads(1)
    for _ in range(iterations):
        cohort.train_iteration()


def _rate(cohorts: list, iterations: int, pool: ThreadPoolExecutor | None = None) -> float:
    start = time.perf_counter()
    if pool is None:
        for cohort in cohorts:
            _train(cohort, iterations)
    else:
        list(pool.map(lambda c: _train(c, iterations), cohorts))
    return len(cohorts) * iterations / (time.perf_counter() - start)


def _in_process(batch: int, members: int, iterations: int, out: mp.Queue) -> None:
    cohort = _cohort(batch, members)
    _train(cohort, 5)  # warm
    out.put(_rate([cohort], iterations))


def _two_processes(batch: int, members: int, iterations: int) -> float:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_in_process, args=(batch, members, iterations, out)) for _ in range(2)]
    for p in procs:
        p.start()
    total = out.get() + out.get()
    for p in procs:
        p.join()
    return total


def run(repeats: int = 3) -> dict:
    torch.set_num_threads(1)
    rows = []
    for batch, members, iterations in CASES:
        a, b = _cohort(batch, members), _cohort(batch, members)
        _rate([a, b], 5)  # warm
        one, threads, procs = [], [], []
        with ThreadPoolExecutor(2) as pool:
            for _ in range(repeats):
                one.append(_rate([a], iterations))
                threads.append(_rate([a, b], iterations, pool))
                procs.append(_two_processes(batch, members, iterations))
        m1, m2, mp2 = statistics.median(one), statistics.median(threads), statistics.median(procs)
        rows.append({"batch_size": batch, "members": members, "one_thread": m1, "two_threads": m2,
                     "two_processes": mp2, "threads_speedup": m2 / m1, "processes_speedup": mp2 / m1})
        print(f"  batch {batch}, K={members}: x{m2 / m1:.2f} in two threads, x{mp2 / m1:.2f} in two processes",
              flush=True)
    return {"repeats": repeats, "rows": rows}


def table(res: dict) -> str:
    lines = ["| batch | members | one thread (cohort-it/s) | two threads | two processes |", "|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['batch_size']} | {r['members']} | {r['one_thread']:.1f} | {r['two_threads']:.1f} "
                     f"(x{r['threads_speedup']:.2f}) | {r['two_processes']:.1f} (x{r['processes_speedup']:.2f}) |")
    return "\n".join(lines)
