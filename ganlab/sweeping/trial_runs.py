"""The MLflow child runs of a population sweep, written off the training thread.

A population trains many trials in one process, so it cannot afford one MLflow call per metric per
trial on its training thread. Every call here is queued to one background thread that owns the
runs; metrics are buffered per run and sent with ``log_batch`` (up to MLflow's 1,000 per call) every
``flush_s`` seconds and when a run ends. Each run is a :class:`~ganlab.tracking.Tracker`, as a single
run's: the same params, config.yaml and tags, and on resume the same reopening (steps it already
logged are not logged twice). A failure of the thread is raised at the next :meth:`flush` or
:meth:`close`, so the sweep stops instead of losing records silently.

A tracking server that stops answering stops nothing: a run's records go to its spool (as a single
run's do) and are sent when the server answers again, checked every ``flush_s``; a trial that ends
meanwhile ends in its spool; a new trial's run waits for the server (up to ``$GANLAB_SERVER_WAIT_S``,
default 10 minutes), and the calls queued behind it wait with it.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any
from urllib.parse import urlparse

from mlflow.entities import Metric

from ganlab.config.uris import resolve_tracking_uri
from ganlab.errors import GanlabError, one_line
from ganlab.tracking import SPOOL_WAIT_S, Tracker, TrackingStoreError, stamped_metrics
from ganlab.tracking_spool import TrackingSpooled, is_unreachable, server_answers

MAX_METRICS_PER_BATCH = 1000  # MLflow's log_batch limit
SERVER_WAIT_S = 600  # how long a new trial's run waits for an unreachable server before the sweep stops
PROBE_S = 5.0


class TrialRunsError(GanlabError):
    """Writing a trial's MLflow run failed; the message says which call and why."""


