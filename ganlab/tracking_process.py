"""The CLI's tracker: the same :class:`~ganlab.tracking.Tracker`, run in a child process.

Importing MLflow and opening its store take about two seconds of CPU, as long as the rest of a short
run. In a child process they run on another core while the trainer composes its config and imports
torch and Lightning, and every metric, figure and file upload later overlaps training too. The
interface is the Tracker's; calls go through a pipe in order. Calls whose answer or file the trainer
needs (opening the run, uploads of temporary files, listing checkpoints, finishing) wait for the
child; metrics, figures and tags do not. A failure in the child is raised in the trainer at its next
waiting call, so it ends the run as a failure like any other.

If the trainer dies without finishing the run, the child logs what it already received, then exits
and leaves the run as a killed single process would (its final state is the next resume's concern).
Library callers (tests, sweeps, benchmarks) use the in-process Tracker: they have MLflow loaded.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path
from typing import Any

from ganlab.errors import GanlabError
from ganlab.run_files import RunFiles


class TrackingError(GanlabError):
    """The tracking process failed or died; the message says how."""


class EarlierCallFailed(TrackingError):
    """A call the trainer did not wait for (a figure, metrics) failed in the child; reported to the next
    call that waits, which itself was not run."""


def _serve(conn) -> None:
    """The child: import MLflow at once, then run the Tracker's methods as they arrive until EOF."""
    from ganlab.signals import ignore_stop_signals

    ignore_stop_signals()  # Ctrl-C and SIGTERM are the trainer's to handle; it closes the run through us
    from ganlab.runtime import configure_runtime
    from ganlab.tracking import Tracker

    _import_plotting()  # while the trainer still imports Lightning: the figures need torch, scipy, matplotlib
    configure_runtime()
    tracker: Tracker | None = None
    plotter = None  # built at warm time, while the trainer still imports Lightning
    failure: tuple[str, str] | None = None  # the first failure of a call nobody waited for
    orphaned = False  # the trainer is gone: log what it sent, answer nobody

    def reply(message) -> None:
        nonlocal orphaned
        if orphaned:
            return
        try:
            conn.send(message)
        except OSError:  # BrokenPipeError, ConnectionResetError: the trainer died (kill -9) meanwhile
            orphaned = True

    while True:
        try:
            method, args, kwargs, wait = conn.recv()
        except (EOFError, OSError):  # the trainer closed the pipe (or died): everything sent is done
            os._exit(0)  # skip interpreter teardown: MLflow's exit hooks cost a second and have nothing to do
        try:
            if failure is not None:
                raise _Replayed()
            if method == "warm":
                plotter = _warm(*args)
                continue
            if method == "open":
                tracker = Tracker(*args, plotter=plotter, **kwargs)
                result: Any = {"run_id": tracker.run_id, "artifact_uri": tracker.artifact_uri,
                               "experiment_name": tracker.experiment_name, "uri": tracker.uri}
            else:
                result = getattr(tracker, method)(*args, **kwargs)
            if wait:
                reply(("ok", result))
            if method == "open":  # the trainer goes on; meanwhile, ready the tracing of the generator Model
                _warm_export()
        except _Replayed:
            if wait:
                reply(("earlier", failure))
                failure = None
        except Exception as exc:  # noqa: BLE001 -- sent back whole: the trainer decides
            error = (type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            if isinstance(exc, GanlabError):
                error = ("GanlabError", str(exc))
            if wait:
                reply(("error", error))
            elif failure is None:
                failure = error


def _warm_export() -> None:
    try:
        from ganlab.generator_model import warm_export

        warm_export()
    except Exception:  # noqa: BLE001 -- only a warm-up: the real export reports its own errors
        pass


def _import_plotting() -> None:
    import ganlab.data.targets  # noqa: F401
    import ganlab.plots.plotter  # noqa: F401


def _warm(uri: str, data_cfg):
    """Open the store, and build the plotter (importing torch, scipy and matplotlib) for the figures
    to come. Errors are left for later: they reappear, reported, when the run opens or draws."""
    from ganlab.tracking import warm_store

    try:
        warm_store(uri)
    except Exception:  # noqa: BLE001
        pass
    try:
        from ganlab.data.targets import build_target
        from ganlab.plots.plotter import build_plotter

        return build_plotter(build_target(data_cfg))
    except Exception:  # noqa: BLE001
        return None


class _Replayed(Exception):
    """Internal: an earlier failure is reported to the next waiting call instead of running it."""


class TrackerProcess(RunFiles):
    """Start it first thing (the child imports MLflow meanwhile); :meth:`warm` the store once the
    config is valid; :meth:`open` the run; use it as a Tracker; :meth:`close` at the end."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")  # never fork a process that may hold torch's threads
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child,), name="ganlab-tracking", daemon=True)
        self._proc.start()
        child.close()
        self.run_id = self.artifact_uri = self.experiment_name = self.uri = ""
        self._finished = False
        self._touched_store = False  # until the first warm/open, the child only imports: safe to stop

    def _call(self, method: str, *args: Any, wait: bool = False, **kwargs: Any) -> Any:
        try:
            self._conn.send((method, args, kwargs, wait))
            if not wait:
                return None
            status, result = self._conn.recv()
        except (EOFError, OSError, BrokenPipeError):
            raise TrackingError(f"the tracking process died (exit code {self._proc.exitcode}) during {method}; "
                                "GANLAB_TRACKING=inline tracks in process, to see its error") from None
        if status in ("error", "earlier"):
            kind, message = result
            error = EarlierCallFailed if status == "earlier" else TrackingError
            raise error(message if kind == "GanlabError" else f"tracking failed: {kind}: {message}")
        return result

    def warm(self, uri: str, data_cfg) -> None:
        """In the background: open the store at ``uri`` (creating or migrating it), ready for
        :meth:`open`, and build the plotter for the ``data`` config's target, ready for the figures."""
        self._touched_store = True
        self._call("warm", uri, data_cfg)

    def open(self, cfg, run_name: str | None = None, tags: dict[str, str] | None = None) -> TrackerProcess:
        self._touched_store = True
        info = self._call("open", cfg, run_name=run_name, tags=tags, wait=True)
        self.run_id, self.artifact_uri = info["run_id"], info["artifact_uri"]
        self.experiment_name, self.uri = info["experiment_name"], info["uri"]
        return self

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._call("log_metrics", {k: float(v) for k, v in metrics.items()}, step)

    def log_png(self, data: bytes, path: str) -> None:
        self._call("log_png", data, path)

    # figures are drawn in the child, from frames: matplotlib's rendering is off the training process
    def log_frame(self, frame, metrics: dict[str, float], path: str) -> None:
        self._call("log_frame", frame, {k: float(v) for k, v in metrics.items()}, path)

    def log_animation(self, frames: list, path: str) -> None:
        self._call("log_animation", list(frames), path)

    def log_metric_curves(self, rows: list[dict[str, float]], path: str) -> None:
        self._call("log_metric_curves", list(rows), path)

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        self._call("log_artifact", str(local_path), artifact_path, wait=True)  # the file may be temporary

    def delete_remote_artifact(self, path: str) -> None:
        self._call("delete_remote_artifact", path)

    def list_checkpoints(self) -> list[str]:
        return self._call("list_checkpoints", wait=True)

    def set_tag(self, key: str, value: str) -> None:
        self._call("set_tag", key, value)

    def log_generator(self, generator, example, cfg) -> None:
        """Traced and logged in the child (``torch.export`` there, off the training process)."""
        self._call("log_generator", generator, example, cfg)

    def register_generator(self, name: str) -> int:
        return self._call("register_generator", name, wait=True)

    def finish(self, status: str = "FINISHED", reason: str | None = None) -> None:
        """End the run. Should an earlier call have failed in the child (reported to this one: e.g. a
        figure it could not draw, a store it could not write), the run is ended FAILED with that reason;
        should the child have died, it is ended FAILED from this process instead (what it last sent may
        be missing). Either way a requested FINISHED still raises, and the run is never left RUNNING."""
        try:
            self._call("finish", status, reason, wait=True)
        except EarlierCallFailed as exc:  # finish itself did not run: run it now, with the earlier failure
            if not self.run_id:
                raise
            self._call("finish", "FAILED" if status == "FINISHED" else status,
                       f"{reason}; {exc}" if reason else str(exc), wait=True)
            if status == "FINISHED":
                raise
        except TrackingError as exc:  # finish failed (a spooled end: the run ends later as asked) or the child died
            if not self.run_id or self._proc.is_alive():
                raise
            self._fail_here(f"{reason}; {exc}" if reason else str(exc))
            if status == "FINISHED":
                raise
        self._finished = True

    def _fail_here(self, reason: str) -> None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.uri)
        client.set_tag(self.run_id, "failure_reason", reason[:5000])
        client.set_terminated(self.run_id, status="FAILED")
        self._finished = True

    def close(self, timeout: float = 60.0) -> None:
        """Let the child log what it has and exit. Once the run is finished (every call before it was
        answered), or while the child has not touched a store, there is nothing to wait for; otherwise
        it is never stopped in the middle of a database write."""
        self._conn.close()
        if self._finished or not self._touched_store:
            self._proc.terminate()
        self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.terminate()
