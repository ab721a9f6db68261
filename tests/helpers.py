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


class FullDisk:
    """While ``full`` is set, every SQLite write (any engine: Optuna's and MLflow's) fails as SQLite
    fails on a full disk, inside SQLAlchemy's own error handling, and so do local artifact writes."""

    def __init__(self, monkeypatch) -> None:
        import errno
        import sqlite3

        from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository
        from sqlalchemy import event
        from sqlalchemy.engine.default import DefaultDialect

        self.full = False
        self._event, self._listeners = event, []

        def refuse_writes(cursor, statement, *rest):
            if self.full and statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE", "REPLACE")):
                raise sqlite3.OperationalError("database or disk is full")
            return False  # not handled: the dialect executes it

        for name in ("do_execute", "do_executemany", "do_execute_no_params"):
            event.listen(DefaultDialect, name, refuse_writes)
            self._listeners.append((DefaultDialect, name, refuse_writes))
        for method in ("log_artifact", "log_artifacts"):
            original = getattr(LocalArtifactRepository, method)

            def write(repo, *args, _original=original, **kwargs):
                if self.full:
                    raise OSError(errno.ENOSPC, "No space left on device")
                return _original(repo, *args, **kwargs)

            monkeypatch.setattr(LocalArtifactRepository, method, write)

    def remove(self) -> None:
        """Space is freed: writes succeed again."""
        self.full = False
        for target, name, fn in self._listeners:
            self._event.remove(target, name, fn)


def train_untracked(cfg) -> dict[str, float]:
    """The single-run loop (GANModule under Lightning) for ``cfg.train.iterations``, then one
    evaluation, as `run_training` does but without MLflow, figures or files: for tests about what
    training computes, where the ~2 s of recording a run would be most of the cost."""
    import pytorch_lightning as pl

    from ganlab.data.loaders import training_loader
    from ganlab.training.evaluation import Evaluator
    from ganlab.training.runner import build_module, make_trainer

    pl.seed_everything(cfg.train.seed, verbose=False)
    module = build_module(cfg)
    make_trainer(cfg, []).fit(module, training_loader(module.target, cfg.train, 0))
    assert module.iteration == cfg.train.iterations
    metrics, _ = Evaluator(module, cfg.train.eval_samples, cfg.train.seed).evaluate(module)
    return metrics
