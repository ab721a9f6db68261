"""MLflow tracking: where runs go, one run per training, metrics in batches, artifacts, final status.

The tracking URI is ``tracking.uri`` if set, else ``$MLFLOW_TRACKING_URI``, else a SQLite store at
``mlruns/mlflow.db`` with artifacts under ``mlruns/artifacts/`` (MLflow 3 refuses a bare folder store).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import math
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    from ganlab.plots.plotter import Plotter

import ganlab
from ganlab.config.flatten import flatten_config
from ganlab.config.recipes import recipe_summary
from ganlab.config.uris import resolve_tracking_uri, sqlite_file
from ganlab.errors import GanlabError, one_line
from ganlab.run_files import RunFiles
from ganlab.run_heartbeat import Heartbeat
from ganlab.signals import signals_held
from ganlab.stored_runs import list_checkpoints
from ganlab.system_metrics import start_system_metrics, stop_system_metrics
from ganlab.tracking_spool import PROBE_EVERY_S, Spool, TrackingSpooled, is_unreachable, server_answers

MAX_PARAMS_PER_BATCH = 100  # MLflow's log_batch limit
SPOOL_WAIT_S = 60  # a run that ends while its server is down waits this long for it before spooling its end


class TrackingStoreError(GanlabError):
    """The tracking store or server cannot be reached or written; the message names it and why.
    ``run_id``: the run, if it was created before the failure."""

    def __init__(self, message: str, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


def _sqlite_dir(uri: str) -> Path | None:
    store = sqlite_file(uri)
    return None if store is None else store.parent


@contextlib.contextmanager
def _store_lock(uri: str):
    """Serialise first use of a SQLite store, and hold stop signals meanwhile: concurrent or
    interrupted schema migrations corrupt it."""
    store = _sqlite_dir(uri)
    if store is None:
        yield
        return
    store.mkdir(parents=True, exist_ok=True)
    with open(store / ".ganlab-init.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # Ctrl-C still works while another process holds it
        try:
            with signals_held():  # ... but not once this one may be creating tables
                yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@functools.cache
def git_commit() -> str:
    """The commit of the code this process runs (read once: a population sweep opens a run per trial)."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def warm_store(uri: str) -> None:
    """Open the store once (creating or migrating a SQLite file under the lock), so that the run's
    own calls find it ready; ``TrackerProcess`` does this while the trainer imports torch."""
    with _store_lock(uri):
        MlflowClient(uri).search_experiments(max_results=1)


def open_experiment(uri: str, name: str) -> tuple[MlflowClient, str]:
    """A client on ``uri`` and the id of experiment ``name``, creating both store and experiment once
    (under a lock for SQLite) with artifacts beside a SQLite store (mlruns/artifacts/<name>)."""
    with _store_lock(uri):
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(uri)
        existing = client.get_experiment_by_name(name)
        if existing is not None:
            return client, existing.experiment_id
        store = _sqlite_dir(uri)
        location = None
        if store is not None:
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
            location = (store / "artifacts" / safe).resolve().as_uri()
        try:
            return client, client.create_experiment(name, artifact_location=location)
        except mlflow.exceptions.MlflowException:  # created meanwhile by a process on another machine
            return client, client.get_experiment_by_name(name).experiment_id


NO_VALUE_BEFORE_TRAINING = ("loss_d", "loss_g")  # NaN placeholders until the first update


def stamped_metrics(metrics: dict[str, float], step: int) -> list[Metric]:
    """MLflow metrics for one evaluation, stamped now. The losses before the first update are NaN
    placeholders, not values: left out, so their curves start at the first update, not at the 0
    MLflow's store keeps for NaN. Any other NaN (the reverse KL while no sample is high-quality) is
    logged: the metric was computed and is undefined."""
    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in metrics.items()
            if not (step == 0 and k in NO_VALUE_BEFORE_TRAINING and math.isnan(v))]