class TrialRuns:
    def __init__(self, flush_s: float = 5.0) -> None:
        self._calls: queue.Queue[tuple[Callable[[], Any], Future] | None] = queue.Queue()
        self._trackers: dict[int, Tracker] = {}
        self._pending: dict[int, list[Metric]] = {}
        self._flush_s, self._last_flush = flush_s, time.monotonic()
        self._error: BaseException | None = None
        self._offline: dict[int, Tracker] = {}  # ended trials whose records (and end) wait in a spool
        self._warned: set[str] = set()
        self._thread = threading.Thread(target=self._serve, name="ganlab-trial-runs", daemon=True)
        self._thread.start()

    # -- the background thread -------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            try:
                item = self._calls.get(timeout=self._flush_s)
            except queue.Empty:
                item = ()
            if item is None:
                self._send_all()
                return
            if item:
                call, future = item
                try:
                    future.set_result(call())
                except BaseException as exc:  # noqa: BLE001 -- kept and raised on the training thread
                    future.set_exception(exc)
                    self._error = self._error or exc
            if time.monotonic() - self._last_flush >= self._flush_s:
                self._send_all()
                self._send_offline()

    def _send_all(self) -> None:
        self._last_flush = time.monotonic()
        for trial in list(self._pending):
            self._send(trial)

    def _send(self, trial: int) -> None:
        metrics, tracker = self._pending.pop(trial, []), self._trackers.get(trial)
        if tracker is None:
            return
        try:
            for i in range(0, len(metrics), MAX_METRICS_PER_BATCH):
                tracker.log_metric_batch(metrics[i:i + MAX_METRICS_PER_BATCH])  # spooled while offline
        except Exception as exc:  # noqa: BLE001
            self._error = self._error or exc

    def _send_offline(self) -> None:
        """Ended trials' spools, sent once their server answers again (probed once for all of them)."""
        if not self._offline:
            return
        uris = {tracker.uri for tracker in self._offline.values()}
        answering = {uri for uri in uris if server_answers(uri)}
        for trial, tracker in list(self._offline.items()):
            try:
                if tracker.uri in answering and tracker.send_spooled():
                    del self._offline[trial]
            except Exception as exc:  # noqa: BLE001 -- a refusal, not an outage: raised on the training thread
                self._error = self._error or exc

    def _await_server(self, uri: str) -> None:
        """An http(s) server that does not answer: wait for it (the trial's run cannot exist before it does)."""
        if urlparse(uri).scheme not in ("http", "https") or server_answers(uri):
            return
        wait_s = float(os.environ.get("GANLAB_SERVER_WAIT_S", SERVER_WAIT_S))
        if uri not in self._warned:
            self._warned.add(uri)
            logging.getLogger("ganlab").warning("the tracking server %s is unreachable; trials' records wait in "
                                                "spools and new trials' runs wait for it (up to %.0f s)", uri, wait_s)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not server_answers(uri):
            time.sleep(PROBE_S)

    def _submit(self, call: Callable[[], Any]) -> Future:
        if self._error is not None:
            self._raise()
        future: Future = Future()
        self._calls.put((call, future))
        return future

    def _raise(self) -> None:
        exc, self._error = self._error, None
        raise TrialRunsError(f"recording a trial in MLflow failed: {one_line(exc)}") from exc

    # -- the training thread's side ----------------------------------------------------------------
    def open(self, trial: int, cfg, run_name: str, tags: dict[str, str], resume_run_id: str | None = None) -> Future:
        """Create (or, with ``resume_run_id``, reopen) the trial's child run; the future holds its id."""
        def call() -> str:
            uri, run_id = resolve_tracking_uri(cfg.tracking.uri), resume_run_id
            deadline = time.monotonic() + float(os.environ.get("GANLAB_SERVER_WAIT_S", SERVER_WAIT_S))
            while True:
                self._await_server(uri)
                try:  # system metrics: the population's process is one, they go to the parent run
                    if run_id:
                        tracker = Tracker(cfg, resume_run_id=run_id, system_metrics=False, heartbeat=False)
                        tracker.log_config(cfg)  # again: the killed process may have stopped halfway through it
                        tracker.set_tag("trial_state", "running")  # it was "interrupted"
                    else:
                        tracker = Tracker(cfg, run_name=run_name, tags=tags, system_metrics=False, heartbeat=False)
                    break
                except TrackingStoreError as exc:  # the server went away mid-way: continue the run once it is back
                    if not is_unreachable(exc) or time.monotonic() > deadline:
                        raise
                    run_id = exc.run_id or run_id
            self._trackers[trial] = tracker
            return tracker.run_id

        return self._submit(call)

    def log_metrics(self, trial: int, metrics: dict[str, float], step: int) -> None:
        def call() -> None:
            tracker = self._trackers[trial]
            if step > tracker.logged_until:
                self._pending.setdefault(trial, []).extend(stamped_metrics(metrics, step))

        self._submit(call)

    def call(self, trial: int, method: str, *args: Any) -> Future:
        """Any Tracker method of the trial's run (tags, artifacts, figures), in order with the rest."""
        return self._submit(lambda: getattr(self._trackers[trial], method)(*args))

    def with_tracker(self, trial: int, work: Callable[[Tracker], Any]) -> Future:
        """``work(tracker)`` on the trial's run, in order with the rest (e.g. the runner's artifact loggers)."""
        return self._submit(lambda: work(self._trackers[trial]))

    def finish(self, trial: int, status: str, reason: str | None = None) -> Future:
        def call() -> None:
            self._send(trial)
            tracker = self._trackers.pop(trial)
            try:
                tracker.finish(status, reason, wait_for_server=False)
            except TrackingSpooled:  # its end waits in its spool with its records: sent when the server answers
                self._offline[trial] = tracker

        return self._submit(call)

    def attach(self, trial: int, cfg, run_id: str) -> None:
        """Hold an ended trial's run again, to add its artifacts; its status stays."""
        def call() -> None:
            self._await_server(resolve_tracking_uri(cfg.tracking.uri))
            self._trackers[trial] = Tracker(cfg, resume_run_id=run_id, attach=True)

        self._submit(call)

    def release(self, trial: int) -> None:
        self._submit(lambda: self._trackers.pop(trial, None))

    def run_id(self, trial: int) -> str | None:
        tracker = self._trackers.get(trial)
        return tracker.run_id if tracker else None

    def flush(self) -> None:
        """Wait until every queued call is done (and buffered metrics sent); raise a failure if any."""
        self._submit(self._send_all).result()
        if self._error is not None:
            self._raise()

    def close(self, wait: bool = True) -> None:
        """Send what is buffered and stop the thread. Spools still waiting for the server then are
        left for `python -m ganlab.tracking_spool` (said in one line), after a last wait for it."""
        self._calls.put(None)
        if wait:
            self._thread.join()
            deadline = time.monotonic() + float(os.environ.get("GANLAB_SPOOL_WAIT_S", SPOOL_WAIT_S))
            while self._offline and self._error is None:
                self._send_offline()
                if not self._offline or time.monotonic() + PROBE_S > deadline:
                    break
                time.sleep(PROBE_S)
        if self._error is not None:
            self._raise()
        if self._offline:
            runs = ", ".join(tracker.run_id for tracker in self._offline.values())
            logging.getLogger("ganlab").warning(
                "%d trial runs ended while the tracking server was unreachable and show RUNNING there until "
                "`python -m ganlab.tracking_spool` sends their spools (%s)", len(self._offline), runs)
