"""The population loop: cohorts of stacked GANs trained together, a LightningModule with manual
optimization (the same alternation as ``GANModule``: d_steps D updates, then g_steps G updates).

One Lightning step is ``steps_per_call`` iterations (1 unless the caller says) of every cohort
(members of different batch sizes or shapes live in different cohorts; see ``cohort.py``). A
``train.seeds`` run has one cohort for its whole life and takes one iteration a step; a population
sweep replaces its cohorts between steps as trials finish, are pruned or join
(:meth:`PopulationModule.set_cohorts`), and runs as many iterations a step as it can before a member
is next due for evaluation: on CPU every step ends with the cohort processes waiting for each other
and for the main process's bookkeeping. Losses are per member and summed for backward, so one member's
gradients never depend on another's.

A stop signal (SIGINT, SIGTERM) that arrives during a step is raised at its end, when every cohort
has taken the same whole iterations (:func:`ganlab.signals.defer_to_boundaries`, which the sweep
turns on): cohort processes keep running while the main process handles a signal, so a checkpoint
written before they finish would hold cohorts at different iterations. A step that ends in an error
or a second signal leaves :attr:`PopulationModule.mid_step` set: its cohorts are not checkpointed.
"""

from __future__ import annotations

import time

import pytorch_lightning as pl
import torch
from torch import nn

from ganlab.population.cohort import Cohort, train_cohorts
from ganlab.population.cohort_processes import CohortProcesses
from ganlab.population.cpu_cache import core_l2_bytes
from ganlab.population.cuda_graphs import CohortGraphs
from ganlab.population.heap_reuse import keep_freed_memory
from ganlab.signals import check_stop

# On CPU a cohort's step slows per member once its activations outgrow the core's L2 cache: the default
# recipe's cost per member-iteration falls from 1 to 4-16 members and rises again past about 4,096
# samples (members x batch size) per cohort on a core with 512 KB of L2, and past 8,192-16,384 on one
# with 2 MB (docs/population_speed.md#cohorts-on-cpu). Larger cohorts are split into pieces of about this size.
BYTES_OF_L2_PER_SAMPLE = 128


