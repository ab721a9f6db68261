"""A shared MLflow tracking server, started as `make server` starts it: concurrent training runs
arrive complete, artifacts (checkpoints included) go through the server, and sampling reads back."""

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import free_port, mlflow_store, start_mlflow, stop_mlflow
from helpers import artifact_paths
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow  # a real server per test: only the whole suite (make test-all) runs it

TINY = ["train.iterations=40", "train.eval_every=10", "train.plot_every=20", "train.eval_samples=2000",
        "train.ckpt_every=10", "train.ckpt_keep=1"]


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """One server for the tests that only use it (each in its own experiment): (URL, its store).
    Two worker processes, as a shared server would run: requests of concurrent runs land on both."""
    store = tmp_path_factory.mktemp("server") / "mlruns"
    proc, base = start_mlflow(store.parent, "server", "--backend-store-uri", mlflow_store(store / "mlflow.db"),
                              "--artifacts-destination", str(store / "artifacts"), "--serve-artifacts",
                              "--workers", "2")
    yield base, store
    stop_mlflow(proc)


def _ganlab(module, args, cwd, **extra_env: str):
    env = {**os.environ, "MLFLOW_TRACKING_URI": "sqlite:///unused.db", "PYTHONUNBUFFERED": "1", **extra_env}
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_concurrent_runs_through_the_server_arrive_complete(shared_server, tmp_path):
    server, store = shared_server
    runs = [_ganlab("ganlab.train", [*TINY, f"train.seed={seed}", f"tracking.uri={server}"], tmp_path)
            for seed in (0, 1)]
    for proc in runs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "View run" not in out + err and "(its web UI: open that address)" in out  # ganlab's lines, not MLflow's
    client = MlflowClient(server)
    experiment_id = client.get_experiment_by_name("default").experiment_id
    found = client.search_runs([experiment_id])
    assert len(found) == 2 and {r.data.tags["seed"] for r in found} == {"0", "1"}
    for run in found:
        assert run.info.status == "FINISHED"
        for key in ("ks", "d_real"):
            assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [0, 10, 20, 30, 40]
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss_g")] == [10, 20, 30, 40]
        arts = artifact_paths(client, run.info.run_id)
        for expected in ("config.yaml", "samples.npy", "model/generator.pt", "plots/histogram.gif"):
            assert expected in arts
        assert [a for a in arts if a.startswith("checkpoints/")] == ["checkpoints/ckpt_00000040.pt"]  # keep 1
    assert len(list((store / "artifacts" / experiment_id).rglob("samples.npy"))) == 2  # uploaded via the server
    assert not (tmp_path / "unused.db").exists()

    sample = _ganlab("ganlab.sample", [f"run_id={found[0].info.run_id}", "n=1000", f"out={tmp_path / 's.npy'}",
                                       f"tracking.uri={server}"], tmp_path)
    _, err = sample.communicate(timeout=300)
    assert sample.returncode == 0, err
    assert np.load(tmp_path / "s.npy").shape == (1000, 1)

    resumed = _ganlab("ganlab.train", [f"resume={found[0].info.run_id}", "train.iterations=50",
                                       f"tracking.uri={server}"], tmp_path)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "resumed at iteration 40" in out  # reading the checkpoint back printed MLflow's progress bars
    assert "Downloading artifacts" not in out + err and "View run" not in out + err


