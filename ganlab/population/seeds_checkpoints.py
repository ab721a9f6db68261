"""Checkpoints of a ``train.seeds`` run, so that ``resume=<run_id>`` continues it as it continues a
single run: the same files (``checkpoints/ckpt_<iteration>.pt`` in the run's artifacts, written by
:class:`ganlab.training.checkpoints.CheckpointWriter` every ``train.ckpt_every`` iterations, at the
end and when a signal stops the run), the same format and checks, with the seeds' cohort in place of
one run's networks.

A resumed run goes on bit for bit as if it had not stopped (on CPU): the cohort's tensors and random
stream, the global random states, the iteration and the metric history all come back.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from ganlab.errors import ConfigError
from ganlab.population.population_module import PopulationModule
from ganlab.training.checkpoints import FORMAT_VERSION, config_hash, rng_states, set_rng_states
from ganlab.training.history import History


def seeds_training_state(module: PopulationModule, history: History, cfg: DictConfig) -> dict[str, Any]:
    """Everything that determines how a train.seeds run goes on from ``module.iteration``."""
    (cohort,) = module.cohorts
    return {
        "format": FORMAT_VERSION,
        "iteration": module.iteration,
        "iterations": cfg.train.iterations,
        "config_hash": config_hash(cfg),
        "seeds": list(cohort.keys),
        "cohort": cohort.checkpoint_state(),
        "rng": rng_states(),
        **history.state(),
    }


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
