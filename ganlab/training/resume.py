"""`python -m ganlab.train resume=<run_id> [key=value ...]`: continue a run from its newest checkpoint.

The run's own ``config.yaml`` is the config; the command line may change only the keys in
``RESUMABLE_KEYS`` (its length, intervals, tracking, threads). Everything is checked before the run
is touched: an unknown id, a run without checkpoints, only unreadable checkpoints, or a changed
config stop with one line and leave the run as it was.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from ganlab.config.compose import ConfigError
from ganlab.config.validate import validate
from ganlab.tracking import list_checkpoints, resolve_tracking_uri
from ganlab.training.checkpoints import (
    RESUMABLE_KEYS,
    CheckpointError,
    config_differences,
    config_hash,
    load_checkpoint,
)
from ganlab.training.runner import ResumePoint

_MISSING = object()


def _overrides(run_id: str, overrides: list[str]) -> DictConfig:
    for item in overrides:
        key = item.split("=", 1)[0]
        if "=" not in item or "." not in key:
            raise ConfigError(f"resume={run_id}: {item!r} is not allowed with resume; the run keeps its own config "
                              f"(groups and experiment included), give only key=value for {', '.join(RESUMABLE_KEYS)}")
    return OmegaConf.from_dotlist(overrides)


def _download(client: MlflowClient, uri: str, run_id: str, path: str, into: str) -> Path:
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, tracking_uri=uri,
                                                    dst_path=into))


def _stored_config(client: MlflowClient, uri: str, run_id: str, tmp: str) -> DictConfig:
    try:
        return OmegaConf.load(_download(client, uri, run_id, "config.yaml", tmp))
    except (MlflowException, OSError) as exc:
        raise ConfigError(f"resume={run_id}: the run has no readable config.yaml ({type(exc).__name__})") from None


def _newest_checkpoint(client: MlflowClient, uri: str, run_id: str, tmp: str) -> tuple[dict, list[str]]:
    """The newest checkpoint that loads, and a note for each newer one that did not."""
    paths = list_checkpoints(client, run_id)
    if not paths:
        raise ConfigError(f"resume={run_id}: the run has no checkpoints (it ran with train.ckpt_every=0, or "
                          "stopped before its first checkpoint); nothing to resume from")
    skipped = []
    for path in paths:
        try:
            return load_checkpoint(_download(client, uri, run_id, path, tmp)), skipped
        except (CheckpointError, MlflowException, OSError) as exc:
            skipped.append(f"{path}: {exc}")
    raise ConfigError(f"resume={run_id}: no checkpoint of the run can be read; {skipped[0]}")


def prepare_resume(run_id: str, overrides: list[str]) -> tuple[DictConfig, ResumePoint, list[str]]:
    """The config to continue with, the checkpoint to continue from, and notes on skipped checkpoints."""
    changes = _overrides(run_id, overrides)
    uri = resolve_tracking_uri(OmegaConf.select(changes, "tracking.uri", default=None))
    client = MlflowClient(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ConfigError(f"resume={run_id}: no such run in the tracking store {uri}") from None
    with tempfile.TemporaryDirectory() as tmp:
        stored = _stored_config(client, uri, run_id, tmp)
        for item in overrides:
            key = item.split("=", 1)[0]
            if OmegaConf.select(stored, key, default=_MISSING) is _MISSING:
                raise ConfigError(f"resume={run_id}: {key} is not a key of the run's config")
        cfg = OmegaConf.merge(stored, changes)
        differences = config_differences(stored, cfg)
        if differences:
            more = f" (and {len(differences) - 1} more)" if len(differences) > 1 else ""
            raise ConfigError(f"resume={run_id}: {differences[0]}{more} cannot change on a resumed run; "
                              f"only {', '.join(RESUMABLE_KEYS)} can")
        validate(cfg)
        state, skipped = _newest_checkpoint(client, uri, run_id, tmp)
    if state["config_hash"] != config_hash(cfg):
        raise ConfigError(f"resume={run_id}: the checkpoint was written under another config than the run's "
                          "config.yaml; refusing to mix them")
    done = int(state["iteration"])
    if done >= cfg.train.iterations:
        status = run.info.status
        raise ConfigError(f"resume={run_id}: the run ({status}) already reached iteration {done} of "
                          f"train.iterations={cfg.train.iterations}; pass train.iterations=N with N > {done} "
                          "to extend it")
    cfg.tracking.uri = uri
    return cfg, ResumePoint(run_id, state), skipped
