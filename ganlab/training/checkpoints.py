"""Checkpoints: everything a run needs to continue exactly where it stopped, saved atomically and
read back without unpickling arbitrary objects.

A checkpoint holds G, D, the EMA generator, both optimisers and schedules, every RNG state (torch,
numpy, python), the iteration counter, the metric history and plot frames, and a hash of the parts
of the config that must not change on resume. It contains only tensors, numbers, strings, lists and
dicts, so ``torch.load(weights_only=True)`` reads it.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig

from ganlab.config.flatten import flatten_config
from ganlab.errors import CheckpointError, one_line
from ganlab.signals import Stopped, check_stop, defer_to_boundaries
from ganlab.training.history import History

FORMAT_VERSION = 1
# keys a resumed run may change: its length, its intervals, where it is tracked, how many threads
RESUMABLE_KEYS = ("train.iterations", "train.eval_every", "train.plot_every", "train.ckpt_every", "train.ckpt_keep",
                  "train.threads", "tracking.uri", "tracking.experiment")


def checkpoint_name(iteration: int) -> str:
    return f"ckpt_{iteration:08d}.pt"


def fixed_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config without the keys a resume may change, as a flat {dotted key: value} dict."""
    return {key: value for key, value in flatten_config(cfg).items() if key not in RESUMABLE_KEYS}


def config_hash(cfg: DictConfig) -> str:
    return hashlib.sha256(json.dumps(fixed_config(cfg), sort_keys=True, default=str).encode()).hexdigest()


def config_differences(stored: DictConfig, new: DictConfig) -> list[str]:
    """'key: old -> new' for every fixed key that differs between two configs."""
    old, cur = fixed_config(stored), fixed_config(new)
    return [f"{k}: {old.get(k)!r} -> {cur.get(k)!r}" for k in sorted(set(old) | set(cur)) if old.get(k) != cur.get(k)]


def rng_states() -> dict[str, Any]:
    np_state = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            "python": [version, list(internal), gauss_next]}


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))


def run_state(iteration: int, history: History, cfg: DictConfig) -> dict[str, Any]:
    """What every checkpoint holds besides the networks: where the run is, under which config, the
    random states and the metric history (a single run's and a train.seeds run's alike)."""
    return {
        "format": FORMAT_VERSION,
        "iteration": iteration,
        "iterations": cfg.train.iterations,  # the planned length its learning-rate schedule follows
        "config_hash": config_hash(cfg),
        "rng": rng_states(),
        **history.state(),
    }


def training_state(module, history: History, cfg: DictConfig) -> dict[str, Any]:
    """Everything that determines how the run goes on from ``module.iteration``."""
    opt_d, opt_g = module.optimizers()
    return {
        **run_state(module.iteration, history, cfg),
        "generator": module.generator.state_dict(),
        "discriminator": module.discriminator.state_dict(),
        "ema": module.ema.state_dict() if module.ema is not None else None,
        "optimizers": [opt_d.optimizer.state_dict(), opt_g.optimizer.state_dict()],
        "schedules": [s.state_dict() for s in module.schedules()],
        "last_losses": list(module.last_losses),
    }


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (tensors and plain containers only)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except Exception as exc:  # truncated zip, foreign pickle, ...: torch raises several kinds
        raise CheckpointError(f"checkpoint {path.name} cannot be read safely ({one_line(exc)})") from None
    # a single run's networks, or a train.seeds run's cohort (ganlab.population.seeds_checkpoints)
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION or not {"generator", "cohort"} & set(state):
        raise CheckpointError(f"checkpoint {path.name} is not a ganlab checkpoint (format {FORMAT_VERSION})")
    return state


class CheckpointWriter(pl.Callback):
    """Saves a checkpoint every ``ckpt_every`` iterations, at the end, and when SIGTERM/SIGINT stops
    the run (at the end of the iteration it arrived in), into the run's artifacts
    (``checkpoints/ckpt_<iteration>.pt``), keeping the newest ``ckpt_keep``. Runs after the monitor,
    so a checkpoint's history includes the evaluation of its own iteration."""

    def __init__(self, tracker, cfg: DictConfig, history,
                 state_of: Callable[[Any, History, DictConfig], dict[str, Any]] | None = None) -> None:
        self.tracker, self.cfg, self.history = tracker, cfg, history
        self.state_of = state_of or training_state  # a train.seeds run's: seeds_checkpoints.seeds_training_state
        self.every, self.keep = cfg.train.ckpt_every, cfg.train.ckpt_keep
        self.checkpointed = False  # whether the run has a checkpoint (set at fit start: a resumed run has one)

    def on_fit_start(self, trainer, module) -> None:
        self.checkpointed = module.iteration > 0  # a resumed run has the checkpoint it resumed from
        # from before the monitor's first evaluation (on_train_start): a signal during it waits for the
        # end of the first iteration, which is checkpointed, so the resume= the stop line offers works
        defer_to_boundaries(True)

    def on_train_end(self, trainer, module) -> None:
        defer_to_boundaries(False)

    def on_fit_end(self, trainer, module) -> None:
        defer_to_boundaries(False)  # also when the fit loop was skipped (no iteration left): no on_train_end

    def on_exception(self, trainer, module, exception: BaseException) -> None:
        defer_to_boundaries(False)
        if isinstance(exception, Stopped):  # stopped at once, by a second signal: what the stop line may offer
            exception.checkpointed = bool(self.every) and self.checkpointed

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
        it = module.iteration
        stop = check_stop()
        if self.every and (it % self.every == 0 or it >= self.cfg.train.iterations or stop is not None):
            self.tracker.save_checkpoint(self.state_of(module, self.history, self.cfg), checkpoint_name(it))
            self.checkpointed = True
            for old in self.tracker.list_checkpoints()[self.keep:]:  # newest first; delete only after the save
                self.tracker.delete_checkpoint(old)
        if stop is not None:
            stop.checkpointed = bool(self.every)
            raise stop
