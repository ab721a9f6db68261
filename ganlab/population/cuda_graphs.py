"""CUDA graphs for the population loop: a cohort's iteration captured once, then replayed.

One cohort iteration launches a few hundred small kernels (each layer, loss, gradient and Adam
operation of every D and G step). On a GPU the launches, not the arithmetic, bound it: a
1,024-trial sweep ran about 6 population steps a second on an H200. A CUDA graph records the
kernels once and replays them with one launch.

What makes a cohort's iteration capturable: its shapes and members are fixed between reassemblies;
it draws random numbers from the device's default generator (which graphs advance on every replay);
every tensor that outlives it is written in place (weights, Adam state, rates, EMA, loss notes); and
it reads nothing back to the host (non-finite losses are read at evaluation). Replays therefore train
exactly as eager iterations do, with other random draws.

Per torch's rules a few eager iterations run on a side stream before the capture; they are real
iterations. After the cohorts change (a refill) :meth:`CohortGraphs.reset` drops the graphs and they
are captured again. A cohort whose iteration cannot be captured trains eagerly, after one notice
line. CPU training never uses this module.
"""

from __future__ import annotations

import torch

from ganlab.population.cohort import Cohort

WARMUP_ITERATIONS = 3  # eager iterations on a side stream before a capture (torch's docs use a few)


class CohortGraphs:
    """Steps cohorts through their captured graphs, capturing each after its warm-up."""

    def __init__(self, verbose: bool = True) -> None:
        self.verbose = verbose
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self._warm: dict[int, int] = {}
        self._eager: set[int] = set()  # cohorts whose capture failed: trained without a graph
        self.captures = 0

    def reset(self) -> None:
        """The cohorts changed (their tensors are new): capture again."""
        self._graphs.clear()
        self._warm.clear()
        self._eager.clear()

    def step(self, cohort: Cohort) -> None:
        """One iteration of ``cohort``: replayed, or eager while it warms up or if it cannot be captured."""
        key = id(cohort)
        graph = self._graphs.get(key)
        if graph is not None:
            graph.replay()
            return
        if key in self._eager:
            cohort.train_iteration()
            return
        if self._warm.get(key, 0) < WARMUP_ITERATIONS:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                cohort.train_iteration()
            torch.cuda.current_stream().wait_stream(side)
            self._warm[key] = self._warm.get(key, 0) + 1
            return
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                cohort.train_iteration()  # recorded, not run: the replay below runs it
        except Exception as exc:  # noqa: BLE001 -- any capture failure: train this cohort without a graph
            self._eager.add(key)
            if self.verbose:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                print(f"ganlab: a cohort of {cohort.members} trains without a CUDA graph ({reason})", flush=True)
            cohort.train_iteration()
            return
        self._graphs[key] = graph
        self.captures += 1
        graph.replay()
