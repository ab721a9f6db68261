"""Checkpoints and resume: a killed run continues to exactly the result of an uninterrupted one;
bad resumes are one clear line and leave the run alone; checkpoint writes are atomic and reads are
weights-only."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import mlflow_store
from mlflow.tracking import MlflowClient

from ganlab.atomic_files import save_atomic
from ganlab.config.compose import compose_config
from ganlab.errors import CheckpointError, ConfigError
from ganlab.training.checkpoints import checkpoint_name, load_checkpoint
from ganlab.training.resume import prepare_resume
from ganlab.training.runner import run_training

SHORT = ["train.eval_every=50", "train.plot_every=100", "train.ckpt_every=100", "train.eval_samples=2000"]


def _cli(args, uri, cwd, **kwargs):
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "ganlab.train", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def _only_run(uri, experiment="default"):
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return client, run


def _checkpoints(run):
    folder = Path(run.info.artifact_uri.removeprefix("file://")) / "checkpoints"
    return sorted(p.name for p in folder.glob("ckpt_*.pt"))


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    args = ["train.iterations=600", *SHORT]
    (tmp_path / "fresh").mkdir()  # its own store and artifact folder, apart from the run to kill
    killed_uri, fresh_uri = mlflow_store(tmp_path / "killed.db"), mlflow_store(tmp_path / "fresh" / "fresh.db")
    fresh = _cli(args, fresh_uri, tmp_path / "fresh")  # the uninterrupted reference, on the other core
    proc = _cli(args, killed_uri, tmp_path)
    run_id = proc.stdout.readline().split()[2]
    folder = None
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "artifacts").rglob("ckpt_00000200.pt"))
        if found:
            folder = found[0].parent
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert folder is not None and proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    client, run = _only_run(killed_uri)
    assert run.info.status == "RUNNING"  # kill -9: nothing could mark it

    resumed = _cli([f"resume={run_id}"], killed_uri, tmp_path)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"run {run_id} resumed at iteration" in out

    fresh.communicate(timeout=300)
    assert fresh.returncode == 0

    _, done = _only_run(killed_uri)
    fresh_client, reference = _only_run(fresh_uri)
    assert done.info.run_id == run_id and done.info.status == "FINISHED" and done.data.tags["resumes"] == "1"
    assert done.data.metrics == reference.data.metrics  # exactly, every metric
    for key in ("ks", "loss_d", "mean"):  # and the whole history, each step logged once
        mine = [(m.step, m.value) for m in client.get_metric_history(run_id, key)]
        theirs = [(m.step, m.value) for m in fresh_client.get_metric_history(reference.info.run_id, key)]
        np.testing.assert_array_equal(sorted(mine), sorted(theirs), err_msg=key)
    samples = [np.load(Path(r.info.artifact_uri.removeprefix("file://")) / "samples.npy") for r in (done, reference)]
    np.testing.assert_array_equal(samples[0], samples[1])
    assert _checkpoints(done) == [checkpoint_name(600)]  # keep 1: the newest


@pytest.mark.slow
def test_extending_a_finished_run(tracking_uri):
    first = run_training(compose_config(["train.iterations=200", *SHORT]), verbose=False)
    cfg, point, skipped = prepare_resume(first.run_id, ["train.iterations=300"])
    assert point.state["iteration"] == 200 and not skipped
    result = run_training(cfg, resume=point, verbose=False)
    client = MlflowClient(tracking_uri)
    run = client.get_run(first.run_id)
    assert result.run_id == first.run_id and result.iterations == 300 and run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(first.run_id, "ks")] == list(range(0, 301, 50))
    assert run.data.params["train.iterations"] == "200"  # params record how the run started
    with pytest.raises(ConfigError, match="already reached iteration 300"):
        prepare_resume(first.run_id, [])


def test_a_killed_extension_resumes_toward_its_extended_length(tracking_uri, monkeypatch):
    """config.yaml and the params keep a run's first length; a resume without train.iterations must
    go on toward the length the killed extension was training to (its checkpoint says which)."""
    from ganlab.signals import Stopped
    from ganlab.training import checkpoints

    first = run_training(compose_config(["train.iterations=200", *SHORT]), verbose=False)
    cfg, point, _ = prepare_resume(first.run_id, ["train.iterations=400"])
    calls = iter(range(10**6))
    with monkeypatch.context() as patch, pytest.raises(Stopped):
        patch.setattr(checkpoints, "check_stop", lambda: Stopped(signal.SIGTERM) if next(calls) == 99 else None)
        run_training(cfg, resume=point, verbose=False)  # stopped at iteration 300 of 400
    assert MlflowClient(tracking_uri).get_run(first.run_id).info.status == "KILLED"
    cfg, point, _ = prepare_resume(first.run_id, [])
    assert point.state["iteration"] == 300 and cfg.train.iterations == 400
    assert run_training(cfg, resume=point, verbose=False).iterations == 400


def test_changed_config_is_refused_and_the_run_is_untouched(tracking_uri):
    result = run_training(compose_config(["train.iterations=100", *SHORT]), verbose=False)
    client = MlflowClient(tracking_uri)
    before = client.get_run(result.run_id)
    for overrides, message in [(["optim.d_lr=0.1", "train.iterations=200"], "optim.d_lr: 0.001 -> 0.1"),
                               (["model=vanilla"], "not allowed with resume"),
                               (["train.colour=1"], "train.colour is not a key")]:
        with pytest.raises(ConfigError) as err:
            prepare_resume(result.run_id, overrides)
        assert message in str(err.value) and "\n" not in str(err.value)
    after = client.get_run(result.run_id)
    assert after.info.status == before.info.status == "FINISHED" and after.data.tags == before.data.tags


@pytest.mark.slow
def test_resume_errors_for_unknown_runs_and_missing_or_corrupt_checkpoints(tracking_uri):
    with pytest.raises(ConfigError, match="no such run"):
        prepare_resume("0123456789abcdef0123456789abcdef", [])
    bare = run_training(compose_config(["train.iterations=20", *SHORT, "train.ckpt_every=0"]), verbose=False)
    with pytest.raises(ConfigError, match="has no checkpoints"):
        prepare_resume(bare.run_id, ["train.iterations=40"])

    run = run_training(compose_config(["train.iterations=200", *SHORT, "train.ckpt_keep=2"]), verbose=False)
    client = MlflowClient(tracking_uri)
    folder = Path(client.get_run(run.run_id).info.artifact_uri.removeprefix("file://")) / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == [checkpoint_name(100), checkpoint_name(200)]
    newest = folder / checkpoint_name(200)
    newest.write_bytes(newest.read_bytes()[:1000])  # a truncated upload
    cfg, point, skipped = prepare_resume(run.run_id, ["train.iterations=300"])
    assert point.state["iteration"] == 100 and len(skipped) == 1 and "ckpt_00000200.pt" in skipped[0]
    (folder / checkpoint_name(100)).write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="no checkpoint of the run can be read"):
        prepare_resume(run.run_id, ["train.iterations=300"])
    assert client.get_run(run.run_id).info.status == "FINISHED"


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_atomic({"format": 1, "generator": {"w": torch.ones(3)}}, path)

    def crash(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a zip")
        raise OSError("power lost mid-write")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="power lost"):
        save_atomic({"format": 1, "generator": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["generator"]["w"], torch.ones(3))  # the old one, whole
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary left behind


class Payload:
    """Stands for anything a checkpoint must never unpickle."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_weights_only_loading_rejects_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "generator": {}, "payload": Payload()}, path)
    with pytest.raises(CheckpointError, match="cannot be read safely"):
        load_checkpoint(path)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.ones(2)}, other)
    with pytest.raises(CheckpointError, match="not a ganlab checkpoint"):
        load_checkpoint(other)


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [["experiment=cgan_two_blobs"], ["data=ring8", "noise=normal"],
                                       ["model=minibatch", "train.batch_size=64"],
                                       pytest.param(["experiment=ganotes_digits", "train.batch_size=32",
                                                     "train.eval_samples=500"], marks=pytest.mark.slow)],
                         ids=["cgan", "pack2d", "minibatch", "digits-loader-dropout"])
