"""Sweeps: definition checks, an end-to-end multi-worker sweep, failures, pruning, resume after SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from conftest import mlflow_store
from mlflow.tracking import MlflowClient

from ganlab.errors import ConfigError
from ganlab.sweeping.definition import available, load
from ganlab.sweeping.study import open_study
from ganlab.sweeping.summary import open_parent_run
from ganlab.sweeping.trial import TrialObjective

ROOT = Path(__file__).resolve().parents[1]
TINY = ["train.iterations=60", "train.eval_every=20", "train.plot_every=60", "train.eval_samples=2000"]


def _write(tmp_path: Path, name: str = "s", **fields) -> str:
    spec = {"fixed": TINY, "space": {"optim.d_lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
            "objective": "ks", "trials": 3, "sampler": {"name": "tpe", "seed": 0}, "pruner": {"name": "none"}}
    spec.update(fields)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


@pytest.mark.parametrize("name", available())
def test_every_shipped_sweep_is_valid(name):
    sweep = load(name)
    assert sweep.space and sweep.trials >= 1


def test_default_sweep_searches_the_issue_keys():
    keys = {p.key for p in load("default").space}
    assert {"optim.d_lr", "optim.g_lr", "train.d_steps", "train.g_steps", "train.batch_size"} <= keys


BAD = [
    ({"space": {"optim.dlr": {"type": "float", "low": 1e-4, "high": 1e-2}}}, "did you mean optim.d_lr"),
    ({"space": {"optim": {"type": "categorical", "choices": ["adam", "sgd"]}}},
     "space key 'optim' is a config group: a study searches values, not group options; pick one in fixed: "
     "['optim=<option>'] and run one sweep per option"),
    # renaming the option would keep Adam's keys under SGD's name (found by a review: every trial failed)
    ({"space": {"optim.name": {"type": "categorical", "choices": ["adam", "sgd"]}}},
     "optim.name=sgd is not allowed; the name is the optim option itself: choose it with optim=sgd"),
    ({"space": {"optim.d_lr": {"type": "float", "low": 1e-2, "high": 1e-4}}}, "empty range"),
    ({"space": {"train.batch_size": {"type": "categorical", "choices": []}}}, "no choices"),
    ({"space": {"optim.d_lr": {"type": "float", "low": 0.0, "high": 1e-2, "log": True}}}, "low must be > 0"),
    ({"space": {"optim.d_lr": {"type": "float", "low": 1e-4}}}, "numeric low and high"),
    ({"space": {"optim.d_lr": {"type": "uniform", "low": 1e-4, "high": 1}}}, "type: float, int or categorical"),
    ({"space": {}}, "at least one config key"),
    ({"sampler": {"name": "bayes"}}, "sampler.name='bayes'"),
    ({"pruner": {"name": "aggressive"}}, "pruner.name='aggressive'"),
    ({"fixed": [*TINY, "model.d.dropout=0.2", "train.seeds=4"]},
     "train.seeds=4 is not allowed; needs population training, and batch norm or dropout is not supported"),
    ({"space": {"train.seeds": {"type": "int", "low": 1, "high": 4}}}, "train.seeds cannot be searched"),
    ({"sampler": {"name": "tpe", "n_startup_trial": 5}}, "unexpected keyword argument 'n_startup_trial'"),
    ({"pruner": {"name": "median", "n_warmup_steps": -5}}, "warmup steps cannot be negative"),
    ({"objective": {"metric": "fid"}}, "objective metric 'fid' is not logged"),
    ({"objective": {"metric": "ks", "direction": "down"}}, "direction='down'"),
    ({"trials": 0}, "trials=0"),
    ({"colour": "blue"}, "unknown key(s) ['colour']"),
    ({"fixed": ["train.iterations=-5"]}, "train.iterations=-5"),
    ({"fixed": [*TINY, "preprocess=sorted"],
      "space": {"train.batch_size": {"type": "int", "low": 100, "high": 300}}}, "must divide train.batch_size"),
    ({"second_objective": "wall_s", "pruner": {"name": "median"}}, "cannot prune multi-objective"),
    ({"population": {"warm_up": "yes"}}, "population.warm_up='yes' must be true or false"),
    ({"population": {"cuda_graphs": 1}}, "population.cuda_graphs=1 must be true or false"),
    ({"population": {"best_artifacts": -1}}, "population.best_artifacts=-1 must be a number >= 0"),
    ({"base": ["data=ring8"]}, "objective metric 'ks' is not logged for data=ring8 (a 2d target)"),
]


@pytest.mark.parametrize(("fields", "expected"), BAD, ids=[e for _, e in BAD])
def test_bad_definitions_fail_before_anything_runs(tmp_path, fields, expected):
    with pytest.raises(ConfigError) as err:
        load(_write(tmp_path, **fields))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_unknown_sweep_name_lists_the_available_ones():
    with pytest.raises(ConfigError, match="available: .*default"):
        load("no_such_sweep")


@pytest.mark.parametrize("path", ["sweeps/nope.yaml", "/tmp/no/such/sweep.yml", "my_sweeps/x"])
def test_a_sweep_file_that_does_not_exist_is_named_as_a_missing_file(path):
    with pytest.raises(ConfigError, match=f"no sweep file {path} .*or a sweep name: .*default"):
        load(path)


def test_overrides_make_a_study_of_their_own_and_follow_the_data_s_headline_metric():
    """`ganlab.sweep default data=ring8` used to be impossible; done with a file it optimised KS, which a
    2D run never logs, so every trial failed on a missing metric."""
    plain = load("default")
    sweep = load("default", overrides=["data=ring8", "train.iterations=1000"])
    assert sweep.name == "default[data=ring8,train.iterations=1000]" and sweep.name != plain.name
    assert sweep.experiment_name == f"sweep-{sweep.name}"
    assert sweep.fixed == [*plain.fixed, "data=ring8", "train.iterations=1000"]  # after the file's: they win
    assert (sweep.objective.metric, sweep.objective.direction) == ("sliced_w1", "minimize")
    assert len(sweep.notices) == 1 and "sliced_w1" in sweep.notices[0]
    assert load("default", overrides=["model=vanilla"]).objective.metric == "ks"  # same data: unchanged
    assert load("default", overrides=["tracking.experiment=mine"]).experiment_name == "mine"


def test_only_overrides_that_move_the_data_move_the_objective(tmp_path):
    path = _write(tmp_path, base=["data=ring8"])
    with pytest.raises(ConfigError, match="objective metric 'ks' is not logged for data=ring8"):
        load(path, overrides=["train.seed=3"])  # the file's own mismatch, whatever else is typed
    assert load(_write(tmp_path, "one_d"), overrides=["data=ring8"]).objective.metric == "sliced_w1"


@pytest.mark.parametrize("experiment", ["null", "'back\\slash'", "\"it's [a,b]=c\""])
def test_a_typed_experiment_name_reaches_the_trials_as_typed(experiment):
    from ganlab.config.compose import compose_config

    sweep = load("default", overrides=[f"tracking.experiment={experiment}"])
    trial_cfg = compose_config(sweep.trial_overrides({"optim.d_lr": 1e-3}))
    assert trial_cfg.tracking.experiment == sweep.experiment_name
    assert sweep.experiment_name == ("sweep-" + sweep.name if experiment == "null" else
                                     compose_config([f"tracking.experiment={experiment}"]).tracking.experiment)


def test_a_sweep_file_whose_path_holds_an_equals_sign_is_a_sweep_not_an_override(tmp_path):
    from ganlab.sweep import _is_override

    path = _write(tmp_path, "lr=1")
    assert not _is_override(path) and not _is_override("default")
    assert _is_override("data=ring8") and _is_override("~train.seed") and _is_override("+a.b=1")


def test_the_rerun_command_gives_each_key_once_with_the_value_that_won():
    from optuna.trial import create_trial

    from ganlab.sweeping.summary import rerun_command

    trial = create_trial(value=0.1, user_attrs={"overrides": [
        "train.iterations=4000", "data=ring8", "train.iterations=60", "tracking.experiment='x'"]})
    assert rerun_command(trial) == "python -m ganlab.train train.iterations=60 data=ring8"
    # the sweep's own store is named, so a pasted command records beside it (found by a review) ...
    assert rerun_command(trial, "sqlite:////tmp/s/mlflow.db") == ("python -m ganlab.train train.iterations=60 "
                                                                  "data=ring8 tracking.uri=sqlite:////tmp/s/mlflow.db")
    # ... unless it is the local default, where a command without one records anyway
    from ganlab.config.uris import local_store_uri

    assert rerun_command(trial, local_store_uri()) == "python -m ganlab.train train.iterations=60 data=ring8"


def test_the_rerun_command_pastes_into_a_shell_as_the_trials_overrides():
    """Brackets and ${...} reached the shell unquoted (a glob, an expansion), and `-m`'s fixed values
    came back Hydra-escaped (tracking.uri=sqlite\\:////...)."""
    import shlex

    from optuna.trial import create_trial

    from ganlab.sweeping.multirun import split_overrides
    from ganlab.sweeping.summary import rerun_command

    fixed, swept = split_overrides(["tracking.uri=sqlite:////tmp/s/m.db", "optim.d_lr=1e-3,2e-3",
                                    "model.g.hidden=[8,8]", "train.iterations=${oc.env:N}"])
    assert fixed == ["tracking.uri=sqlite:////tmp/s/m.db", "model.g.hidden=[8,8]", "train.iterations=${oc.env:N}"]
    overrides = [*fixed, f"optim.d_lr={swept['optim.d_lr'][0]}"]
    command = rerun_command(create_trial(value=0.1, user_attrs={"overrides": overrides}))
    assert "\\" not in command and "'model.g.hidden=[8,8]'" in command
    assert shlex.split(command)[3:] == overrides


def test_a_summary_says_when_its_best_ks_values_are_within_the_evaluation_s_noise(capsys):
    """KS of n points drawn from the target itself spreads as Kolmogorov's law / sqrt(n): at 20,000
    points the top trials of a good sweep differ by less than that, and their order is partly luck."""
    from dataclasses import replace

    from optuna.trial import create_trial
    from scipy import stats

    from ganlab.sweeping.driver import print_results
    from ganlab.sweeping.summary import ks_noise_note

    rng = np.random.default_rng(0)  # the spreads the note states, against an independent simulation

    def ks_of_rows(draws: np.ndarray) -> np.ndarray:  # KS against N(0, 1) of each row, all rows at once
        cdf, n = stats.norm.cdf(np.sort(draws, axis=1)), draws.shape[1]
        below, above = np.arange(n) / n, np.arange(1, n + 1) / n
        return np.maximum((above - cdf).max(axis=1), (cdf - below).max(axis=1))

    perfect_draws, off_draws = rng.normal(size=(300, 20000)), rng.normal(0.05, 1, size=(300, 20000))
    perfect, off = ks_of_rows(perfect_draws), ks_of_rows(off_draws)
    for draws, ks in ((perfect_draws, perfect), (off_draws, off)):  # the statistic is scipy's
        assert ks[:3] == pytest.approx([stats.kstest(row, "norm").statistic for row in draws[:3]], rel=1e-9)
    assert 0.85 * np.std(perfect) < 0.0018 < 1.15 * np.std(perfect)
    assert 0.85 * np.std(off) < 0.0035 < 1.15 * np.std(off)  # a generator that is off: 0.5 / sqrt(n) at most

    sweep = load("default")

    def trials(*values: float, overrides: tuple[str, ...] = ()) -> list:
        return [create_trial(value=v, user_attrs={"overrides": ["train.iterations=4000", *overrides]})
                for v in values]

    note = ks_noise_note(trials(0.0041, 0.0046, 0.0052, 0.0200), sweep)
    assert note is not None and "about 20,000 evaluation points" in note and "±0.0018" in note
    assert "the top 3 trials" in note and "train.eval_samples=200000" in note
    assert ks_noise_note(trials(0.0041, 0.0200, 0.0300), sweep) is None  # a clear winner
    # ten times the points: sqrt(10) less noise, so the same values stand apart
    assert ks_noise_note(trials(0.0041, 0.0070, 0.0090), sweep) is not None
    assert ks_noise_note(trials(0.0041, 0.0070, 0.0090, overrides=("train.eval_samples=200000",)), sweep) is None
    more = ks_noise_note(trials(0.0025, 0.0030, overrides=("train.eval_samples=200000",)), sweep)
    assert "±0.0006" in more and "train.eval_samples=2000000" in more  # never what the sweep already has
    # a sweep whose best is well off the target: KS's spread is wider there (0.0035 at 20,000)
    far = ks_noise_note(trials(0.050, 0.056), sweep)
    assert far is not None and "±0.0035" in far
    assert ks_noise_note(trials(0.050, 0.058), sweep) is None
    assert ks_noise_note(trials(0.0041, 0.0046), replace(sweep, second_objective=sweep.objective)) is None
    w1 = replace(sweep, objective=replace(sweep.objective, metric="w1_over_std"))
    assert ks_noise_note(trials(0.0041, 0.0046), w1) is None

    # a trial over seeds reports a median, but its seeds share the evaluation's noise draws: the same noise,
    # and only more evaluation points help (no advice to re-train over seeds it already has)
    seeded = ks_noise_note(trials(0.0041, 0.0046, overrides=("train.seeds=3",)), sweep)
    assert "±0.0018 here, shared by the 3 seeds of a trial (a perfect" in seeded and "train.seeds=3)" not in seeded
    assert "add train.eval_samples=200000" in seeded

    # ... and the end of a sweep prints it between the table and the re-run command
    study = optuna.create_study()
    for t in trials(0.0046, 0.0041, 0.0052):
        study.add_trial(t)
    capsys.readouterr()
    assert print_results(study, sweep, 1.0) == 0
    out = capsys.readouterr().out
    assert out.index("| 1 |") < out.index("note: KS on about 20,000") < out.index("re-run the best trial")


@pytest.mark.parametrize(("args", "expected"), [
    (["default", "optim.d_lr=0.1"], "optim.d_lr=0.1: optim.d_lr is searched by default.yaml"),
    (["data=ring8,grid25"], "data=ring8,grid25 gives several values"),
    (["default", "tracking.uri=http://127.0.0.1:5000"], "with --tracking-uri"),
    (["default", "train.iterations=-3"], "train.iterations=-3"),
    (["default", "optim.dlr=1"], "optim.dlr"),
    (["default", "++tracking.uri=sqlite:///other.db"], "with --tracking-uri"),  # a prefix slipped past the checks
    (["default", "++optim.d_lr=0.5"], "optim.d_lr is searched by default.yaml"),
])
def test_bad_overrides_are_one_line_naming_the_override(args, expected, capsys, monkeypatch, tmp_path):
    from ganlab.sweep import main

    def started(*_args, **_kwargs):  # an override let through would otherwise run the whole default sweep
        raise AssertionError(f"{args} started a sweep")

    monkeypatch.setattr("ganlab.sweeping.driver.run_sweep", started)
    monkeypatch.setattr("ganlab.sweeping.population_driver.run_population_sweep", started)
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ganlab sweep: error: ") and expected in err and "\n" not in err


def _sweep(args, tmp_path, **kwargs):
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store(tmp_path / "mlflow.db"), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "ganlab.sweep", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600, **kwargs)