def test_a_sweep_through_the_server(shared_server, tmp_path):
    server, _ = shared_server
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump({
        "fixed": ["train.iterations=30", "train.eval_every=10", "train.plot_every=30", "train.eval_samples=2000"],
        "space": {"optim.d_lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
        "objective": "ks", "trials": 2, "sampler": {"name": "tpe", "seed": 0}, "pruner": {"name": "none"}}))
    sweep = _ganlab("ganlab.sweep", [str(spec), "--workers", "2", "--storage", f"sqlite:///{tmp_path / 'o.db'}",
                                     "--tracking-uri", server], tmp_path)
    out, err = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, out + err
    assert "View run" not in out + err
    client = MlflowClient(server)
    runs = client.search_runs([client.get_experiment_by_name("sweep-tiny").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) >= 2 and all(r.info.status == "FINISHED" for r in runs)


def _serve(store, port: int) -> subprocess.Popen:
    """`make server` on ``port`` with one worker process (each of its default four imports MLflow: ~8 s
    of CPU): the outage tests start it twice on the same port."""
    proc, _ = start_mlflow(store.parent, "server", "--backend-store-uri", mlflow_store(store / "mlflow.db"),
                           "--artifacts-destination", str(store / "artifacts"), "--serve-artifacts",
                           "--workers", "1", port=port)
    return proc


def _train_through(uri: str, cwd, experiment: str, iterations: int, plot_every: int, **extra_env: str):
    """A CLI run logging to ``uri`` in its own experiment, every 100 iterations."""
    return _ganlab("ganlab.train", [f"train.iterations={iterations}", "train.eval_every=100",
                                    f"train.plot_every={plot_every}", "train.eval_samples=2000", "train.ckpt_every=0",
                                    f"tracking.uri={uri}", f"tracking.experiment={experiment}"], cwd, **extra_env)


def test_a_server_outage_loses_no_evaluation_of_a_run_that_outlives_it_or_of_one_that_ends_in_it(tmp_path):
    """Two runs through one server, killed once both are training: the short one ends while the server
    is down (after the 5 s it waits for it), says so in one line and is spooled, then sent by
    `python -m ganlab.tracking_spool`; the long one goes on through the outage (or, if it ends first,
    waits its default 60 s) and finishes once the server is back. Both end FINISHED with every
    evaluation, once. (One test, so the server starts twice, not four times: ~8 s of CPU each.)"""
    import signal

    store, port = tmp_path / "mlruns", free_port()
    server = _serve(store, port)
    uri = f"http://127.0.0.1:{port}"
    outlives = _train_through(uri, tmp_path, "outlives", 3000, 3000)
    ends_in = _train_through(uri, tmp_path, "ends-in", 1000, 500, GANLAB_SPOOL_WAIT_S="5")
    try:
        for run in (outlives, ends_in):
            while not run.stdout.readline().startswith("[it "):  # training, and logging
                assert run.poll() is None, run.stderr.read()[-3000:]
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()

        out, err = ends_in.communicate(timeout=600)
        lines = [line for line in err.splitlines() if line.startswith("ganlab:")]
        assert ends_in.returncode == 2 and len(lines) == 1, err[-3000:]
        assert "ended FINISHED, but the tracking server" in lines[0] and "python -m ganlab.tracking_spool" in lines[0]
        assert "Traceback" not in err

        server = _serve(store, port)
        out, err = outlives.communicate(timeout=600)
        assert outlives.returncode == 0, err[-3000:]
        sent = subprocess.run([sys.executable, "-m", "ganlab.tracking_spool"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)
        assert sent.returncode == 0 and "sent" in sent.stdout, sent.stderr

        client = MlflowClient(uri)
        for experiment, iterations in (("outlives", 3000), ("ends-in", 1000)):
            (finished,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
            assert finished.info.status == "FINISHED", experiment
            steps = [m.step for m in client.get_metric_history(finished.info.run_id, "ks")]
            assert sorted(steps) == list(range(0, iterations + 1, 100)), experiment  # every evaluation, once
            assert "samples.npy" in artifact_paths(client, finished.info.run_id), experiment
            assert not (tmp_path / "mlruns" / "spool" / finished.info.run_id).exists(), experiment
    finally:
        outlives.kill()
        ends_in.kill()
        with contextlib.suppress(ProcessLookupError):  # the first server, if the second did not start
            os.killpg(server.pid, signal.SIGKILL)


def test_a_population_sweep_carries_on_through_a_server_outage(tmp_path):
    """The server killed while a population trains and restarted ~20 s later: trials that end or
    start meanwhile wait (in spools, and for the server), the sweep finishes with exit 0, and every
    trial has one FINISHED child run with every evaluation, once."""
    import signal
    import time

    store, port = tmp_path / "mlruns", free_port()
    server = _serve(store, port)
    uri = f"http://127.0.0.1:{port}"
    spec = {"fixed": ["train.iterations=1500", "train.eval_every=100", "train.plot_every=1500",
                      "train.eval_samples=2000"],
            "space": {"optim.d_lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
            "objective": {"metric": "ks"}, "trials": 4, "sampler": {"name": "random", "seed": 0},
            "pruner": {"name": "none"}}
    (tmp_path / "outage.yaml").write_text(yaml.safe_dump(spec))
    sweep = _ganlab("ganlab.sweep", [str(tmp_path / "outage.yaml"), "--population", "2", "--threads", "1",
                                     "--storage", f"sqlite:///{tmp_path / 'optuna.db'}", "--tracking-uri", uri],
                    tmp_path, GANLAB_SPOOL_WAIT_S="120")
    try:
        while not sweep.stdout.readline().startswith("[population] step"):  # training, and logging
            assert sweep.poll() is None, sweep.stderr.read()[-3000:]
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        time.sleep(12)  # the outage (and the ~8 s the server takes to start)
        server = _serve(store, port)
        out, err = sweep.communicate(timeout=600)
        assert sweep.returncode == 0, err[-3000:]
        assert "Traceback" not in err
        client = MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("sweep-outage").experiment_id])
        (parent,) = [r for r in runs if r.data.tags.get("ganlab.role") == "sweep_parent"]
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        assert parent.info.status == "FINISHED"
        assert sorted(int(c.data.tags["trial_number"]) for c in children) == list(range(4))
        for child in children:
            assert child.info.status == "FINISHED", child.data.tags
            steps = [m.step for m in client.get_metric_history(child.info.run_id, "ks")]
            assert sorted(steps) == list(range(0, 1501, 100)), child.data.tags["trial_number"]
    finally:
        sweep.kill()
        os.killpg(server.pid, signal.SIGKILL)