def test_resuming_from_an_earlier_checkpoint_reproduces_the_run(overrides, tracking_uri):
    """Resume a finished run from its middle checkpoint: it must end exactly where it ended."""
    cfg = compose_config([*overrides, "train.iterations=100", *SHORT, "train.ckpt_every=50", "train.ckpt_keep=2"])
    whole = run_training(cfg, verbose=False)
    client = MlflowClient(tracking_uri)
    folder = Path(client.get_run(whole.run_id).info.artifact_uri.removeprefix("file://")) / "checkpoints"
    (folder / checkpoint_name(100)).unlink()
    again_cfg, point, _ = prepare_resume(whole.run_id, [])
    assert point.state["iteration"] == 50
    again = run_training(again_cfg, resume=point, verbose=False)
    np.testing.assert_equal(again.metrics, whole.metrics)  # exactly equal; NaN (no mode reached yet) equals NaN


def test_resuming_a_population_trial_points_to_its_sweep(tracking_uri):
    result = run_training(compose_config(["train.iterations=20", *SHORT, "train.ckpt_every=0"]), verbose=False)
    client = MlflowClient(tracking_uri)
    for key, value in {"population": "true", "trial_number": "3", "sweep": "default"}.items():
        client.set_tag(result.run_id, key, value)  # as a population sweep tags its trials' runs
    with pytest.raises(ConfigError) as err:
        prepare_resume(result.run_id, [])
    assert str(err.value) == (f"resume={result.run_id}: the run is trial 3 of the population sweep 'default', which "
                              "checkpoints its trials itself: run that sweep's command again to continue it")