def _children(tmp_path, study_name):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name(f"sweep-{study_name}")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("ganlab.role") == "sweep_parent"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


@pytest.mark.slow
def test_a_sweep_with_overrides_trains_them_and_the_same_command_resumes_its_study(tmp_path):
    path = _write(tmp_path, "base", trials=1)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = [path, "data=ring8", "train.eval_samples=1024", "--workers", "1", "--storage", storage]
    first = _sweep(args, tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "minimises sliced_w1" in first.stdout
    name = "base[data=ring8,train.eval_samples=1024]"
    again = _sweep([*args, "--trials", "2"], tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 already in the study" in again.stdout
    (study,) = optuna.get_all_study_summaries(storage)  # the plain `base` study was never created
    assert study.study_name == name
    trials = optuna.load_study(study_name=name, storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    client, (parent,), children = _children(tmp_path, name)
    assert parent.info.status == "FINISHED" and len(children) == 2
    for trial in trials:
        (child,) = [c for c in children if int(c.data.tags["trial_number"]) == trial.number]
        assert child.data.params["data.name"] == "ring8" and child.data.params["train.eval_samples"] == "1024"
        assert trial.value == pytest.approx(child.data.metrics["sliced_w1"])


@pytest.mark.slow
def test_enqueued_trials_run_and_a_failing_one_is_fail_while_the_sweep_goes_on(tmp_path):
    """Two trials queued before the sweep (`study.enqueue_trial`): both run, in order, as the budget's
    two (not counted as done before they ran); the first diverges and is FAIL, the second completes."""
    path = _write(tmp_path, "fails", base=["optim=sgd", "optim.momentum=0", "train.ema_decay=0",
                                           "model.g.activations=[relu,relu]"],
                  space={"optim.d_lr": {"type": "float", "low": 1e-4, "high": 1e12, "log": True}},
                  sampler={"name": "random", "seed": 0}, trials=2)
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    queued = open_study(load(path, storage=storage), storage)
    queued.enqueue_trial({"optim.d_lr": 1e12})
    queued.enqueue_trial({"optim.d_lr": 1e-3})
    proc = _sweep([path, "--workers", "1", "--storage", storage], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr  # Optuna's own report of the failed trial printed one
    assert "trial   0 FAIL     loss became non-finite at iteration " in proc.stdout, proc.stdout
    study = optuna.load_study(study_name="fails", storage=storage)
    assert [(t.state.name, t.params["optim.d_lr"]) for t in study.trials] == [("FAIL", 1e12), ("COMPLETE", 1e-3)]
    assert "non-finite" in study.trials[0].user_attrs["failure_reason"]
    _, _, children = _children(tmp_path, "fails")
    by_state = {c.data.tags["trial_state"]: c.info.status for c in children}
    assert by_state == {"complete": "FINISHED", "failed": "FAILED"}


@pytest.mark.slow
def test_pruning_stops_a_clearly_worse_trial(tmp_path, tracking_uri):
    # the per-sample model without EMA learns fast: at lr 5e-3 its KS is ~0.2 after 400 iterations,
    # at lr 1e-7 it stays ~1.0, so the median pruner must stop the second trial at its first report
    # (typed rates are not raised for short runs: 5e-3 is what the recipe's 1e-3 trained at, x5, before)
    path = _write(tmp_path, "prune", base=["model=vanilla", "train.batch_size=256", "train.ema_decay=0"],
                  fixed=["train.iterations=400", "train.eval_every=50", "train.plot_every=400",
                         "train.eval_samples=2000"],
                  space={"optim.d_lr": {"type": "float", "low": 1e-8, "high": 1e-2, "log": True},
                         "optim.g_lr": {"type": "float", "low": 1e-8, "high": 1e-2, "log": True}},
                  pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 100})
    sweep = load(path)
    study = open_study(sweep, f"sqlite:///{tmp_path / 'o.db'}")
    parent = open_parent_run(sweep, tracking_uri, "test")
    study.enqueue_trial({"optim.d_lr": 5e-3, "optim.g_lr": 5e-3})
    study.enqueue_trial({"optim.d_lr": 1e-7, "optim.g_lr": 1e-7})
    study.optimize(TrialObjective(sweep, parent), n_trials=2)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "PRUNED"], [(t.state.name, t.intermediate_values) for t in study.trials]
    assert study.trials[0].value < 0.5
    pruned = study.trials[1]
    assert max(pruned.intermediate_values) < 400  # stopped early
    client = MlflowClient(tracking_uri)
    run = client.get_run(pruned.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED" and run.data.tags["trial_state"] == "pruned"


@pytest.mark.parametrize("seeds", [1, 3])  # one run, or seeds trained together (train.seeds in fixed)
def test_a_trial_stopped_by_ctrl_c_is_tagged_interrupted_not_running(tmp_path, tracking_uri, monkeypatch, seeds):
    sweep = load(_write(tmp_path, "ctrlc", fixed=[*TINY, f"train.seeds={seeds}"]))
    study = open_study(sweep, f"sqlite:///{tmp_path / 'o.db'}")
    objective = TrialObjective(sweep, open_parent_run(sweep, tracking_uri, "test"))

    def ctrl_c_at_iteration_20(trial):
        def report(iteration, metrics):
            if iteration == 20:
                raise KeyboardInterrupt

        return report

    monkeypatch.setattr(objective, "_reporter", ctrl_c_at_iteration_20)
    with pytest.raises((KeyboardInterrupt, SystemExit)):  # Lightning turns Ctrl-C into SystemExit(1)
        study.optimize(objective, n_trials=1)
    client = MlflowClient(tracking_uri)
    (run,) = [r for r in client.search_runs([client.get_experiment_by_name("sweep-ctrlc").experiment_id])
              if "mlflow.parentRunId" in r.data.tags]
    assert run.info.status == "KILLED" and run.data.tags["trial_state"] == "interrupted"
    assert run.data.tags.get("seeds", "1") == str(seeds)  # a trial over seeds is one train.seeds run


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, group", [(signal.SIGINT, 130, True), (signal.SIGTERM, 143, True),
                                              (signal.SIGTERM, 143, False)])
def test_a_signal_to_the_sweeps_process_group_stops_every_worker_cleanly(tmp_path, sig, code, group):
    """Ctrl-C in a terminal, or ``kill -TERM -<pgid>``, reaches the driver, its workers and the
    forkserver they are forked from at once. Each worker still ends its trial's run KILLED and queues
    the trial again: the forkserver, whose exit tells workers that the driver is gone, must not die
    first (a SIGTERM ended it, and the workers with it, mid-stop). ``kill -TERM <driver>`` (a
    scheduler's stop) reaches the driver alone, which passes it on."""
    path = _write(tmp_path, "stopped", trials=4, fixed=["train.iterations=5000", "train.eval_every=100",
                                                        "train.plot_every=5000", "train.eval_samples=2000"])
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store(tmp_path / "mlflow.db"), "PYTHONUNBUFFERED": "1"}
    # -X faulthandler: a hang is reported with every process's stacks (SIGABRT below), not just a timeout
    driver = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "ganlab.sweep", path, "--workers", "2",
                               "--storage", storage], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    client, deadline = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"), time.monotonic() + 240
    while time.monotonic() < deadline:  # both workers are training (each child run has evaluations)
        time.sleep(0.5)
        assert driver.poll() is None, driver.stderr.read()[-3000:]
        experiment = client.get_experiment_by_name("sweep-stopped")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        training = [r for r in runs if "mlflow.parentRunId" in r.data.tags and "ks" in r.data.metrics]
        if len(training) == 2:
            break
    (os.killpg if group else os.kill)(driver.pid, sig)
    try:
        _, err = driver.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(driver.pid, signal.SIGABRT)
        _, err = driver.communicate(timeout=60)
        stacks = "\n".join(line for line in err.splitlines() if len(line) < 300)  # not the lists of modules
        pytest.fail(f"the sweep did not stop within 120 s; the stacks of its processes:\n{stacks[-12000:]}")
    assert driver.returncode == code and "Traceback" not in err, err[-3000:]
    study = optuna.load_study(study_name="stopped", storage=storage)
    states = sorted(t.state.name for t in study.trials)
    assert states == ["FAIL", "FAIL", "WAITING", "WAITING"], [(t.state.name, t.user_attrs) for t in study.trials]
    runs = client.search_runs([client.get_experiment_by_name("sweep-stopped").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2 and {r.info.status for r in children} == {"KILLED"}, [r.info for r in children]
    assert {r.data.tags["trial_state"] for r in children} == {"interrupted"}
    assert [r.info.status for r in runs if "mlflow.parentRunId" not in r.data.tags] == ["KILLED"]


def test_a_workers_clean_stop_is_not_cut_short_by_the_stop_the_driver_passes_on():
    """A worker stopping after Ctrl-C or SIGTERM ignores the driver's SIGUSR1 (and a SIGTERM after it:
    Python runs pending handlers by signal number, so the driver's SIGUSR1 can come first); SIGUSR1 alone
    stops it as Ctrl-C does; a second Ctrl-C still stops at once."""
    script = """
import os, signal, time
from ganlab.sweeping import driver
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
    signal.signal(sig, driver._stop_once)
def stop(first, then=None):
    driver._stopping = False  # a fresh worker
    try:
        os.kill(os.getpid(), first); time.sleep(5); print("not stopped")
    except KeyboardInterrupt:
        try:
            if then:
                os.kill(os.getpid(), then)
            time.sleep(0.2); print("cleaned up")
        except KeyboardInterrupt:
            print("stopped at once")
stop(signal.SIGUSR1)
stop(signal.SIGINT, signal.SIGUSR1)
stop(signal.SIGTERM, signal.SIGUSR1)
stop(signal.SIGUSR1, signal.SIGTERM)
stop(signal.SIGINT, signal.SIGINT)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["cleaned", "up"] * 4 + ["stopped", "at", "once"], out.stderr


@pytest.mark.slow
def test_resume_after_sigkill_keeps_finished_trials(tmp_path):
    path = _write(tmp_path, "resume", trials=3, fixed=["train.iterations=300", "train.eval_every=100",
                                                       "train.plot_every=300", "train.eval_samples=2000"])
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store(tmp_path / "mlflow.db"), "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "ganlab.sweep", path, "--workers", "1", "--storage", storage, "--stale-after", "2"]
    driver = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    deadline = time.time() + 240
    before: dict[int, float] = {}
    while time.time() < deadline and not before:
        time.sleep(1)
        try:
            study = optuna.load_study(study_name="resume", storage=storage)
            before = {t.number: t.value for t in study.trials if t.state.name == "COMPLETE"}
        except KeyError:
            continue
    assert before, "no trial finished before the deadline"
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and its worker, as a killed machine would
    driver.wait()
    time.sleep(3)  # let the dead worker's heartbeat go stale
    proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    study = optuna.load_study(study_name="resume", storage=storage)
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    after = {t.number: t.value for t in study.trials if t.state.name == "COMPLETE"}
    assert all(after[n] == v for n, v in before.items())  # nothing finished was lost or redone
    assert not [t for t in study.trials if t.state.name == "RUNNING"]
    assert len(study.trials) >= 3
    _, parents, children = _children(tmp_path, "resume")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # the same parent run went on
    numbers_in_mlflow = [c.data.tags["trial_number"] for c in children]
    assert len(numbers_in_mlflow) == len(set(numbers_in_mlflow))
    assert not [c for c in children if c.info.status == "RUNNING"]


@pytest.mark.parametrize("sampler", [{"name": "tpe"}, {"name": "random"}, {"name": "cmaes"},
                                     {"name": "grid"}])
def test_every_sampler_suggests_inside_the_space(tmp_path, sampler):
    space = {"optim.d_lr": {"type": "float", "low": 1e-4, "high": 1e-2, "step": 1e-3} if sampler["name"] == "grid"
             else {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
             "train.d_steps": {"type": "int", "low": 1, "high": 3}}
    sweep = load(_write(tmp_path, space=space, sampler=sampler))
    study = open_study(sweep, f"sqlite:///{tmp_path / 'o.db'}")
    for _ in range(4):
        trial = study.ask()
        values = sweep.suggest(trial)
        assert 1e-4 <= values["optim.d_lr"] <= 1e-2 and values["train.d_steps"] in (1, 2, 3)
        study.tell(trial, values["optim.d_lr"])


@pytest.mark.parametrize("numbers", [1, 2, 4, 7])
def test_cmaes_default_generation_is_the_cmaes_packages_own(numbers):
    import cmaes

    from ganlab.sweeping.samplers import cmaes_default_popsize

    assert cmaes_default_popsize(numbers) == cmaes.CMA(mean=np.zeros(numbers), sigma=1.0).population_size


def test_a_population_makes_cmaes_wait_for_all_its_members_before_a_new_generation():
    """With the population's spec, CMA-ES starts generation 1 only once all 10 members of generation 0
    have completed; with its default generation (6 for two numbers) the 7th result would already start
    it, and the last 4 of the 10 would be ignored. Explicit popsize and other samplers are left alone."""
    from ganlab.sweeping.samplers import for_population, make_sampler

    spec = for_population({"name": "cmaes", "seed": 0}, 10, numeric_params=2)
    assert spec["popsize"] == 10
    assert for_population({"name": "cmaes", "popsize": 7}, 10, 2)["popsize"] == 7
    assert for_population({"name": "cmaes"}, 3, 2)["popsize"] == 6  # never below the package's default
    assert for_population({"name": "tpe"}, 10, 2) == {"name": "tpe"}
    space = {"x": optuna.distributions.FloatDistribution(-1, 1), "y": optuna.distributions.FloatDistribution(-1, 1)}
    generations = {}
    for name, sampler_spec in (("population", spec), ("default", {"name": "cmaes", "seed": 0})):
        study = optuna.create_study(sampler=make_sampler(sampler_spec))
        study.tell(study.ask(space), 1.0)  # CMA-ES's one start-up trial
        members = [study.ask(space) for _ in range(10)]
        for trial in members[:7]:
            study.tell(trial, trial.params["x"] ** 2 + trial.params["y"] ** 2)
        study.ask(space)
        generations[name] = study.trials[-1].system_attrs["cma:generation"]
    assert generations == {"population": 0, "default": 1}


def test_grid_values_stay_inside_the_range(tmp_path):
    from ganlab.sweeping.study import grid_space

    sweep = load(_write(tmp_path, space={"optim.d_lr": {"type": "float", "low": 1e-4, "high": 1e-2, "step": 1e-3},
                                          "train.d_steps": {"type": "int", "low": 1, "high": 5, "step": 2}},
                        sampler={"name": "grid"}))
    grid = grid_space(sweep)
    assert len(grid["optim.d_lr"]) == 10 and max(grid["optim.d_lr"]) <= 1e-2
    assert grid["train.d_steps"] == [1, 3, 5]


@pytest.mark.slow
def test_a_four_worker_sweep_shares_sqlite_and_records_one_child_run_per_trial(tmp_path):
    path = _write(tmp_path, "four", trials=8, fixed=["train.iterations=20", "train.eval_every=5",
                                                     "train.plot_every=20", "train.eval_samples=1024"])
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    proc = _sweep([path, "--workers", "4", "--storage", storage], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "locked" not in proc.stdout + proc.stderr
    study = optuna.load_study(study_name="four", storage=storage)
    n = len(study.trials)
    assert 8 <= n <= 11 and sorted(t.number for t in study.trials) == list(range(n))  # workers ending at once
    assert all(t.state.name == "COMPLETE" for t in study.trials)                      # may each start one more
    assert proc.stdout.count("COMPLETE") == n and "re-run the best trial" in proc.stdout
    client, parents, children = _children(tmp_path, "four")
    (parent,) = parents
    assert parent.info.status == "FINISHED"
    assert sorted(int(c.data.tags["trial_number"]) for c in children) == list(range(n))
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert all(c.info.status == "FINISHED" and c.data.tags["trial_state"] == "complete" for c in children)
    arts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert "best_config.yaml" in arts
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/optimization_history.png" in plots
    assert "best_value" in parent.data.metrics and parent.data.params["sampler"].startswith("tpe(")


@pytest.mark.slow
def test_a_killed_worker_s_trial_is_failed_retried_and_completed_in_the_same_invocation(tmp_path):
    path = _write(tmp_path, "kill", trials=3, fixed=["train.iterations=800", "train.eval_every=100",
                                                     "train.plot_every=800", "train.eval_samples=2000"])
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store(tmp_path / "mlflow.db"), "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen([sys.executable, "-m", "ganlab.sweep", path, "--workers", "2", "--storage", storage],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim, deadline = None, time.time() + 240
    while victim is None and time.time() < deadline:  # a worker that has logged some of its trial
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name="kill", storage=storage)
        except KeyError:
            continue
        running = [t for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"
                   and "worker" in t.user_attrs and t.intermediate_values]
        victim = running[0] if running else None
    assert victim is not None, "no trial was running before the deadline"
    os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    out, err = driver.communicate(timeout=600)
    assert driver.returncode == 0, out + err
    assert f"trial(s) {victim.number} failed and queued again" in out
    study = optuna.load_study(study_name="kill", storage=storage)
    states = sorted(t.state.name for t in study.trials)
    assert states.count("COMPLETE") >= 3 and states.count("FAIL") == 1 and "RUNNING" not in states
    (failed,) = [t for t in study.trials if t.state.name == "FAIL"]
    assert failed.number == victim.number and "died (exit code -9)" in failed.user_attrs["failure_reason"]
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and retry[0].params == victim.params
    counts = out.split("done in")[1].splitlines()[0]
    assert f"{states.count('COMPLETE')} complete" in counts and "1 retried" in counts  # its copy completed
    assert "fail" not in counts and "running" not in counts
    _, parents, children = _children(tmp_path, "kill")
    assert parents[0].info.status == "FINISHED"
    assert not [c for c in children if c.info.status == "RUNNING"]
    killed = [c for c in children if c.data.tags["trial_number"] == str(victim.number)]
    assert [c.info.status for c in killed] == ["KILLED"]


@pytest.mark.parametrize(("args", "expected"), [
    (["--workers", "0"], "--workers=0 must be >= 1"),
    (["--threads", "0"], "--threads=0 must be >= 1"),
    (["--population", "2", "--threads", "1000"], "--threads=1000 with --population must be at most"),
])
def test_bad_worker_and_thread_counts_are_one_line_naming_the_value(args, expected, capsys):
    """--threads with --population is one cohort worker process each: 1,000 of them on 2 cores spawned
    for minutes before anything trained."""
    from ganlab.sweep import main

    assert main(["default", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ganlab sweep: error: ") and expected in err and "\n" not in err


@pytest.mark.parametrize("args", [["--population", "x"], ["--population", "1.5"], ["--trials"], ["--colour", "red"]])
def test_flags_argparse_refuses_are_one_line_too(args, capsys):
    """argparse printed its usage block and 'python -m ganlab.sweep: error: ...' (found by a review)."""
    from ganlab.sweep import main

    with pytest.raises(SystemExit) as exit_:
        main(["default", *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("ganlab sweep: error: ") and err.count("\n") == 1
    assert err.rstrip().endswith("(see --help)") and args[0] in err


@pytest.mark.parametrize(("storage", "expected"), [
    ("http://127.0.0.1:5000", "storage='http://127.0.0.1:5000' is not allowed; use a database URL"),
    ("postgresql://u@127.0.0.1:1/db", "opened: OperationalError: (psycopg.OperationalError) connection failed"),
    ("sqlite:////proc/no/such/optuna.db", "cannot be opened: FileNotFoundError"),
])
@pytest.mark.parametrize("population", [[], ["--population", "2"]])
def test_a_storage_that_cannot_be_opened_is_one_line(storage, expected, population, tmp_path, monkeypatch, capsys):
    """SQLAlchemy's 130-line traceback before; an MLflow server URL was even suggested as an example."""
    from ganlab.sweep import main

    monkeypatch.chdir(tmp_path)
    tracking = ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    assert main(["default", "--trials", "1", "--storage", storage, *tracking, *population]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ganlab sweep: error: ") and expected in err and "\n" not in err


@pytest.fixture
def small_disk(tmp_path):
    """A 48 MB filesystem of its own (tmpfs: needs root, as CI and the development machine run);
    skipped where it cannot be mounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48M", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (not root?)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow
def test_a_disk_that_fills_mid_sweep_stops_it_in_one_line_and_the_same_command_finishes_it(small_disk):
    path = _write(small_disk, "full", trials=4, fixed=["train.iterations=500", "train.eval_every=50",
                                                       "train.plot_every=500", "train.eval_samples=2000"])
    storage, uri = f"sqlite:///{small_disk / 'optuna.db'}", f"sqlite:///{small_disk / 'mlflow.db'}"
    args = [sys.executable, "-m", "ganlab.sweep", path, "--workers", "2", "--storage", storage,
            "--tracking-uri", uri]
    sweep = subprocess.Popen(args, cwd=small_disk, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    while "COMPLETE" not in sweep.stdout.readline():  # a trial has ended: fill the disk
        assert sweep.poll() is None, sweep.stderr.read()[-3000:]
    filler = small_disk / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "count=100"], capture_output=True)
    _, err = sweep.communicate(timeout=600)
    assert sweep.returncode == 1 and "Traceback" not in err, err[-3000:]
    (line,) = [line for line in err.splitlines() if line.startswith("ganlab sweep: stopped")]
    assert "database or disk is full" in line and "run the same command again" in line, line

    filler.unlink()  # space is freed
    again = subprocess.run(args, cwd=small_disk, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    study = optuna.load_study(study_name="full", storage=storage)
    states = [(t.number, t.state.name, t.user_attrs.get("failure_reason")) for t in study.trials]
    assert sum(t.state.name == "COMPLETE" for t in study.trials) >= 4, (states, err[-2000:], again.stdout[-2000:])
    assert not [t for t in study.trials if t.state.name == "RUNNING"], states
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("sweep-full").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("ganlab.role") == "sweep_parent"]
    assert parent.info.status == "FINISHED"
    assert not [r for r in runs if r.info.status == "RUNNING"]


def test_a_resumed_sweeps_summary_shows_the_new_best_and_counts_that_fell_to_zero(tmp_path, monkeypatch):
    """Found by a review: the summary was logged at step 0 and time 0 each time, so after an extension
    MLflow showed the larger of the old and new best, and a count that fell to 0 kept its old value."""
    from ganlab.sweeping.summary import finish_parent_run

    monkeypatch.chdir(tmp_path)
    uri, storage = mlflow_store(tmp_path / "m.db"), f"sqlite:///{tmp_path / 'optuna.db'}"
    sweep = load(_write(tmp_path, "summary", trials=2))
    study = optuna.create_study(study_name=sweep.name, storage=storage)
    parent = open_parent_run(sweep, uri, storage)
    overrides = {"overrides": ["train.iterations=10"]}
    study.add_trial(optuna.trial.create_trial(value=0.03, params={}, distributions={}, user_attrs=overrides))
    running = study.ask()
    running.set_user_attr("overrides", overrides["overrides"])
    finish_parent_run(study, sweep, uri, parent, status="KILLED")
    before = MlflowClient(uri).get_run(parent).data.metrics
    assert (before["best_value"], before["trials_running"], before["trials_complete"]) == (0.03, 1, 1)

    study.tell(running, 0.01)  # the same command again: the running trial ends better
    parent = open_parent_run(sweep, uri, storage)
    finish_parent_run(study, sweep, uri, parent)
    after = MlflowClient(uri).get_run(parent).data.metrics
    assert (after["best_value"], after["trials_running"], after["trials_complete"]) == (0.01, 0, 2)


def test_process_workers_say_that_a_populations_stopped_trials_wait_for_it(tmp_path, monkeypatch, capsys):
    """Found by a review: the same sweep re-run without --population left them RUNNING without a word."""
    from ganlab.sweeping.driver import run_sweep

    monkeypatch.chdir(tmp_path)
    uri, storage = mlflow_store(tmp_path / "m.db"), f"sqlite:///{tmp_path / 'optuna.db'}"
    sweep = load(_write(tmp_path, "left", trials=1))
    study = open_study(sweep, storage, 30)
    stopped = study.ask()  # as a population sweep leaves a trial it was training when it was stopped
    stopped.set_user_attr("population", True)
    assert run_sweep(sweep, storage, uri, workers=1) == 1  # its one trial is asked, none completed
    assert ("ganlab sweep: trial(s) 0 stopped in a population sweep and stay RUNNING: only the same command "
            "with --population continues them (from its checkpoint)") in capsys.readouterr().out
    assert study.trials[0].state.name == "RUNNING"


def test_a_retry_asked_by_a_worker_that_died_before_tagging_it_is_run_in_the_same_invocation(tmp_path, monkeypatch,
                                                                                                capsys):
    """A full disk killed a replacement worker right after it took a queued retry (RUNNING, its
    overrides but no worker tag); the re-run, started seconds later, ended with it still RUNNING and a
    trial short (1 in 3 runs of the full-disk test). The sweep now waits until such a trial is
    ``stale_after`` old, fails it, queues it again and runs it."""
    from ganlab.sweeping import driver
    from ganlab.sweeping.worker_faults import WORKER_ATTR, fail_and_retry, retried_failures

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(driver, "UNOWNED_FLOOR_S", 0.0)
    uri, storage = mlflow_store(tmp_path / "m.db"), f"sqlite:///{tmp_path / 'optuna.db'}"
    sweep = load(_write(tmp_path, "orphan", trials=1))
    study = open_study(sweep, storage, 30)
    first = study.ask()
    first.set_user_attr("overrides", ["train.iterations=10"])
    first.set_user_attr(WORKER_ATTR, "elsewhere:1")
    fail_and_retry(study, study.trials[0], "its worker died")  # the queued copy: overrides, no worker
    taken = study.ask()  # the replacement worker takes it, and dies before tagging it
    assert taken.number == 1 and study.trials[1].user_attrs == {"overrides": ["train.iterations=10"]}

    assert driver.run_sweep(sweep, storage, uri, workers=1, stale_after=3) == 0
    # (failed as the sweep starts, if that took over 3 s, or once 3 s old while it waited)
    assert "before it could tag the trial; queued again" in study.trials[1].user_attrs["failure_reason"]
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "FAIL", "COMPLETE"], states
    assert retried_failures(study) == {0, 1}  # trial 2 is the copy of the copy: the budget counts it once


def test_workers_see_the_drivers_environment_of_now_not_the_forkserver_s(tmp_path, monkeypatch):
    """Workers are forked from a forkserver started with the first sweep of a process, whose
    environment is the driver's of then: a second sweep, after the user changed a variable (MLflow's
    credentials, a value its config reads with ``${oc.env:...}``), ran its workers with the old value."""
    from ganlab.sweeping.driver import run_sweep

    monkeypatch.chdir(tmp_path)
    uri, storage = mlflow_store(tmp_path / "mlflow.db"), f"sqlite:///{tmp_path / 'optuna.db'}"
    trained = {}
    for name, iterations in (("before", "20"), ("after", "40")):
        monkeypatch.setenv("SWEEP_ITERATIONS", iterations)
        fixed = ["train.iterations=${oc.env:SWEEP_ITERATIONS}", "train.eval_every=20", "train.eval_samples=2000"]
        assert run_sweep(load(_write(tmp_path, name, trials=1, fixed=fixed)), storage, uri, workers=1) == 0
        _, _, (child,) = _children(tmp_path, name)
        trained[name] = child.data.params["train.iterations"]
    assert trained == {"before": "20", "after": "40"}


@pytest.mark.parametrize("population", [[], ["--population", "2"]])
def test_a_gpu_sweep_on_a_machine_without_one_is_one_line_before_any_trial(population, tmp_path, monkeypatch, capsys):
    """With process workers each trial failed instead, listed as "no reason recorded"."""
    import torch

    from ganlab.sweep import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, "gpu", fixed=[*TINY, "train.accelerator=cuda"])
    assert main([path, "--storage", f"sqlite:///{tmp_path / 'o.db'}", *population]) == 2
    err = capsys.readouterr().err
    assert err == "ganlab sweep: error: train.accelerator='cuda' but no CUDA device is available; use cpu or auto\n"
    assert not (tmp_path / "o.db").exists() and not (tmp_path / "mlruns").exists()


def test_a_trial_its_trainer_refuses_records_why(tmp_path, monkeypatch):
    """A ConfigError raised by the trainer (not by composing the trial's config) left the trial FAIL
    with "no reason recorded" in the sweep's summary."""
    from ganlab.sweeping import trial as trial_module

    def refuse(cfg, **kwargs):
        raise ConfigError("train.accelerator='cuda' but no CUDA device is available; use cpu or auto")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(trial_module, "run_training", refuse)
    sweep = load(_write(tmp_path, "refused", trials=1))
    study = open_study(sweep, f"sqlite:///{tmp_path / 'o.db'}")
    study.optimize(TrialObjective(sweep, "no-parent"), n_trials=1, catch=(ConfigError,))
    assert study.trials[0].user_attrs["failure_reason"].startswith("train.accelerator='cuda' but no CUDA")


def test_the_driver_waits_for_an_unowned_trial_then_fails_and_requeues_it(tmp_path, monkeypatch, capsys):
    """With no worker left, a young unowned trial keeps the sweep waiting (said once); once old enough
    it is failed and queued again, and the loop goes on to run the copy: before, one that aged between
    two checks let the sweep end with it RUNNING."""
    from ganlab.sweeping import driver

    monkeypatch.setattr(driver, "UNOWNED_FLOOR_S", 0.0)
    study = open_study(load(_write(tmp_path, "wait", trials=1)), f"sqlite:///{tmp_path / 'o.db'}")
    study.ask()  # unowned: no worker tag
    waiting = driver._UnownedTrials(study, stale_after=1)
    assert waiting.pending() and waiting.pending()  # young: wait (announced once)
    assert capsys.readouterr().out.count("were asked by a worker that has not tagged them") == 1
    time.sleep(1.1)
    assert waiting.pending()  # failed and queued again: its copy is still to be run
    assert [t.state.name for t in study.trials] == ["FAIL", "WAITING"]
    assert not waiting.pending()  # nothing unowned is left


def _worker_whose_disk_fails(index, ignored, environ, sweep, storage_url, *rest) -> None:
    """A process worker on a machine whose disk fails for it alone: the first completes one trial."""
    if index == 0:
        study = open_study(sweep, storage_url)
        study.tell(study.ask(), 0.5)
    sys.exit(75)


def test_a_sweep_whose_workers_keep_dying_ends_unfinished_not_with_exit_0(tmp_path, monkeypatch, capsys):
    """Every start of a worker stopped by its machine: once the pool's starts are used up the sweep
    used to print its table and exit 0 (a trial had completed) with trials still WAITING or unrun."""
    import multiprocessing as mp

    from ganlab.sweeping import driver
    from ganlab.sweeping.worker_faults import EXIT_ENVIRONMENT

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(driver, "_worker", _worker_whose_disk_fails)
    monkeypatch.setattr(driver, "worker_context", lambda: mp.get_context("fork"))  # the patched worker runs
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    code = driver.run_sweep(load(_write(tmp_path, "dying", trials=3)), storage, mlflow_store(tmp_path / "mlflow.db"),
                            workers=2)
    err = capsys.readouterr().err
    assert code == EXIT_ENVIRONMENT, err
    assert ("all 6 worker starts are used up, 6 died (exit codes 75, 75, 75, 75, 75, 75): their disk or store "
            "failed; 2 trial(s) not run; run the same command again") in err
    _, (parent,), _ = _children(tmp_path, "dying")
    assert parent.info.status == "KILLED"


def _worker_that_waits_for_its_stop(index, ignored, environ, *rest) -> None:
    """A process worker busy with a trial: the first leaves on the driver's SIGUSR1, the second is stuck
    in its clean-up and ignores it."""
    signal.signal(signal.SIGUSR1, (lambda *_: sys.exit(130)) if index == 0 else signal.SIG_IGN)
    time.sleep(60)


@pytest.mark.slow
def test_a_stop_waits_for_the_drivers_study_call_and_a_stuck_worker_is_killed(tmp_path, monkeypatch, capfd):
    """SIGTERM to the driver while it is inside a study call: the call completes (a signal raised
    inside one can leave a lock held that the clean-up then waits on: a driver hung silently once in
    CI), the stop follows at the loop's next pass, and a worker that does not end within the grace
    period is killed rather than sent a SIGTERM that a stopping worker ignores."""
    import multiprocessing as mp

    from ganlab.sweeping import driver, worker_faults

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(driver, "_worker", _worker_that_waits_for_its_stop)
    monkeypatch.setattr(driver, "worker_context", lambda: mp.get_context("fork"))
    monkeypatch.setattr(driver, "STOP_GRACE_S", 1.0)
    calls, real_to_run = [], worker_faults.to_run

    def to_run_signalled_midway(study, trials):
        calls.append("started")
        if calls.count("started") == 2:  # the loop's first pass, both workers running
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.3)  # the handler runs here
        value = real_to_run(study, trials)
        calls.append("completed")
        return value

    monkeypatch.setattr(worker_faults, "to_run", to_run_signalled_midway)
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    start = time.monotonic()
    code = driver.run_sweep(load(_write(tmp_path, "cut", trials=2)), storage, mlflow_store(tmp_path / "mlflow.db"),
                            workers=2)
    err = capfd.readouterr().err
    assert code == 143 and "stopped by SIGTERM" in err, err
    assert err.count("SIGTERM received") == 1, err
    assert "SIGTERM received: stopping the workers cleanly" in err
    assert calls[:4] == ["started", "completed", "started", "completed"], calls
    assert time.monotonic() - start < 30  # not the worker's 60 s
    _, (parent,), _ = _children(tmp_path, "cut")
    assert parent.info.status == "KILLED"


@pytest.mark.parametrize("reason, shown", [
    ("loss became non-finite at iteration 2 (D 3.9e+32, G nan); try a smaller learning rate",
     "loss became non-finite at iteration 2"),
    ("stopped with the sweep (SIGTERM); queued again", "stopped with the sweep"),
    ("its worker host:1 died; queued again", "its worker host:1 died"),
    ("x" * 70, "x" * 59 + "\u2026"),
    ("(odd) reason", "(odd) reason"),
    ("", ""),
])
def test_a_trial_row_shows_the_first_clause_of_its_failure(reason, shown):
    from ganlab.sweeping.summary import short_reason

    assert short_reason(reason) == shown


def test_optuna_s_report_of_a_failed_trial_is_dropped_and_its_other_warnings_kept(tmp_path):
    """Optuna logs each failed trial as a warning with its traceback; the sweep prints its own line."""
    import logging

    from ganlab.sweeping.study import quiet_optuna

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    root = logging.getLogger("optuna")
    root.addHandler(handler)
    verbosity = optuna.logging.get_verbosity()
    try:
        quiet_optuna()
        quiet_optuna()  # twice: still one filter
        study = optuna.create_study()

        def diverges(trial):
            trial.suggest_float("x", 0, 1)
            raise ValueError("loss became non-finite")

        study.optimize(diverges, n_trials=1, catch=(ValueError,))
        logging.getLogger("optuna.study._optimize").warning("something else")
    finally:
        root.removeHandler(handler)
        optuna.logging.set_verbosity(verbosity)
    assert study.trials[0].state.name == "FAIL"
    assert [r.getMessage() for r in records] == ["something else"]
    assert len(logging.getLogger("optuna.study._optimize").filters) == 1


def _worker_that_leaves_a_mark(index, ignored, environ, sweep, storage_url, *rest) -> None:
    Path(storage_url.removeprefix("sqlite:///")).with_suffix(f".worker{index}").touch()


def test_a_stop_while_the_sweep_sets_up_closes_its_parent_run_and_starts_no_worker(tmp_path, monkeypatch, capfd):
    """SIGTERM after the parent run is opened, while dead workers' trials are recovered: before, the
    driver's default handler ended it there with its parent run RUNNING (and Ctrl-C said "interrupted
    before the sweep started"); now it is acted on once set-up ends, before any worker starts."""
    import multiprocessing as mp

    from ganlab.sweeping import driver

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(driver, "_worker", _worker_that_leaves_a_mark)
    monkeypatch.setattr(driver, "worker_context", lambda: mp.get_context("fork"))
    real = driver._recover_and_announce

    def signalled_during_set_up(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
        return real(*args, **kwargs)

    monkeypatch.setattr(driver, "_recover_and_announce", signalled_during_set_up)
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    code = driver.run_sweep(load(_write(tmp_path, "early", trials=2)), storage, mlflow_store(tmp_path / "mlflow.db"),
                            workers=2)
    err = capfd.readouterr().err
    assert code == 143 and "stopped by SIGTERM" in err, err
    assert not list(tmp_path.glob("o.worker*"))
    _, (parent,), children = _children(tmp_path, "early")
    assert parent.info.status == "KILLED" and not children


def test_a_worker_stopped_while_it_starts_exits_130_without_a_traceback(monkeypatch, capfd):
    """Ctrl-C reaching a worker before its first trial (still importing, opening the study) printed the
    worker's traceback ("Process ForkServerProcess-1: ... KeyboardInterrupt")."""
    import multiprocessing as mp

    from ganlab.sweeping import driver

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(driver, "_train_trials", interrupted)
    worker = mp.get_context("fork").Process(target=driver._worker,
                                            args=(0, (), dict(os.environ), None, "", "", "", os.getpid(), 1, 30))
    worker.start()
    worker.join(timeout=30)
    assert worker.exitcode == 130
    assert "Traceback" not in capfd.readouterr().err
