"""Reading a run back from MLflow: its config, its newest readable checkpoint, its generator weights.

Resume, sampling and sweeps all go through :class:`StoredRun`, so there is one place that knows
where a run keeps what (``config.yaml``, ``checkpoints/ckpt_<iteration>.pt``, ``model/*.pt``) and
one way of reading weights: ``torch.load(weights_only=True)``, which refuses pickled objects.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ganlab.config.uris import sqlite_file
from ganlab.errors import CheckpointError, GanlabError, one_line

CHECKPOINT_DIR = "checkpoints"
# keys added to the config since runs were first recorded, with the value those runs trained with
ADDED_KEYS = {"model.standardize": False}
GENERATOR_FILES = ("model/generator_ema.pt", "model/generator.pt")  # the EMA copy first, when logged


class RunReadError(GanlabError):
    """A run, or a part of it, that cannot be read (the caller words it for its own command)."""


def with_added_keys(cfg: DictConfig) -> DictConfig:
    """A recorded config with the keys added since filled in as its run trained (``ADDED_KEYS``), so a
    run recorded before them still resumes, samples and re-runs as it was."""
    for key, value in ADDED_KEYS.items():
        if OmegaConf.select(cfg, key, default=None) is None:
            OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


def list_checkpoints(client, run_id: str) -> list[str]:
    """Artifact paths of a run's checkpoints (checkpoints/ckpt_<iteration>.pt), newest first."""
    names = [a.path for a in client.list_artifacts(run_id, CHECKPOINT_DIR)
             if re.fullmatch(rf"{CHECKPOINT_DIR}/ckpt_\d+\.pt", a.path)]
    return sorted(names, reverse=True)


def store_exists(tracking_uri: str) -> bool:
    """False for a SQLite store whose file does not exist (a server or other database: assumed there)."""
    store = sqlite_file(tracking_uri)
    return store is None or store.is_file()


def require_store(tracking_uri: str) -> None:
    """Reading runs must not create a store: for a SQLite file that does not exist, MLflow would make
    an empty one (in the current directory, by default) only to answer 'no such run'."""
    if not store_exists(tracking_uri):
        raise RunReadError(f"there is no tracking store at {tracking_uri}: nothing was trained with it (run from "
                           "the directory you trained in, or give tracking.uri=)")


class StoredRun:
    """One MLflow run, read through a client on ``tracking_uri``. Files are downloaded into a
    temporary folder that lives as long as this object (use it as a context manager)."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self.uri, self.run_id = tracking_uri, run_id
        require_store(tracking_uri)
        self.client = MlflowClient(tracking_uri)
        try:
            self.run = self.client.get_run(run_id)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower():
                raise RunReadError(f"no such run {run_id!r} in the tracking store {tracking_uri}") from None
            raise RunReadError(f"the tracking store {tracking_uri} cannot be read ({one_line(exc)})") from None
        except Exception as exc:  # noqa: BLE001 -- connection errors, a broken database file
            raise RunReadError(f"the tracking store {tracking_uri} cannot be read ({one_line(exc)})") from None
        self._tmp = tempfile.TemporaryDirectory()

    def __enter__(self) -> StoredRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self._tmp.cleanup()

    @property
    def status(self) -> str:
        return self.run.info.status

    def download(self, path: str) -> Path:
        import mlflow

        return Path(mlflow.artifacts.download_artifacts(run_id=self.run_id, artifact_path=path,
                                                        tracking_uri=self.uri, dst_path=self._tmp.name))

    def config(self) -> DictConfig:
        """The resolved config the run trained with (its ``config.yaml``)."""
        from mlflow.exceptions import MlflowException

        try:
            return with_added_keys(OmegaConf.load(self.download("config.yaml")))
        except (MlflowException, OSError) as exc:
            raise RunReadError(f"run {self.run_id} has no readable config.yaml ({type(exc).__name__}): "
                               "not a ganlab run?") from None

    def checkpoints(self) -> list[str]:
        return list_checkpoints(self.client, self.run_id)

    def newest_checkpoint(self) -> tuple[dict[str, Any], list[str]]:
        """The newest checkpoint that loads, and a note for each newer one that did not."""
        from mlflow.exceptions import MlflowException

        from ganlab.training.checkpoints import load_checkpoint

        paths = self.checkpoints()
        if not paths:
            raise RunReadError(f"run {self.run_id} has no checkpoints (it ran with train.ckpt_every=0, or "
                               "stopped before its first checkpoint)")
        skipped = []
        for path in paths:
            try:
                return load_checkpoint(self.download(path)), skipped
            except (CheckpointError, MlflowException, OSError) as exc:
                skipped.append(f"{path}: {exc}")
        raise RunReadError(f"no checkpoint of the run can be read; {skipped[0]}")

    def generator_state(self, from_cohort: Callable[[dict[str, Any], DictConfig], dict[str, Any]] | None = None
                        ) -> dict[str, Any]:
        """The weights to sample from: the logged EMA generator, else the generator; for a run that
        ended before logging them, its newest readable checkpoint's (EMA copy first).
        ``from_cohort(state, cfg)``: a train.seeds run's checkpoint to one generator's weights
        (``ganlab.population.seeds_checkpoints.median_seed_generator``, passed in by the caller)."""
        import torch

        logged = {a.path for a in self.client.list_artifacts(self.run_id, "model")}
        for name in GENERATOR_FILES:
            if name in logged:
                try:
                    return torch.load(self.download(name), map_location="cpu", weights_only=True)
                except Exception as exc:  # torch raises several kinds for a file it will not unpickle
                    raise RunReadError(f"{name} of run {self.run_id} cannot be read safely "
                                       f"({type(exc).__name__}); it may carry pickled objects") from None
        try:
            state, _ = self.newest_checkpoint()
        except RunReadError:
            run, ended = self.run, ""
            if run.info.status != "FINISHED":  # why there is nothing to sample, in the run's own words
                why = run.data.tags.get("failure_reason") or run.data.tags.get("stopped_reason")
                ended = f": it ended {run.info.status}" + (f" ({why[:200]})" if why else "")
            raise RunReadError(f"run {self.run_id} has no generator weights (model/*.pt) and no readable "
                               f"checkpoint{ended}") from None
        if "cohort" in state:  # a train.seeds run stopped before it logged its median seed's weights
            if from_cohort is None:
                raise RunReadError(f"run {self.run_id} trained seeds {state['seeds'][0]}-{state['seeds'][-1]} "
                                   "together and logged no generator weights yet")
            return from_cohort(state, self.config())
        if state["ema"] is not None:
            return {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
        return state["generator"]