def cpu_samples_per_cohort() -> int:
    """Samples (members x batch size) a CPU cohort piece may hold on this machine."""
    return max(1024, core_l2_bytes() // BYTES_OF_L2_PER_SAMPLE)


def balance(cohorts: list[Cohort], threads: int, samples: int | None = None,
            most_parts: int = 4) -> list[Cohort]:
    """CPU pieces: halve each cohort until members x batch size fits ``samples``; then, for ``threads``
    cohort workers, halve the costliest piece while it is over a worker's share of the step's work (at
    most ``most_parts`` pieces per worker): one cohort of most members, e.g. the batch size a sweep
    converged on, would otherwise keep one worker busy while the others wait for it. Members that share
    a key (a sweep trial's seeds, evaluated together) are never parted (:meth:`Cohort.split_point`)."""
    samples = cpu_samples_per_cohort() if samples is None else samples
    pieces, out = list(cohorts), []
    while pieces:
        cohort = pieces.pop()
        if cohort.members * cohort.batch_size > samples and cohort.split_point() is not None:
            pieces.extend(cohort.split())
        else:
            out.append(cohort)
    while threads > 1 and len(out) < most_parts * threads:
        costliest = max(out, key=lambda c: c.cost, default=None)
        if (costliest is None or costliest.split_point() is None
                or costliest.cost <= sum(c.cost for c in out) / threads):
            break
        out.remove(costliest)
        out.extend(costliest.split())
    return out


class PopulationModule(pl.LightningModule):
    """``threads`` > 1 on CPU: cohorts train in that many worker processes at once, one torch thread each
    (``cohort_processes.py``; torch's own threading gains little on these small tensors: 1.2-1.4x for two
    threads, and cohorts in threads of one process contend for the GIL); a single cohort uses the torch
    threads itself. ``cpu_pieces``: a sweep on CPU, whose cohorts are split to fit the cache and the
    workers (:func:`balance`). ``cuda_graphs``: on a CUDA device, each cohort's iteration is captured
    once and replayed (``cuda_graphs.py``)."""

    def __init__(self, cohorts: list[Cohort], threads: int = 1, cpu_pieces: bool = False,
                 cuda_graphs: bool = False, stop_at_step_end: bool = True) -> None:
        super().__init__()
        # raise a pending stop signal at the end of each step; False: a later callback raises it (a
        # train.seeds run's CheckpointWriter, after the step's evaluation and its checkpoint)
        self.stop_at_step_end = stop_at_step_end
        self.automatic_optimization = False
        self.threads = threads
        self.cpu_pieces = cpu_pieces  # training on CPU: cohorts given to set_cohorts are split by balance()
        self.graphs = CohortGraphs() if cuda_graphs else None  # used on a CUDA device only
        # a CPU sweep's workers start now (a few seconds of imports each, overlapping the sweep's set-up)
        self._processes = CohortProcesses(threads) if cpu_pieces and threads > 1 else None
        self.mid_step = False  # True while a step runs, and after one that did not end whole
        self.workers_busy: float | None = None  # the workers' share of the steps' wall spent training
        self.cohorts = nn.ModuleList(cohorts)
        self.iteration = 0  # iterations taken (each member also counts its own: Cohort.member_iteration)
        self.steps_per_call = 1  # iterations the next training_step takes (a sweep sets it before each)
        self.last_steps = 0  # iterations the last training_step took
        self.seconds_per_iteration = 0.0  # ... and their wall time each

    def configure_optimizers(self):
        # each cohort owns its optimizers (their state is restacked with the members); Lightning's
        # warning about this is silenced by configure_runtime()
        return None

    def set_cohorts(self, cohorts: list[Cohort]) -> None:
        """Replace the cohorts (between steps), moving new ones to this module's device; on CPU, cohorts
        too large for the cache or for a worker's share of the step are split (see :func:`balance`)."""
        cohorts = [c.to(self.device) for c in cohorts]
        if self.cpu_pieces:
            cohorts = balance(cohorts, self.threads)
        self.cohorts = nn.ModuleList(cohorts)
        if self.graphs is not None:
            self.graphs.reset()

    def _apply(self, fn, recurse: bool = True):
        out = super()._apply(fn, recurse)
        if self.graphs is not None:
            self.graphs.reset()  # the cohorts' tensors were replaced: graphs recorded the old ones
        return out

    def _parallel(self) -> bool:
        return self.threads > 1 and len(self.cohorts) > 1 and self.device.type == "cpu"

    def training_step(self, batch, batch_idx: int) -> None:
        steps = max(1, int(self.steps_per_call))
        start = time.perf_counter()
        self.mid_step = True
        if self._parallel():
            if self._processes is None:
                self._processes = CohortProcesses(self.threads)
            self._processes.train(list(self.cohorts), steps)
        elif self.graphs is not None and self.device.type == "cuda":
            for _ in range(steps):
                for cohort in self.cohorts:
                    self.graphs.step(cohort)
        else:
            torch.set_num_threads(self.threads)
            train_cohorts(list(self.cohorts), steps)
        self.iteration += steps
        self.mid_step = False
        self.last_steps = steps
        self.seconds_per_iteration = (time.perf_counter() - start) / steps
        if self.stop_at_step_end:
            stop = check_stop()
            if stop is not None:
                raise stop

    def on_fit_start(self) -> None:
        if self.device.type == "cpu":  # this process may train cohorts itself (one core, or a lone cohort)
            keep_freed_memory()

    def on_fit_end(self) -> None:
        self.close()
        torch.set_num_threads(self.threads)

    def close(self) -> None:
        """Stop the worker processes (also when the fit ends in an error: the sweep calls this)."""
        if self._processes is not None:
            self.workers_busy = self._processes.busy_share()
            self._processes.close()
            self._processes = None
