"""Sweeps whose trials are judged over several seeds (``train.seeds=N`` in a sweep's fixed list, or with -m):
each trial trains its seeds together and reports their median, to the pruner and as its value."""

from __future__ import annotations

import json
import statistics

import optuna
import pytest
import yaml
from conftest import mlflow_store
from mlflow.tracking import MlflowClient

from ganlab.errors import ConfigError
from ganlab.sweeping.definition import load
from ganlab.sweeping.population_driver import population_unsupported, run_population_sweep
from ganlab.sweeping.study import open_study
from ganlab.sweeping.summary import open_parent_run
from ganlab.sweeping.trial import TrialObjective
from ganlab.train import main as train_main
from ganlab.training.runner import EarlyStop

TINY = ["train.iterations=60", "train.eval_every=20", "train.plot_every=60", "train.eval_samples=2000"]


def _sweep(tmp_path, name: str = "seeded", **fields) -> str:
    spec = {"fixed": [*TINY, "train.seeds=3"],
            "space": {"optim.d_lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
            "objective": "ks", "trials": 1, "sampler": {"name": "random", "seed": 0},
            "pruner": {"name": "median", "n_startup_trials": 5}}
    spec.update(fields)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def _artifact_json(client: MlflowClient, run_id: str, name: str, tmp_path) -> dict:
    return json.loads((tmp_path / client.download_artifacts(run_id, name, str(tmp_path))).read_text())


def test_a_trial_over_seeds_reports_and_returns_the_median_of_its_seeds(tmp_path, tracking_uri):
    sweep = load(_sweep(tmp_path))
    study = open_study(sweep, f"sqlite:///{tmp_path / 'o.db'}")
    study.optimize(TrialObjective(sweep, open_parent_run(sweep, tracking_uri, "test")), n_trials=1)
    (trial,) = study.trials
    assert trial.state.name == "COMPLETE"
    client = MlflowClient(tracking_uri)
    run = client.get_run(trial.user_attrs["mlflow_run_id"])
    assert run.data.tags["seeds"] == "3" and run.data.tags["trial_state"] == "complete"
    assert run.info.status == "FINISHED" and "mlflow.parentRunId" in run.data.tags
    per_seed = _artifact_json(client, run.info.run_id, "seeds.json", tmp_path)["seeds"]
    finals = [s["ks"] for s in per_seed]
    assert [s["seed"] for s in per_seed] == [0, 1, 2] and len(set(finals)) == 3  # three different generators
    assert trial.value == pytest.approx(statistics.median(finals))
    # the pruner saw each evaluation's median over the seeds (the run's own `ks`), not one seed's value
    history = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "ks")}
    assert trial.intermediate_values == pytest.approx({it: history[it] for it in (20, 40, 60)})
    for it in (20, 40, 60):
        seeds_at = [client.get_metric_history(run.info.run_id, f"ks_seed{s}") for s in range(3)]
        values = [next(m.value for m in h if m.step == it) for h in seeds_at]
        assert trial.intermediate_values[it] == pytest.approx(statistics.median(values))
    assert "train.seeds=3" in trial.user_attrs["overrides"]  # its rerun command trains the same seeds


