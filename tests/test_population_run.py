"""`train.seeds=N` end to end: one MLflow run with per-seed metrics, their median, and the median
seed's artifacts; 2D targets too; what it does not support yet is one clear line."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import mlflow_store
from helpers import artifact_paths, run_cli
from mlflow.tracking import MlflowClient

from ganlab.config.compose import compose_config
from ganlab.errors import ConfigError
from ganlab.population.population_evaluation import median_member
from ganlab.population.population_runner import run_population, summarise

TINY = ["train.iterations=30", "train.eval_every=10", "train.plot_every=30", "train.eval_samples=2048"]


@pytest.mark.slow
def test_seeds_from_the_cli_make_one_finished_run(tmp_path):
    uri = mlflow_store(tmp_path / "mlflow.db")
    proc = run_cli([*TINY, "train.seeds=3", "train.seed=5"], uri, tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "seeds 5-7 together" in proc.stdout and "3 seeds: the final metrics are medians" in proc.stdout
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("default").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["train.seeds"] == "3"
    assert run.info.run_id in proc.stdout


@pytest.mark.slow
def test_a_seeds_run_records_each_seed_and_their_median(tmp_path):
    uri = mlflow_store(tmp_path / "mlflow.db")
    result = run_population(compose_config([*TINY, "train.seeds=3", "train.seed=5", f"tracking.uri={uri}"]),
                            verbose=False)
    client = MlflowClient(uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.params["train.seeds"] == "3"
    per_seed = [run.data.metrics[f"ks_seed{s}"] for s in (5, 6, 7)]
    assert run.data.metrics["ks"] == np.median(per_seed)
    assert (run.data.metrics["ks_min"], run.data.metrics["ks_max"]) == (min(per_seed), max(per_seed))
    assert [m.step for m in client.get_metric_history(run.info.run_id, "ks_seed6")] == [0, 10, 20, 30]
    arts = artifact_paths(client, run.info.run_id)
    for expected in ("seeds.json", "samples.npy", "model/generator_ema.pt", "plots/metrics.png"):
        assert expected in arts
    local = Path(client.download_artifacts(run.info.run_id, "seeds.json", str(tmp_path)))
    table = json.loads(local.read_text())
    assert [row["seed"] for row in table["seeds"]] == [5, 6, 7]
    assert [row["ks"] for row in table["seeds"]] == per_seed
    assert run.data.tags["median_seed"] == str(table["median_seed"])
    assert 0 < float(run.data.tags["evaluation_share"]) < 1


def test_a_2d_population_reports_mode_metrics(tmp_path):
    cfg = compose_config(["data=ring8", "train.seeds=2", "train.iterations=20", "train.eval_every=10",
                          "train.plot_every=20", "train.eval_samples=1024", f"tracking.uri=sqlite:///{tmp_path}/m.db"])
    result = run_population(cfg, verbose=False)
    assert {"modes", "hq_share", "sliced_w1_seed0", "sliced_w1_seed1"} <= set(result.metrics)


def test_median_and_summary_skip_failed_seeds():
    rows = [{"ks": 0.1}, {"ks": float("nan")}, {"ks": 0.3}, {"ks": 0.2}]
    alive = [True, False, True, True]
    assert median_member(rows, alive) == 3
    summary = summarise(rows, [0, 1, 2, 3], alive)
    assert (summary["ks"], summary["ks_min"], summary["ks_max"]) == (0.2, 0.1, 0.3)
    assert np.isnan(summary["ks_seed1"])


@pytest.mark.parametrize(("overrides", "named"), [(["model.g.batch_norm=[true,true]"], "batch norm"),
                                                  (["data=digits"], "digits"), (["model.d.dropout=0.2"], "dropout")])
def test_unsupported_compositions_name_what_to_do(overrides, named):
    with pytest.raises(ConfigError) as err:
        compose_config(["train.seeds=2", *overrides])
    message = str(err.value)
    assert "train.seeds=2" in message and named in message and "train.seed=" in message and "\n" not in message


@pytest.mark.parametrize(("overrides", "expected"), [
    (["model.d.dropout=0.2", "train.seeds=3", "train.seed=5"], ["model.d.dropout=0.2", "train.seed=range(5,8)"]),
    (["train.seeds=3"], None),  # population training takes it
    (["optim=sgd", "train.seeds=3"], None),  # SGD too
    (["experiment=cgan_two_blobs", "train.seeds=3"], None),  # and a conditional model
    (["model.d.dropout=0.2", "train.seeds=1"], None),
    (["model.d.dropout=0.2"], None),
    (["model.d.dropout=0.2", "train.seeds=two"], None),  # composing as typed says what is wrong
])
def test_seeds_population_training_cannot_take_are_trained_one_run_each(overrides, expected):
    from ganlab.train import _seeds_one_at_a_time

    assert _seeds_one_at_a_time(overrides) == expected


@pytest.mark.slow
def test_unsupported_seeds_from_the_cli_run_one_child_run_each(tmp_path):
    """model.d.dropout=0.2 train.seeds=2 was refused; it now trains the seeds as a multirun, with a notice."""
    uri = mlflow_store(tmp_path / "mlflow.db")
    proc = run_cli([*TINY, "model.d.dropout=0.2", "train.seeds=2", "train.seed=3"], uri, tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "train.seeds=2 cannot be trained together (batch norm or dropout" in proc.stdout
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("default").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.params["train.seed"] for r in children) == ["3", "4"]
    assert all(r.info.status == "FINISHED" for r in runs) and len(runs) == 3  # the parent and its two children
    assert all(r.data.params["model.d.dropout"] == "0.2" for r in children)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_a_missing_gpu_fails_before_a_run_exists(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    with pytest.raises(ConfigError, match="no CUDA device"):
        run_population(compose_config(["train.seeds=2", "train.accelerator=gpu", f"tracking.uri={uri}"]), verbose=False)
    assert not (tmp_path / "m.db").exists() or not MlflowClient(uri).search_runs(["0"])


def test_a_stopped_seeds_run_resumes_to_the_uninterrupted_result(tracking_uri, monkeypatch):
    """A train.seeds run stopped by a signal checkpoints the iteration it stopped in and ends KILLED;
    `resume=` goes on from there and ends exactly where the same run ends uninterrupted (CPU), with
    every evaluation logged once; a finished one can be extended."""
    import signal

    from ganlab.sample import SampleArgs, module_from_run
    from ganlab.signals import Stopped
    from ganlab.stored_runs import RunReadError, StoredRun
    from ganlab.training import checkpoints
    from ganlab.training.resume import prepare_resume

    cfg = compose_config(["train.seeds=3", "train.seed=5", "train.iterations=120", "train.eval_every=20",
                          "train.plot_every=60", "train.eval_samples=2048", "train.ckpt_every=40"])
    whole = run_population(cfg, verbose=False)
    calls = iter(range(1, 10**6))  # the writer checks for a stop once an iteration
    with monkeypatch.context() as patch, pytest.raises(Stopped) as stop:
        patch.setattr(checkpoints, "check_stop", lambda: Stopped(signal.SIGTERM) if next(calls) == 50 else None)
        run_population(cfg, verbose=False)
    client = MlflowClient(tracking_uri)
    stopped = client.get_run(stop.value.run_id)
    assert stopped.info.status == "KILLED"
    module, _ = module_from_run(tracking_uri, SampleArgs(run_id=stopped.info.run_id))  # its median seed, at 50
    samples, _ = module.sample(4000, torch.Generator().manual_seed(0))
    assert np.isfinite(samples.numpy()).all()
    with pytest.raises(RunReadError, match="logged no generator weights yet"):
        StoredRun(tracking_uri, stopped.info.run_id).generator_state()  # a caller that cannot read a cohort

    again_cfg, point, _ = prepare_resume(stopped.info.run_id, [])
    assert point.state["iteration"] == 50 and again_cfg.train.seeds == 3
    again = run_population(again_cfg, resume=point, verbose=False)
    assert again.run_id == stopped.info.run_id and again.iterations == 120
    np.testing.assert_equal(again.metrics, whole.metrics)  # every seed's, the medians, min and max: exactly
    history = [m.step for m in client.get_metric_history(again.run_id, "ks_seed6")]
    assert history == list(range(0, 121, 20))  # each evaluation once, across the stop
    assert client.get_run(again.run_id).info.status == "FINISHED"

    longer_cfg, point, _ = prepare_resume(whole.run_id, ["train.iterations=160"])
    longer = run_population(longer_cfg, resume=point, verbose=False)
    assert longer.iterations == 160 and client.get_run(whole.run_id).info.status == "FINISHED"


def test_a_seeds_checkpoint_is_sampled_from_its_median_seed():
    """The median of the last evaluation's per-seed headline metric, failed seeds left out, the lower
    middle one for an even count: as the run itself picks its median seed at the end."""
    from ganlab.population.cohort import Cohort
    from ganlab.population.member_settings import member_configs
    from ganlab.population.seeds_checkpoints import median_seed_generator

    cfg = compose_config(["train.seeds=3", "train.seed=5"])
    cohort = Cohort(member_configs(cfg), keys=[5, 6, 7])
    state = {"seeds": [5, 6, 7], "cohort": cohort.checkpoint_state(),
             "history_rows": [{"iteration": 40, "ks": 0.2, "ks_seed5": 0.3, "ks_seed6": 0.1, "ks_seed7": 0.2}]}

    def picked(state) -> int:
        weights = median_seed_generator(state, cfg)
        (k,) = [k for k in range(3) if all(torch.equal(weights[name], value)
                                           for name, value in cohort.ema.member(k).state_dict().items())]
        return k

    assert picked(state) == 2  # seed 7: 0.2 is the median of 0.3, 0.1, 0.2
    state["cohort"]["failures"] = {"2": "loss NaN"}
    assert picked(state) == 1  # of seeds 5 and 6, the lower one (0.1)


@pytest.mark.parametrize("stopped_at", [35, 50])
def test_a_seeds_run_with_a_failed_seed_resumes_as_if_uninterrupted(tracking_uri, monkeypatch, stopped_at):
    """Seed 6's weights turn NaN at iteration 30; the failure is noted on the device and read at the
    evaluation at 40. Stopped in between (35) or after (50), the resumed run has the same failed seed
    and metrics as the run that was not stopped."""
    import signal

    from ganlab.population.cohort import Cohort
    from ganlab.signals import Stopped
    from ganlab.training import checkpoints
    from ganlab.training.resume import prepare_resume

    train_iteration = Cohort.train_iteration

    def poisoned(self) -> None:
        train_iteration(self)
        if int(self.member_iteration[1]) == 30 and bool(self.member_alive[1]):
            with torch.no_grad():
                self.generator.flat[1].fill_(float("nan"))

    monkeypatch.setattr(Cohort, "train_iteration", poisoned)
    cfg = compose_config(["train.seeds=3", "train.seed=5", "train.iterations=60", "train.eval_every=20",
                          "train.plot_every=60", "train.eval_samples=2048", "train.ckpt_every=20"])
    whole = run_population(cfg, verbose=False)
    calls = iter(range(1, 10**6))
    with monkeypatch.context() as patch, pytest.raises(Stopped) as stop:
        patch.setattr(checkpoints, "check_stop",
                      lambda: Stopped(signal.SIGTERM) if next(calls) == stopped_at else None)
        run_population(cfg, verbose=False)
    again_cfg, point, _ = prepare_resume(stop.value.run_id, [])
    assert point.state["iteration"] == stopped_at
    assert list(point.state["cohort"]["failures"]) == ([] if stopped_at < 40 else ["1"])  # read at 40
    again = run_population(again_cfg, resume=point, verbose=False)
    np.testing.assert_equal(again.metrics, whole.metrics)
    client = MlflowClient(tracking_uri)
    tags = [client.get_run(r.run_id).data.tags for r in (whole, again)]
    assert tags[0]["failed_seeds"] == tags[1]["failed_seeds"] == "6"


def test_a_seeds_run_whose_every_seed_failed_ends_failed_at_that_evaluation(tracking_uri, monkeypatch):
    """Nothing is left to train once every seed has diverged: the run ends FAILED at the evaluation that
    finds it (40), not after training dead members to its end (60)."""
    from ganlab.population.cohort import Cohort
    from ganlab.training.runner import TrainingFailed

    train_iteration = Cohort.train_iteration

    def all_diverge_at_30(self) -> None:
        train_iteration(self)
        if int(self.member_iteration[0]) == 30:
            with torch.no_grad():
                self.generator.flat.fill_(float("nan"))

    monkeypatch.setattr(Cohort, "train_iteration", all_diverge_at_30)
    cfg = compose_config(["train.seeds=3", "train.seed=5", "train.iterations=60", "train.eval_every=20",
                          "train.plot_every=60", "train.eval_samples=2048"])
    with pytest.raises(TrainingFailed, match="^every seed failed: loss became non-finite at iteration 31") as failed:
        run_population(cfg, verbose=False)
    client = MlflowClient(tracking_uri)
    run = client.get_run(failed.value.run_id)
    assert run.info.status == "FAILED" and run.data.tags["failed_seeds"] == "5, 6, 7"
    assert max(m.step for m in client.get_metric_history(run.info.run_id, "ks_seed5")) == 40