class Tracker(RunFiles):
    """One MLflow run. Metrics go out in one ``log_batch`` call per evaluation, never per step.

    ``resume_run_id`` reopens an existing run instead of creating one: its params and config stay,
    and metrics at steps it already logged (by the process that was killed) are not logged twice.
    ``attach=True`` with it only adds to that run (artifacts of a finished one): its status stays.
    ``system_metrics=False`` leaves out MLflow's system metrics even if the config asks for them, and
    ``heartbeat=False`` the run's heartbeat (the trials of a population share one process: its parent
    run carries them).

    A run that cannot be set up (an unreachable server, a read-only store or artifact folder) is a
    one-line :class:`TrackingStoreError`; a run that was created is ended FAILED first, never left RUNNING.
    Once set up, a server that stops answering sends the run's calls to a local spool until it answers
    again (``tracking_spool``); a run that ends meanwhile raises :class:`TrackingSpooled` saying where.
    """

    def __init__(self, cfg: DictConfig, run_name: str | None = None, tags: dict[str, str] | None = None,
                 resume_run_id: str | None = None, plotter: Plotter | None = None, attach: bool = False,
                 system_metrics: bool = True, heartbeat: bool = True) -> None:
        self.uri = resolve_tracking_uri(cfg.tracking.uri)
        self._data_cfg, self._plotter = cfg.data, plotter
        self.logged_until = -1  # metrics at steps <= this are already in the run
        self._system_metrics = self._heartbeat = None
        self.run_id, self._owns_status = None, False  # whether a set-up failure must end the run FAILED
        self._spool: Spool | None = None  # while the server is unreachable: where the calls go
        self._probed = 0.0
        try:
            if resume_run_id is not None:
                self._reopen(resume_run_id, attach)
            else:
                self._create(cfg, run_name, tags)
            if not attach and heartbeat:
                self._heartbeat = Heartbeat(self.client, self.run_id)
            if not attach and system_metrics and cfg.tracking.system_metrics:
                self._system_metrics = start_system_metrics(self.run_id, self.uri, resumed=resume_run_id is not None)
        except Exception as exc:  # noqa: BLE001 -- MLflow, sqlite and OS errors alike: one line, no RUNNING run
            self._abandon(exc)

    def _create(self, cfg: DictConfig, run_name: str | None, tags: dict[str, str] | None) -> None:
        self.experiment_name = cfg.tracking.experiment
        self.client, self.experiment_id = open_experiment(self.uri, self.experiment_name)
        tags = {"seed": str(cfg.train.seed), "git_commit": git_commit(),
                "ganlab_version": ganlab.__version__, "model": cfg.model.name, "data": cfg.data.name,
                "recipe": recipe_summary(cfg), **(tags or {})}
        from ganlab.training.optimizers import short_run_boost  # torch: only once a run is made

        boost = short_run_boost(cfg.optim, cfg.train.iterations)
        if boost != 1.0:  # the logged optim.d_lr / g_lr are what was typed or chosen; this is what trained
            tags["short_run_boost"] = f"{boost:.3g}"
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        self.run_id, self._owns_status = run.info.run_id, True
        self.artifact_uri = run.info.artifact_uri
        self.log_config(cfg)

    def _abandon(self, exc: Exception) -> None:
        """Set-up failed: end the run FAILED if it exists (as far as the store allows), raise one line."""
        cause = one_line(exc)
        where = f"run {self.run_id} in " if self.run_id else ""
        if self._owns_status:
            for stop in (self._heartbeat.stop if self._heartbeat else None,
                         lambda: self.client.set_tag(self.run_id, "failure_reason", f"tracking set-up failed: {cause}"),
                         lambda: self.client.set_terminated(self.run_id, status="FAILED")):
                try:
                    if stop:
                        stop()
                except Exception:  # noqa: BLE001 -- the store may refuse this too; the message says so
                    where = f"run {self.run_id} (may still show RUNNING: `python -m ganlab.stale_runs` closes it) in "
        if isinstance(exc, GanlabError):
            raise exc
        raise TrackingStoreError(f"cannot record {where}the tracking store {self.uri}: {cause}", self.run_id) from None

    def log_config(self, cfg: DictConfig) -> None:
        """The config as params (flattened) and as config.yaml; logging the same config again is harmless."""
        params = [Param(k, str(v)[:6000]) for k, v in flatten_config(cfg).items()]
        for i in range(0, len(params), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[i:i + MAX_PARAMS_PER_BATCH])
        self.client.log_text(self.run_id, OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")

    def _reopen(self, run_id: str, attach: bool = False) -> None:
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(self.uri)
        run = self.client.get_run(run_id)
        self.run_id, self.artifact_uri = run_id, run.info.artifact_uri
        self.experiment_id = run.info.experiment_id
        self.experiment_name = self.client.get_experiment(self.experiment_id).name
        if attach:
            return
        history = self.client.get_metric_history(run_id, "d_real")  # logged at every evaluation
        self.logged_until = max((m.step for m in history), default=-1)
        self.client.update_run(run_id, status="RUNNING")
        self._owns_status = True
        resumes = int(run.data.tags.get("resumes", "0")) + 1
        self.client.set_tag(run_id, "resumes", str(resumes))
        if "failure_reason" in run.data.tags:  # why it stopped before: history now, not why it ends
            self.client.set_tag(run_id, "resumed_after", run.data.tags["failure_reason"])
            self.client.delete_tag(run_id, "failure_reason")

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if step <= self.logged_until:  # replayed after a resume: the same values are already logged
            return
        self.log_metric_batch(stamped_metrics(metrics, step))

    def log_metric_batch(self, batch: list[Metric]) -> None:
        """Metrics already stamped (a population's trial buffers its evaluations and sends them together)."""
        self._send(lambda: self.client.log_batch(self.run_id, metrics=batch),
                   lambda spool: spool.append("log_batch", metrics=[[m.key, m.value, m.timestamp, m.step]
                                                                    for m in batch]))

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        self._send(lambda: self.client.log_artifact(self.run_id, str(local_path), artifact_path),
                   lambda spool: spool.append("log_artifact", file=spool.keep_file(local_path),
                                              name=Path(local_path).name, artifact_path=artifact_path))

    def list_checkpoints(self) -> list[str]:
        """Artifact paths of this run's checkpoints, newest first (none known while offline)."""
        if self._spool is not None and not self._back_online():
            return []
        return list_checkpoints(self.client, self.run_id)

    # -- an unreachable server: the spool ---------------------------------------------------------------
    def _send(self, call, spool_it) -> Any:
        """``call()`` on the server; if it cannot be reached (now, or still), ``spool_it(spool)`` instead."""
        if self._spool is not None and not self._back_online():
            spool_it(self._spool)
            return None
        try:
            return call()
        except Exception as exc:
            if not is_unreachable(exc) or self.run_id is None:
                raise
            self._spool = Spool.create(self.run_id, self.uri)
            self._probed = time.monotonic()
            logging.getLogger("ganlab").warning(
                "the tracking server %s is unreachable; keeping run %s's records in %s until it answers",
                self.uri, self.run_id, self._spool.folder)
            spool_it(self._spool)
            return None

    @property
    def spooled(self) -> bool:
        """Whether records of this run wait in a spool for an unreachable server."""
        return self._spool is not None

    def send_spooled(self) -> bool:
        """If the server answers now, send what waits in the spool; True once nothing waits."""
        return self._back_online(force=True)

    def _wait_for_server(self) -> bool:
        """The run has ended offline: give a restarting server ``$GANLAB_SPOOL_WAIT_S`` (default 60 s)
        before leaving the records in the spool. True if they were sent."""
        wait_s = float(os.environ.get("GANLAB_SPOOL_WAIT_S", SPOOL_WAIT_S))
        if wait_s > 0:
            logging.getLogger("ganlab").warning("run %s has ended; waiting up to %.0f s for the tracking server %s",
                                                self.run_id, wait_s, self.uri)
        deadline = time.monotonic() + wait_s
        while not self._back_online(force=True):
            if time.monotonic() + 2 > deadline:
                return False
            time.sleep(2)
        return True

    def _back_online(self, force: bool = False) -> bool:
        """Every PROBE_EVERY_S (or now, if ``force``): if the server answers, send the spool; True if online."""
        if self._spool is None:
            return True
        if not force and time.monotonic() - self._probed < PROBE_EVERY_S:
            return False
        self._probed = time.monotonic()
        if not server_answers(self.uri):
            return False
        try:
            self._spool.send(self.client)
        except Exception as exc:
            if is_unreachable(exc):  # gone again mid-way: what was sent stays sent
                return False
            raise
        logging.getLogger("ganlab").warning("the tracking server %s answers again; run %s's spooled records are "
                                            "sent", self.uri, self.run_id)
        self._spool = None
        return True

    def plotter(self) -> Plotter:
        """The given plotter, else one built for the run's target (in the tracking process)."""
        if self._plotter is None:
            from ganlab.data.targets import build_target
            from ganlab.plots.plotter import build_plotter

            self._plotter = build_plotter(build_target(self._data_cfg))
        return self._plotter

    def log_png(self, data: bytes, path: str) -> None:
        folder, _, name = path.rpartition("/")
        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / name
            file.write_bytes(data)
            self.log_artifact(file, folder or None)

    def delete_remote_artifact(self, path: str) -> None:
        if self._spool is not None:  # an old checkpoint stays while offline: harmless
            return
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        try:
            get_artifact_repository(self.artifact_uri).delete_artifacts(path)
        except Exception as exc:  # a store that cannot delete keeps old checkpoints: worth a line, not a crash
            logging.getLogger("ganlab").warning("could not delete old checkpoint %s: %s", path, exc)

    def log_generator(self, generator, example, cfg: DictConfig) -> None:
        """The generator as the run's MLflow Model ``generator`` (see ``ganlab.generator_model``)."""
        from ganlab.generator_model import log_generator_model

        def spool_it(spool: Spool) -> None:
            import torch

            with tempfile.TemporaryDirectory() as tmp:
                saved = Path(tmp) / "generator_model.pt"
                torch.save({"generator": generator, "example": example,
                            "cfg": OmegaConf.to_container(cfg, resolve=True)}, saved)
                spool.append("log_generator", file=spool.keep_file(saved))

        self._send(lambda: log_generator_model(self.client, self.run_id, generator, example, cfg), spool_it)

    def register_generator(self, name: str) -> int | None:
        """Register the run's generator Model as the next version of ``name``; return the version
        (None while the server is unreachable: the registration waits in the spool)."""
        from ganlab.generator_model import register_generator

        return self._send(lambda: register_generator(self.client, self.run_id, name),
                          lambda spool: spool.append("register_generator", name=name))

    def set_tag(self, key: str, value: str) -> None:
        self._send(lambda: self.client.set_tag(self.run_id, key, value[:5000]),
                   lambda spool: spool.append("log_batch", tags=[[key, value[:5000]]]))

    def finish(self, status: str = "FINISHED", reason: str | None = None, wait_for_server: bool = True) -> None:
        """End the run. Offline, its end goes to the spool: ``wait_for_server`` waits a while for the
        server before raising :class:`TrackingSpooled` (a population's trials do not wait: the sweep
        sends their spools when the server answers again)."""
        stop_system_metrics(self._system_metrics)
        self._system_metrics = None
        if self._heartbeat is not None:
            self._heartbeat.stop()
        status = RunStatus.to_string(RunStatus.from_string(status))
        if reason:
            self._send(lambda: self.client.log_batch(self.run_id, tags=[RunTag("failure_reason", reason[:5000])]),
                       lambda spool: spool.append("log_batch", tags=[["failure_reason", reason[:5000]]]))
        end_time = int(time.time() * 1000)
        self._send(lambda: self.client.set_terminated(self.run_id, status=status, end_time=end_time),
                   lambda spool: spool.append("set_terminated", status=status, end_time=end_time))
        if self._spool is not None and not (wait_for_server and self._wait_for_server()):
            raise TrackingSpooled(
                f"run {self.run_id} ended {status}, but the tracking server {self.uri} is unreachable: it shows "
                f"RUNNING there until `python -m ganlab.tracking_spool` sends what is kept in {self._spool.folder} "
                f"({self._spool.describe()})")
