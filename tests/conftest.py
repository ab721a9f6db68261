"""Shared fixtures: every test that trains logs to its own temporary MLflow store, and tests that need
a real `mlflow server` / `mlflow ui` start one on a free local port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_service(tmp_path) -> Iterator[Callable[..., str]]:
    """``start("server" | "ui", *args)`` runs the MLflow CLI on 127.0.0.1 and a free port, waits for
    /health and returns its base URL; every process started is stopped at teardown."""
    procs: list[subprocess.Popen] = []

    def start(command: str, *args: str) -> str:
        port = free_port()
        proc = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), command, *args,
                                 "--host", "127.0.0.1", "--port", str(port)],
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=1)
                return base
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow {command} did not come up on {base}") from None
                time.sleep(0.5)

    yield start
    for proc in procs:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
