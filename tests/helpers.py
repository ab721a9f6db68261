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
