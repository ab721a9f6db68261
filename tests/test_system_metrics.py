"""tracking.system_metrics=true: MLflow's own system metrics fill the run's "System metrics" tab;
off by default (no psutil thread, no system/* metrics)."""

import pytest
from mlflow.tracking import MlflowClient

from ganlab.config.compose import compose_config
from ganlab.training.runner import run_training

RUN = ["train.iterations=400", "train.eval_every=200", "train.plot_every=400", "train.eval_samples=2000"]


@pytest.mark.slow
def test_system_metrics_are_logged_when_asked_and_only_then(tracking_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.5")  # a short run still gets samples
    asked = run_training(compose_config([*RUN, "tracking.system_metrics=true"]), verbose=False)
    plain = run_training(compose_config(RUN), verbose=False)
    client = MlflowClient(tracking_uri)
    metrics = client.get_run(asked.run_id).data.metrics
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(metrics)
    assert 0 <= metrics["system/cpu_utilization_percentage"] <= 100
    assert len(client.get_metric_history(asked.run_id, "system/cpu_utilization_percentage")) >= 2
    assert client.get_run(asked.run_id).info.status == "FINISHED"
    assert not [k for k in client.get_run(plain.run_id).data.metrics if k.startswith("system/")]
