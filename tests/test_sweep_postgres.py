"""A real PostgreSQL server as the sweep's storage, shared by two workers (the 'scaling out' set-up).

The fixture starts a throw-away server on a free port on 127.0.0.1 and stops it afterwards.
`.ci/run` installs Debian's postgresql when it is missing.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import mlflow_store

pytestmark = pytest.mark.slow  # a real server per test: only the whole suite (make test-all) runs it


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries not installed (.ci/run installs Debian's postgresql)")
    root = Path(tempfile.mkdtemp(prefix="ganlab-pg-"))  # directly under /tmp: the server user must reach it
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = _free_port()
    subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "ganlab"], check=True,
                   capture_output=True)
    opts = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1"
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://ganlab@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_a_postgres_study(tmp_path, postgres_url):
    spec = {"fixed": ["train.iterations=40", "train.eval_every=20", "train.plot_every=40", "train.eval_samples=2000"],
            "space": {"optim.d_lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
            "objective": "ks", "trials": 4, "sampler": {"name": "random", "seed": 1}, "pruner": {"name": "none"}}
    path = tmp_path / "pg.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store(tmp_path / "mlflow.db")}
    proc = subprocess.run([sys.executable, "-m", "ganlab.sweep", str(path), "--workers", "2", "--storage",
                           postgres_url], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    study = optuna.load_study(study_name="pg", storage=postgres_url)
    n = len(study.trials)
    assert 4 <= n <= 5 and sorted(t.number for t in study.trials) == list(range(n))
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    assert len({t.params["optim.d_lr"] for t in study.trials}) == n  # workers did not suggest alike
    assert not Path(tmp_path / "mlruns" / "optuna.db").exists()
