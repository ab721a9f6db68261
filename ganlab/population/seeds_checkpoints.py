"""Checkpoints of a ``train.seeds`` run, so that ``resume=<run_id>`` continues it as it continues a
single run: the same files (``checkpoints/ckpt_<iteration>.pt`` in the run's artifacts, written by
:class:`ganlab.training.checkpoints.CheckpointWriter` every ``train.ckpt_every`` iterations, at the
end and when a signal stops the run), the same format and checks, with the seeds' cohort in place of
one run's networks.

A resumed run goes on bit for bit as if it had not stopped (on CPU): the cohort's tensors and random
stream, the global random states, the iteration and the metric history all come back.
"""

from __future__ import annotations

import math
import re
from typing import Any

from omegaconf import DictConfig

from ganlab.errors import ConfigError
from ganlab.population.cohort import Cohort
from ganlab.population.member_settings import member_configs
from ganlab.population.population_evaluation import median_member
from ganlab.population.population_module import PopulationModule
from ganlab.training.checkpoints import run_state, set_rng_states
from ganlab.training.history import History


def seeds_training_state(module: PopulationModule, history: History, cfg: DictConfig) -> dict[str, Any]:
    """Everything that determines how a train.seeds run goes on from ``module.iteration``."""
    (cohort,) = module.cohorts
    return {**run_state(module.iteration, history, cfg), "seeds": list(cohort.keys),
            "cohort": cohort.checkpoint_state()}


def restore_seeds_state(module: PopulationModule, history: History, state: dict[str, Any]) -> None:
    """Put a checkpoint's state back into a freshly built train.seeds run of the same config."""
    (cohort,) = module.cohorts
    if "cohort" not in state or list(state["seeds"]) != list(cohort.keys):
        raise ConfigError(f"the checkpoint holds {'seeds ' + str(state['seeds']) if 'seeds' in state else 'one run'}, "
                          f"not seeds {cohort.keys}; refusing to mix them")
    cohort.load_checkpoint_state(state["cohort"])
    module.iteration = int(state["iteration"])
    history.restore(state)
    set_rng_states(state["rng"])


def median_seed_generator(state: dict[str, Any], cfg: DictConfig) -> dict[str, Any]:
    """The EMA generator weights of the checkpoint's median seed (by the headline metric of its last
    evaluation, failed seeds left out), as a single run's generator state dict: what
    ``python -m ganlab.sample`` draws from when the run stopped before logging its median seed."""
    seeds, failed = list(state["seeds"]), set(state["cohort"]["failures"])
    last = state["history_rows"][-1] if state["history_rows"] else {}
    per_seed = {(m[1], int(m[2])): value for name, value in last.items()
                if (m := re.fullmatch(r"(.+)_seed(\d+)", name))}  # the summary's <headline>_seed<s>
    key = next(iter(per_seed), ("ks", 0))[0]
    rows = [{key: per_seed.get((key, s), math.nan)} for s in seeds]
    k = median_member(rows, [str(k) not in failed for k in range(len(seeds))])  # as the run itself picks
    cohort = Cohort(member_configs(cfg), keys=seeds)
    cohort.load_checkpoint_state(state["cohort"])
    return cohort.ema.member(k).state_dict()
