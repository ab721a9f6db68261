"""Hydra's multirun, `python -m ganlab.train -m ...`: the override grammar expanded as Hydra's basic
sweeper does, listed by --cfg, refused with one line when bad, and run as one MLflow parent run with
one FINISHED child run per combination (the best one registered when tracking.register names a model)."""

import pytest
from conftest import mlflow_store
from helpers import run_cli
from mlflow.tracking import MlflowClient

from ganlab.errors import ConfigError
from ganlab.sweeping.multirun import combinations, multirun_definition, split_overrides
from ganlab.train import main, parse_command_line


def test_comma_lists_range_choice_and_glob_expand_like_hydra():
    fixed, swept = split_overrides(["optim.d_lr=1e-4,3e-4", "train.seed=range(0,3)", "data=ring8",
                                    "train.d_steps=choice(1,2)", "model=glob([v*,d*])"])
    assert fixed == ["data=ring8"]
    assert swept == {"optim.d_lr": ["0.0001", "0.0003"], "train.seed": ["0", "1", "2"],
                     "train.d_steps": ["1", "2"], "model": ["devnag", "vanilla"]}
    grid = combinations(swept)
    assert len(grid) == 2 * 3 * 2 * 2
    assert grid[0] == {"optim.d_lr": "0.0001", "train.seed": "0", "train.d_steps": "1", "model": "devnag"}
    assert grid[1]["model"] == "vanilla" and grid[-1]["optim.d_lr"] == "0.0003"  # the last key varies fastest


def test_cfg_lists_the_combinations_without_training(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["-m", "--cfg", "optim.d_lr=1e-4,3e-4,1e-3", "train.seed=range(0,3)"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("9 combinations") and "#8   optim.d_lr=0.001 train.seed=2" in out
    assert not (tmp_path / "mlruns").exists()  # nothing opened, nothing trained


@pytest.mark.parametrize(("argv", "message"), [
    (["-m", "optim.d_lr=1e-4,,3"], "Error parsing override 'optim.d_lr=1e-4,,3'"),
    (["-m", "optim.d_lr=-1,1e-3"], "optim.d_lr=-1.0 is not allowed"),
    (["-m", "optim.dlr=1,2"], "optim.dlr"),
    (["-m", "x=interval(0,1)"], "interval() is a continuous range"),
    (["-m", "optim.d_lr=glob(*)"], "glob() selects options of a config group"),
    (["-m", "model.d.dropout=0.2", "train.seeds=2", "train.seed=0,1"],
     "train.seeds=2 is not allowed; needs population training, and batch norm or dropout is not supported"),
    (["-m", "train.iterations=100"], "-m needs at least one swept key"),
    (["-m", "train.seeds=1,3"], "train.seeds=1,3: -m cannot sweep train.seeds"),
    (["-m", "optim.d_lr=1e-3,2e-3", "++train.seeds=1,3"], "train.seeds=1,3: -m cannot sweep train.seeds"),
    (["optim.d_lr=1e-4,1e-3"], "is a sweep; add -m"),
    (["--config-name", "x"], "Hydra's --config-name is not supported by ganlab; pick a named config"),
    (["-m", "hydra/launcher=joblib", "a=1,2"], "hydra.* settings have no effect"),
    (["--workers", "2", "train.seed=1"], "--workers applies to -m"),
    (["-m", "--workers", "0", "train.seed=0,1"], "--workers='0' is not allowed"),
    (["--frobnicate"], "unknown flag '--frobnicate'"),
])
def test_bad_sweeps_and_flags_are_one_line_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_hydra_cfg_job_is_accepted_as_cfg():
    line = parse_command_line(["--cfg", "job", "-m", "train.seed=0,1"])
    assert line.show_cfg and line.multirun and line.overrides == ["train.seed=0,1"]


def test_combinations_of_different_target_families_rank_by_fit_time():
    sweep, _ = multirun_definition(["data=gaussian_1d,ring8"])
    assert sweep.objective.metric == "fit_s" and sweep.trials == 2
    with pytest.raises(ConfigError, match="sweeps over no value|selects options"):
        multirun_definition(["model=glob(nothing*)"])


@pytest.mark.slow
def test_a_2x2_grid_is_four_finished_child_runs_under_one_finished_parent(tmp_path):
    uri = mlflow_store(tmp_path / "mlruns" / "mlflow.db")
    args = ["-m", "--workers", "2", "optim.d_lr=1e-3,3e-3", "train.seed=0,1", "train.iterations=100",
            "train.eval_every=50", "train.plot_every=100", "train.eval_samples=2000", "tracking.experiment=grid",
            "tracking.register=grid-best"]
    proc = run_cli(args, uri, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 complete" in proc.stdout and "Traceback" not in proc.stderr
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("grid")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("ganlab.role") == "sweep_parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 4 and {r.info.status for r in children} == {"FINISHED"}
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert sorted((r.data.params["optim.d_lr"], r.data.params["train.seed"]) for r in children) == [
        ("0.001", "0"), ("0.001", "1"), ("0.003", "0"), ("0.003", "1")]
    # the best combination (and only it) is registered, once
    best = parents[0].data.tags["best.trial"]
    version = client.get_model_version("grid-best", "1")
    assert parents[0].data.tags["registered"] == "models:/grid-best/1"
    assert client.get_run(version.run_id).data.tags["trial_number"] == best
    assert len(client.search_model_versions("name = 'grid-best'")) == 1

    again = run_cli(args, uri, tmp_path)  # the same command: the study is complete, nothing runs again
    assert again.returncode == 0 and "0 to run" in again.stdout
    assert len(client.search_runs([experiment.experiment_id])) == 5
    assert len(client.search_model_versions("name = 'grid-best'")) == 1


def test_a_multiruns_study_lives_beside_its_sqlite_tracking_store(tmp_path, monkeypatch):
    """Found by a review: a -m run (or train.seeds' fallback) with tracking.uri elsewhere still wrote
    ./mlruns/optuna.db, beside nothing it belonged to."""
    from ganlab.sweeping.study import storage_url

    monkeypatch.chdir(tmp_path)
    sweep, _ = multirun_definition(["train.seed=0,1"])
    store = tmp_path / "elsewhere" / "mlflow.db"
    assert storage_url(sweep, beside=f"sqlite:///{store}") == f"sqlite:///{store.parent / 'optuna.db'}"
    assert storage_url(sweep, beside="http://127.0.0.1:5000") == f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}"


def test_the_study_name_follows_what_the_fixed_values_mean_not_how_they_were_typed():
    """Fixed values are kept as typed (shown in the re-run line), but 1e-3 and 0.001 are one study, as
    before (an interrupted -m resumes under the same name)."""
    from ganlab.sweeping.multirun import multirun_definition

    names = {multirun_definition(["optim.g_lr=" + v, "optim.d_lr=1e-4,1e-3", "train.iterations=20"])[0].name
             for v in ("1e-3", "0.001")}
    assert len(names) == 1
