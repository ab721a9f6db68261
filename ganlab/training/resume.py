"""`python -m ganlab.train resume=<run_id> [key=value ...]`: continue a run from its newest checkpoint.

The run's own ``config.yaml`` is the config; the command line may change only the keys in
``RESUMABLE_KEYS`` (its length, intervals, tracking, threads). Without ``train.iterations`` a run
continues toward the length its checkpoint was training to (an extension's, if it was extended).
Everything is checked before the run is touched: an unknown id, a run without checkpoints, only
unreadable checkpoints, or a changed config stop with one line and leave the run as it was.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from ganlab.config.validate import validate
from ganlab.errors import ConfigError
from ganlab.run_heartbeat import close_if_dead, liveness
from ganlab.stored_runs import RunReadError, StoredRun
from ganlab.tracking import resolve_tracking_uri
from ganlab.training.checkpoints import RESUMABLE_KEYS, config_differences, config_hash
from ganlab.training.runner import ResumePoint

_MISSING = object()


def _overrides(run_id: str, overrides: list[str]) -> DictConfig:
    for item in overrides:
        key = item.split("=", 1)[0]
        if "=" not in item or "." not in key:
            raise ConfigError(f"resume={run_id}: {item!r} is not allowed with resume; the run keeps its own config "
                              f"(groups and experiment included), give only key=value for {', '.join(RESUMABLE_KEYS)}")
    return OmegaConf.from_dotlist(overrides)


def prepare_resume(run_id: str, overrides: list[str]) -> tuple[DictConfig, ResumePoint, list[str]]:
    """The config to continue with, the checkpoint to continue from, and notes on skipped checkpoints."""
    changes = _overrides(run_id, overrides)
    uri = resolve_tracking_uri(OmegaConf.select(changes, "tracking.uri", default=None), for_reading=True)
    try:
        with StoredRun(uri, run_id) as run:
            stored = run.config()
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
            tags = run.run.data.tags
            if tags.get("population") == "true":
                raise ConfigError(f"resume={run_id}: the run is trial {tags.get('trial_number', '?')} of the "
                                  f"population sweep '{tags.get('sweep', '?')}', which checkpoints its trials itself: "
                                  "run that sweep's command again to continue it")
            status = run.status
            # a live process would log every step twice. Asked before reading its checkpoints: a live run
            # deletes old ones as it writes new ones, so a listed checkpoint may be gone when read
            if status == "RUNNING":
                alive, how = liveness(run.run)
                if alive:
                    raise ConfigError(f"resume={run_id}: the run is still running ({how}); stop that process "
                                      "first (Ctrl-C ends it KILLED, with a checkpoint)")
            state, skipped = run.newest_checkpoint()
            if status == "RUNNING":  # dead, and resumable: closed before it continues
                close_if_dead(run.client, run.run)
    except RunReadError as exc:
        raise ConfigError(f"resume={run_id}: {exc}; nothing to resume from") from None
    if state["config_hash"] != config_hash(cfg):
        raise ConfigError(f"resume={run_id}: the checkpoint was written under another config than the run's "
                          "config.yaml; refusing to mix them")
    if not any(item.startswith("train.iterations=") for item in overrides):
        # the length the run last trained toward: an extended run's config.yaml keeps its first length
        cfg.train.iterations = int(state["iterations"])
    done = int(state["iteration"])
    if done >= cfg.train.iterations:
        raise ConfigError(f"resume={run_id}: the run ({status}) already reached iteration {done} of "
                          f"train.iterations={cfg.train.iterations}; pass train.iterations=N with N > {done} "
                          "to extend it")
    cfg.tracking.uri = uri
    return cfg, ResumePoint(run_id, state), skipped
