"""The population loop: cohorts of stacked GANs trained together, a LightningModule with manual
optimization (the same alternation as ``GANModule``: d_steps D updates, then g_steps G updates).

One Lightning step is one iteration of every cohort (members of different batch sizes or shapes
live in different cohorts; see ``cohort.py``). A ``train.seeds`` run has one cohort for its whole
life; a population sweep replaces its cohorts between steps as trials finish, are pruned or join
(:meth:`PopulationModule.set_cohorts`). Losses are per member and summed for backward, so one
member's gradients never depend on another's.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytorch_lightning as pl
import torch
from torch import nn

from ganlab.population.cohort import Cohort


class PopulationModule(pl.LightningModule):
    """``threads`` > 1 on CPU: cohorts train in that many threads at once, one torch thread each (torch's
    own threading gains little on these small tensors: 1.2-1.4x for two threads, against 1.5-1.7x for
    two cohorts side by side); a single cohort uses the torch threads itself."""

    def __init__(self, cohorts: list[Cohort], threads: int = 1) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self.cohorts = nn.ModuleList(cohorts)
        self.iteration = 0  # Lightning steps taken (each member also counts its own: Cohort.member_iteration)

    def configure_optimizers(self):
        # each cohort owns its optimizers (their state is restacked with the members); Lightning's
        # warning about this is silenced by configure_runtime()
        return None

    def set_cohorts(self, cohorts: list[Cohort]) -> None:
        """Replace the cohorts (between steps), moving new ones to this module's device."""
        self.cohorts = nn.ModuleList([c.to(self.device) for c in cohorts])

    def _parallel(self) -> bool:
        return self.threads > 1 and len(self.cohorts) > 1 and self.device.type == "cpu"

    def training_step(self, batch, batch_idx: int) -> None:
        if self._parallel():
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="ganlab-cohort",
                                                initializer=torch.set_num_threads, initargs=(1,))
            list(self._pool.map(Cohort.train_iteration, self.cohorts))
        else:
            torch.set_num_threads(self.threads)
            for cohort in self.cohorts:
                cohort.train_iteration()
        self.iteration += 1

    def on_fit_end(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        torch.set_num_threads(self.threads)