def test_a_pruned_trial_over_seeds_is_pruned_and_its_run_killed_with_the_reason(tmp_path, tracking_uri,
                                                                              monkeypatch):
    sweep = load(_sweep(tmp_path, "pruned"))
    study = open_study(sweep, f"sqlite:///{tmp_path / 'o.db'}")
    objective = TrialObjective(sweep, open_parent_run(sweep, tracking_uri, "test"))
    real = objective._reporter

    def prune_at_40(trial):
        report = real(trial)

        def reporter(iteration, metrics):
            report(iteration, metrics)
            if iteration == 40:
                raise EarlyStop(f"pruned at iteration 40 (ks={metrics['ks']:.4g})")

        return reporter

    monkeypatch.setattr(objective, "_reporter", prune_at_40)
    study.optimize(objective, n_trials=1)
    (trial,) = study.trials
    assert trial.state.name == "PRUNED" and sorted(trial.intermediate_values) == [20, 40]
    run = MlflowClient(tracking_uri).get_run(trial.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED" and run.data.tags["trial_state"] == "pruned"
    assert run.data.tags["stopped_reason"].startswith("pruned at iteration 40")
    assert max(m.step for m in MlflowClient(tracking_uri).get_metric_history(run.info.run_id, "ks")) == 40


def test_a_sweep_over_seeds_can_train_as_a_population_of_at_least_its_seeds(tmp_path):
    sweep = load(_sweep(tmp_path))
    assert population_unsupported(sweep) is None  # each trial: its seeds side by side
    with pytest.raises(ConfigError, match=r"^--population=2 holds fewer members than train.seeds=3: a trial's seeds "
                                          r"train together, so use --population 3 or more$"):
        run_population_sweep(sweep, f"sqlite:///{tmp_path / 'o.db'}", "sqlite:///unused.db", size=2, threads=1)
    assert not (tmp_path / "o.db").exists()  # refused before the study was opened


def test_a_search_space_that_reaches_a_config_seeds_cannot_train_together_is_refused_before_anything_runs(tmp_path):
    path = _sweep(tmp_path, "bn", space={"optim.d_lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                                         "model.d.dropout": {"type": "float", "low": 0.0, "high": 0.3}})
    with pytest.raises(ConfigError, match="reaches a config the trainer refuses: train.seeds=3 is not allowed; needs "
                                          "population training, and batch norm or dropout is not supported"):
        load(path)


@pytest.mark.slow
def test_a_multirun_over_seeds_ranks_each_combination_by_its_median(tmp_path, monkeypatch, capsys):
    uri = mlflow_store(tmp_path / "mlruns" / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    args = ["-m", "--workers", "1", "optim.d_lr=1e-3,3e-3", "train.seeds=2", *TINY, f"tracking.uri={uri}",
            "tracking.experiment=over-seeds"]
    assert train_main(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "2 complete" in out and "each trains 2 seeds together and reports their median ks" in out
    assert "| rank | trial | ks (median of 2 seeds) | optim.d_lr |" in out
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("over-seeds").experiment_id])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(children) == 2 and {r.info.status for r in children} == {"FINISHED"}
    (study,) = optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}")
    trials = optuna.load_study(study_name=study.study_name,
                               storage=f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}").trials
    for child in children:
        assert child.data.tags["seeds"] == "2"
        seeds = [child.data.metrics["ks_seed0"], child.data.metrics["ks_seed1"]]
        (trial,) = [t for t in trials if str(t.number) == child.data.tags["trial_number"]]
        assert trial.value == pytest.approx(statistics.median(seeds)) == pytest.approx(child.data.metrics["ks"])


def _poison_member_at(monkeypatch, member: int, iteration: int) -> None:
    """Member ``member``'s generator weights turn NaN at ``iteration`` (noted on the device, read at the next
    evaluation), as a seed that diverges."""
    import torch

    from ganlab.population.cohort import Cohort

    train_iteration = Cohort.train_iteration

    def poisoned(self) -> None:
        train_iteration(self)
        if int(self.member_iteration[member]) == iteration and bool(self.member_alive[member]):
            with torch.no_grad():
                self.generator.flat[member].fill_(float("nan"))

    monkeypatch.setattr(Cohort, "train_iteration", poisoned)


def test_a_trial_with_one_failed_seed_fails_at_once_instead_of_reporting_the_survivors(tmp_path, tracking_uri,
                                                                                       monkeypatch):
    """The survivors' median would flatter a config that diverges one time in three: the trial FAILs with
    the seed's reason, as a trial of one seed that diverges does, at the evaluation that finds it."""
    _poison_member_at(monkeypatch, member=1, iteration=30)
    sweep = load(_sweep(tmp_path, "one_fails"))
    study = open_study(sweep, f"sqlite:///{tmp_path / 'o.db'}")
    study.optimize(TrialObjective(sweep, open_parent_run(sweep, tracking_uri, "test")), n_trials=1,
                   catch=(Exception,))
    (trial,) = study.trials
    assert trial.state.name == "FAIL"
    reason = trial.user_attrs["failure_reason"]
    assert reason.startswith("seed 1 failed (a trial over seeds fails with any of its seeds): loss became non-finite "
                             "at iteration 31")  # poisoned after its 30th update: the 31st loss is NaN
    client = MlflowClient(tracking_uri)
    run = client.get_run(trial.user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED" and run.data.tags["trial_state"] == "failed"
    assert run.data.tags["failed_seeds"] == "1"
    assert max(m.step for m in client.get_metric_history(run.info.run_id, "ks")) == 40  # not trained on to 60


@pytest.mark.slow
def test_a_clearly_worse_trial_over_seeds_is_pruned_by_its_median(tmp_path, tracking_uri):
    """The median pruner, fed the seeds' medians: a trial whose rates leave G where it started (KS near 1)
    is pruned at its first report against a completed trial that learns."""
    lrs = {"type": "float", "low": 1e-8, "high": 1e-2, "log": True}
    sweep = load(_sweep(tmp_path, "prune", space={"optim.d_lr": lrs, "optim.g_lr": lrs},
                        pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0}, trials=2))
    study = open_study(sweep, f"sqlite:///{tmp_path / 'o.db'}")
    study.enqueue_trial({"optim.d_lr": 3e-3, "optim.g_lr": 3e-3})
    study.enqueue_trial({"optim.d_lr": 1e-8, "optim.g_lr": 1e-8})
    study.optimize(TrialObjective(sweep, open_parent_run(sweep, tracking_uri, "test")), n_trials=2)
    learned, stuck = study.trials
    assert (learned.state.name, stuck.state.name) == ("COMPLETE", "PRUNED")
    assert sorted(stuck.intermediate_values) == [20]
    assert stuck.intermediate_values[20] > learned.intermediate_values[20]
    run = MlflowClient(tracking_uri).get_run(stuck.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED" and run.data.tags["stopped_reason"].startswith("pruned at iteration 20")
    assert run.data.metrics["ks"] == pytest.approx(stuck.intermediate_values[20])  # the median it was judged by
