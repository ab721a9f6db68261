"""End to end: the real CLI in a subprocess creates a complete MLflow run; bad input and NaNs fail cleanly."""

import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from conftest import mlflow_store
from helpers import artifact_paths, run_cli, train_finished
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
TINY = ["train.iterations=40", "train.eval_every=10", "train.plot_every=20", "train.eval_samples=2000"]


def _cli(args, uri, cwd):
    return run_cli(args, uri, cwd, timeout=300)


def test_cli_run_is_recorded_in_mlflow(tmp_path):
    uri = mlflow_store(tmp_path / "mlflow.db")
    proc = _cli(TINY, uri, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "[it 40/40] KS" in proc.stdout and "finished run" in proc.stdout
    first = next(line for line in proc.stdout.splitlines() if line.startswith("[it "))
    assert first.startswith("[it  0/40]") and first.endswith("(before training)")  # was "loss D nan G nan"
    assert "nan" not in proc.stdout and f"(browse with: mlflow ui --backend-store-uri {uri})" in proc.stdout
    assert not (tmp_path / "outputs").exists()  # no stray Hydra folder

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("default")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.info.run_id in proc.stdout
    assert run.data.params["optim.d_lr"] == "0.001" and run.data.params["train.iterations"] == "40"
    assert run.data.tags["seed"] == "0" and run.data.tags["ganlab_version"]
    # 40 iterations of the 1D recipe (reference 2,000): rates x4 at most, said on the first line and in a tag
    assert "a short run: learning rates x4, d_lr 0.004, g_lr 0.004" in proc.stdout
    assert run.data.tags["short_run_boost"] == "4"
    for key in ("mean", "std", "skewness", "kurtosis", "ks", "w1_over_std", "d_real", "d_fake"):
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in history] == [0, 10, 20, 30, 40], key
    for key in ("loss_d", "loss_g"):  # no loss before the first update: not a fake 0 at step 0
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [10, 20, 30, 40], key
    arts = artifact_paths(client, run.info.run_id)
    for expected in ("config.yaml", "samples.npy", "model/generator.pt", "model/discriminator.pt",
                     "model/generator_ema.pt", "plots/histogram.gif", "plots/metrics.png",
                     "plots/histogram_000000.png", "plots/histogram_000040.png"):
        assert expected in arts, expected
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="samples.npy",
                                                tracking_uri=uri, dst_path=str(tmp_path / "dl"))
    samples = np.load(local)
    assert samples.shape == (10_000, 1) and np.isfinite(samples).all()


def test_bad_config_is_one_line_without_a_traceback(tmp_path):
    proc = _cli(["optim.d_lr=-1"], f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "ganlab: error: optim.d_lr=-1.0 is not allowed; must be > 0"
    assert not (tmp_path / "mlflow.db").exists()  # nothing was started


def test_a_gpu_asked_for_on_a_machine_without_one_creates_no_store(tmp_path):
    """The check ran once the tracking process had opened (and so created) the store: an empty
    mlflow.db was left behind."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = _cli(["train.accelerator=cuda"], f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("ganlab: error: train.accelerator='cuda' but no CUDA device is available; "
                                   "use cpu or auto")
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_bad_tracking_env_is_a_clear_error(tmp_path):
    proc = _cli(TINY, "./mlruns", tmp_path)
    assert proc.returncode == 2
    assert "MLFLOW_TRACKING_URI='./mlruns'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_diverging_run_ends_failed_with_a_reason(tmp_path):
    uri = mlflow_store(tmp_path / "mlflow.db")
    proc = _cli(["optim=sgd", "optim.d_lr=1e12", "optim.g_lr=1e12", "optim.momentum=0.0", "train.iterations=200",
                 "train.ema_decay=0", "model.g.activations=[relu,relu]"], uri, tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED" in proc.stderr and "non-finite" in proc.stderr and "Traceback" not in proc.stderr
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("default").experiment_id])
    assert run.info.status == "FAILED"
    assert "non-finite" in run.data.tags["failure_reason"]


def test_help_lists_groups_and_options():
    proc = subprocess.run([sys.executable, "-m", "ganlab.train", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0
    assert "devnag_moments" in proc.stdout and "minibatch" in proc.stdout


EXPERIMENTS_1D = ["devnag_moments", "devnag_raw", "devnag_diffs", "devnag_variances", "aylien", "aylien_minibatch",
                  "ganotes_1d"]
EXPERIMENTS_2D = ["gan2d_zig", "gan2d_two_blobs", "cgan_two_blobs", "ring8_gan", "ring8_pacgan", "grid25_gan",
                  "grid25_pacgan", "ring8_ganlab", "grid25_ganlab"]
# trained in test_images.py (the MNIST and CIFAR-10 ones on fixture files in the real formats)
EXPERIMENTS_IMAGES = ["goodfellow_digits", "ganotes_digits", "cgan_digits", "ganlab_digits",
                      "goodfellow_mnist", "ganotes_mnist", "goodfellow_cifar10"]


def test_every_experiment_is_covered_here():
    from ganlab.config.compose import group_options

    assert set(group_options("experiment")) == set(EXPERIMENTS_1D) | set(EXPERIMENTS_2D) | set(EXPERIMENTS_IMAGES)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS_1D)
def test_every_1d_experiment_trains_end_to_end(experiment, tracking_uri):
    client, run, result = train_finished([f"experiment={experiment}", "train.iterations=3", "train.eval_every=1",
                                          "train.plot_every=2", "train.eval_samples=2000"], tracking_uri)
    assert client.get_experiment(run.info.experiment_id).name == experiment
    assert 0 <= result.metrics["ks"] <= 1
    assert "plots/histogram.gif" in artifact_paths(client, result.run_id)


TINY_2D = ["train.iterations=4", "train.eval_every=2", "train.plot_every=2", "train.eval_samples=2000"]


@pytest.mark.slow
def test_a_2d_experiment_from_the_cli_prints_its_2d_metrics(tmp_path):
    uri = mlflow_store(tmp_path / "mlflow.db")
    proc = _cli(["experiment=ring8_gan", *TINY_2D], uri, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "[it 4/4] SW1" in proc.stdout and "modes" in proc.stdout
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("ring8_gan").experiment_id])
    assert run.info.status == "FINISHED"


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS_2D)
def test_every_2d_experiment_trains_with_plots(experiment, tracking_uri):
    """In process (the CLI path is the test above): each experiment's data, model and plots."""
    client, run, _ = train_finished([f"experiment={experiment}", *TINY_2D], tracking_uri)
    arts = artifact_paths(client, run.info.run_id)
    for expected in ("plots/samples.gif", "plots/samples_000000.png", "plots/samples_000004.png",
                     "plots/metrics.png", "samples.npy"):
        assert expected in arts, expected
    metrics = run.data.metrics
    assert metrics["sliced_w1"] > 0
    if experiment.startswith(("ring8", "grid25")):
        assert {"modes", "hq_share", "reverse_kl", "modes_full"} <= set(metrics)
    else:
        assert 0 <= metrics["off_density"] <= 1
    if experiment == "cgan_two_blobs":
        assert "labels.npy" in arts
        assert {"sliced_w1_class0", "sliced_w1_class1", "off_density_class0", "off_density_class1"} <= set(metrics)
