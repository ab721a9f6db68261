"""MLflow's own system metrics (``tracking.system_metrics=true``): CPU, memory, disk, network, and GPU
when ``nvidia-ml-py`` is installed, sampled every 10 s into the run's "System metrics" tab.

ganlab creates its runs with ``MlflowClient`` (not the fluent ``start_run``), so it starts MLflow's
``SystemMetricsMonitor`` for a run itself; ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` changes the period.
"""

from __future__ import annotations

SAMPLING_INTERVAL_S = 10


def start_system_metrics(run_id: str, tracking_uri: str, resumed: bool = False):
    """A started monitor logging ``system/*`` metrics to the run until :func:`stop_system_metrics`."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=SAMPLING_INTERVAL_S, resume_logging=resumed,
                                   tracking_uri=tracking_uri)
    monitor.start()
    return monitor


def stop_system_metrics(monitor) -> None:
    """Stop sampling and send what was sampled (before the run is ended: the monitor stops on its own
    once the run is no longer RUNNING)."""
    if monitor is not None:
        monitor.finish()
