"""Process-wide set-up that used to happen as a side effect of importing modules: warning filters,
library log levels and matplotlib's headless backend. Each entry point (train, sweep, sample,
benchmarks) calls :func:`configure_runtime`; importing any ganlab module changes nothing.

Call it after importing pytorch_lightning (its import sets its own logger back to INFO); calling it
again is harmless."""

from __future__ import annotations

import logging
import os
import sys
import threading
import warnings

from ganlab.errors import one_line

QUIET_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "alembic", "mlflow")
# MLflow logs every failed SQL call's whole traceback at ERROR, then raises it: ganlab reports what it
# raises in one line (a full disk mid-sweep printed 25 tracebacks of ~90 lines)
SILENT_LOGGERS = ("mlflow.store.db.utils",)
IGNORED_WARNINGS = (".*does not have many workers.*", ".*GPU available but not used.*", ".*treespec.*",
                    ".*configure_optimizers` returned `None`.*")  # a population's cohorts own their optimizers


def configure_runtime() -> None:
    """Quiet library chatter and pick the Agg backend (no display) before any figure is drawn."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in SILENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    for pattern in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", pattern)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # reading a run back is not a download
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # ganlab's own last lines say where
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when MLflow is imported, which may be later
    # an unreachable server fails a call after ~7 s (MLflow's default: minutes); the run's calls then go
    # to a local spool until it answers again (ganlab.tracking_spool)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    threading.excepthook = _thread_error_in_one_line
    if "matplotlib" in sys.modules:
        sys.modules["matplotlib"].use("Agg")
    else:  # read when matplotlib is first imported: no need to import it (slow) before a figure is due
        os.environ["MPLBACKEND"] = "Agg"


def _thread_error_in_one_line(args: threading.ExceptHookArgs) -> None:
    """A background thread that dies (Optuna's trial heartbeat on a full disk, say) prints one line:
    the main thread meets the same fault and reports it, so a second, 90-line traceback only hides
    that report. ``GANLAB_DEBUG=1`` keeps Python's full traceback."""
    if os.environ.get("GANLAB_DEBUG") or args.exc_type is SystemExit:
        threading.__excepthook__(args)
        return
    name = args.thread.name if args.thread is not None else "a background thread"
    print(f"ganlab: background thread {name!r} stopped: {one_line(args.exc_value)}", file=sys.stderr, flush=True)
