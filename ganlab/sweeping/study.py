"""The Optuna side of a sweep: the storage, and the study built from a definition; create or resume."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import sqlalchemy
from optuna.storages import RDBStorage

from ganlab.config.uris import sqlite_file
from ganlab.errors import GanlabError, one_line
from ganlab.signals import signals_held
from ganlab.sweeping.definition import SweepDefinition
from ganlab.sweeping.samplers import make_pruner, make_sampler
from ganlab.sweeping.sole_writer_storage import SoleWriterStorage, claim_study
from ganlab.sweeping.worker_faults import retry_after_heartbeat_stopped

DEFAULT_STORAGE_DIR = Path("mlruns")
HEARTBEAT_S = 5  # a worker that has not beaten for `stale_after` seconds is dead: its trial fails, then is retried
STALE_AFTER_S = 30
SQLITE_TIMEOUT_S = 120


class _DropTrialFailures(logging.Filter):
    """Optuna logs a failed trial (a diverging one, one a stop interrupted) as a warning with its whole
    traceback; the sweep prints its own line for it and the summary its reason, so the record goes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.WARNING and str(record.msg).startswith("Trial ")
                    and " failed " in str(record.msg))


def quiet_optuna() -> None:
    """Optuna's warnings only, without its per-trial failure tracebacks (see ``_DropTrialFailures``)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optimize_logger = logging.getLogger("optuna.study._optimize")
    if not any(isinstance(f, _DropTrialFailures) for f in optimize_logger.filters):
        optimize_logger.addFilter(_DropTrialFailures())


def storage_url(sweep: SweepDefinition, beside: str | None = None) -> str:
    """The definition's storage, else ``optuna.db`` beside ``beside`` when that is a SQLite MLflow store
    (a multirun's tracking.uri: its study then lives with its runs), else mlruns/optuna.db."""
    if sweep.storage:
        return sweep.storage
    store = sqlite_file(beside) if beside else None
    folder = DEFAULT_STORAGE_DIR if store is None else store.parent
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / 'optuna.db').resolve()}"


class StorageError(GanlabError):
    """The sweep's storage cannot be opened (a server that does not answer, a missing driver, a
    read-only folder): one line naming it, not SQLAlchemy's traceback."""


def make_storage(url: str, stale_after: int = STALE_AFTER_S) -> RDBStorage:
    """An RDB storage with heartbeats, safe for several processes: SQLite in WAL mode with a long lock
    timeout and serialised transactions on one machine, or PostgreSQL/MySQL for workers on many machines."""
    try:
        # Optuna creates a SQLite file's tables on first use: not to be cut in half (a server's DDL is
        # transactional, and an unreachable server may take minutes to fail: Ctrl-C stays live there)
        with signals_held() if url.startswith("sqlite") else contextlib.nullcontext():
            return _open_storage(url, stale_after)
    except (OSError, sqlite3.Error, sqlalchemy.exc.SQLAlchemyError, ImportError) as exc:
        raise StorageError(f"storage {url} cannot be opened: {one_line(exc)}") from exc


def _open_storage(url: str, stale_after: int) -> RDBStorage:
    engine_kwargs: dict[str, Any] = {}
    path = sqlite_file(url)
    sqlite = path is not None
    if sqlite:
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S) as db:  # WAL: readers never block the writer
            db.execute("PRAGMA journal_mode=WAL")
        # isolation_level=None: Python's sqlite3 no longer opens transactions itself (it did so only
        # before writes, so a read-then-write ran its read outside any transaction); see below
        engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S, "isolation_level": None}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    with warnings.catch_warnings():  # heartbeats are marked experimental, and are what we need
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=min(HEARTBEAT_S, stale_after),
                             grace_period=stale_after,
                             heartbeat_stale_trial_callback=retry_after_heartbeat_stopped)
    if sqlite:
        _serialise_transactions(storage.engine)
    return storage


def _serialise_transactions(engine: sqlalchemy.engine.Engine) -> None:
    """Every transaction on this engine starts with ``BEGIN IMMEDIATE``: it holds SQLite's write lock
    from its first read, so a read-check-write is atomic across processes. Without it two workers took
    the same waiting trial: Optuna reads a trial's state, checks it is WAITING, then marks it RUNNING,
    and under Python's default sqlite3 mode the read saw a state another worker was about to change
    (a grid multirun then ran a combination twice and failed with "Cannot tell a COMPLETE trial")."""
    sqlalchemy.event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))


def grid_space(sweep: SweepDefinition) -> dict[str, list[Any]]:
    """The grid sampler's explicit value lists, from each parameter's range and step (or choices)."""
    space: dict[str, list[Any]] = {}
    for p in sweep.space:
        if p.type == "categorical":
            space[p.key] = list(p.choices)
        else:
            step = p.step or 1
            count = int((p.high - p.low) / step + 1e-9) + 1  # never past high
            space[p.key] = [p.low + i * step for i in range(count)]
    return space


def enqueue_grid(study: optuna.Study, sweep: SweepDefinition) -> None:
    """A multirun's combinations as WAITING trials, in order; those already in the study are skipped,
    so running the same command again only runs what is missing."""
    for params in sweep.grid:
        study.enqueue_trial(params, skip_if_exists=True)


def open_study(sweep: SweepDefinition, url: str, stale_after: int = STALE_AFTER_S,
               storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """Create the study, or load it if it exists (this is what makes an interrupted sweep resumable)."""
    spec = dict(sweep.sampler)
    if spec["name"] == "grid":
        spec["search_space"] = grid_space(sweep)
    directions = [o.direction for o in sweep.objectives]
    study = optuna.create_study(storage=storage or make_storage(url, stale_after),
                                sampler=optuna.samplers.RandomSampler(),  # replaced below, once the study is read
                                pruner=make_pruner(sweep.pruner), study_name=sweep.name,
                                directions=directions, load_if_exists=True)
    study.sampler = make_sampler(continuing_seed(spec, len(study.get_trials(deepcopy=False))))
    return study


def continuing_seed(spec: dict[str, Any], trials_so_far: int) -> dict[str, Any]:
    """The sampler's seed for a study that already holds ``trials_so_far`` trials. A fresh study keeps
    the definition's seed (reproducible); a continued one mixes in the count, or the same seed would
    draw the same random start-up points again: extending or resuming a seeded sweep repeated its
    first trials' parameters."""
    seed = spec.get("seed", 0)  # the registry's samplers default to seed 0; an explicit null is unseeded
    if trials_so_far == 0 or seed is None:
        return spec
    mixed = np.random.SeedSequence([int(seed), trials_so_far]).generate_state(1)[0]
    return {**spec, "seed": int(mixed)}


def open_sole_writer_study(sweep: SweepDefinition, url: str) -> tuple[optuna.Study, SoleWriterStorage]:
    """The study for a population sweep, the one process that writes it: reads served from memory,
    reports and results written behind (``sole_writer_storage``). Refused while another process holds it."""
    storage = SoleWriterStorage(make_storage(url))
    study = open_study(sweep, url, storage=storage)
    claim_study(study)
    return study, storage
