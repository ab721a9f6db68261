"""Small helpers several test files share (pytest puts tests/ on sys.path, so `from helpers import ...`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(args: list[str], uri: str, cwd: Path, module: str = "ganlab.train",
            timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m <module> args`` in a subprocess that logs to the MLflow store at ``uri``."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def artifact_paths(client, run_id: str, path: str = "") -> list[str]:
    """Every artifact file of a run, recursively, as paths relative to its artifact root."""
    out = []
    for item in client.list_artifacts(run_id, path):
        out += artifact_paths(client, run_id, item.path) if item.is_dir else [item.path]
    return out


def train_finished(overrides: list[str], uri: str):
    """Train in process (no interpreter start-up: the CLI path has its own tests) and return
    ``(client, run, result)`` for a run that must have ended FINISHED in the store at ``uri``."""
    from mlflow.tracking import MlflowClient

    from ganlab.config.compose import compose_config
    from ganlab.training.runner import run_training

    result = run_training(compose_config(overrides), verbose=False)
    client = MlflowClient(uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    return client, run, result
