"""The sweep's SQLite storage under concurrent workers: each waiting trial is taken exactly once."""

from __future__ import annotations

import threading
import warnings

import optuna

from ganlab.sweeping.definition import load
from ganlab.sweeping.study import make_storage, open_study
from ganlab.sweeping.summary import counts, failure_lines
from ganlab.sweeping.worker_faults import budget_used, fail_and_retry, finished, recover_dead_workers, to_run


def test_concurrent_workers_never_take_the_same_waiting_trial(tmp_path):
    """A grid multirun enqueues its combinations and its workers take them with ``study.ask()``.
    Each must get a different one: before transactions were serialised, 4 workers asking for 60
    queued trials got only 41-53 distinct ones, and the duplicates failed with "Cannot tell a COMPLETE
    trial". Threads with their own storage (own connections) race just as processes do."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    workers, each = 4, 15
    study = optuna.create_study(study_name="grid", storage=make_storage(url))
    for i in range(workers * each):
        study.enqueue_trial({"i": i})
    taken: list[list[int]] = []
    start = threading.Barrier(workers)

    def take() -> None:
        mine = optuna.load_study(study_name="grid", storage=make_storage(url))
        start.wait()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # heartbeats warn outside study.optimize
            taken.append([mine.ask().number for _ in range(each)])

    threads = [threading.Thread(target=take) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    numbers = sorted(n for got in taken for n in got)
    assert numbers == list(range(workers * each))


def _asked_params(sweep, url: str, n: int) -> list[dict]:
    """Open the study as a new invocation would, ask and complete ``n`` trials, return their params."""
    study = open_study(sweep, url)
    params = []
    for _ in range(n):
        trial = study.ask()
        for p in sweep.space:
            trial.suggest_float(p.key, p.low, p.high, log=p.log)
        study.tell(trial, 1.0)
        params.append(trial.params)
    return params


def test_a_continued_seeded_study_does_not_repeat_its_first_trials(tmp_path):
    """Extending or resuming a seeded sweep opens the study with the definition's seed again; the
    random start-up points then repeated the first invocation's (trials 2-3 were trials 0-1 again).
    A fresh study keeps the definition's seed, so a new sweep is still reproducible."""
    sweep = load("default")
    sweep.space = [p for p in sweep.space if p.type == "float"]
    first = _asked_params(sweep, f"sqlite:///{tmp_path / 'a.db'}", 2)
    assert _asked_params(sweep, f"sqlite:///{tmp_path / 'b.db'}", 2) == first  # fresh: reproducible
    continued = _asked_params(sweep, f"sqlite:///{tmp_path / 'a.db'}", 2)
    assert not any(p in first for p in continued)


def test_a_retried_failure_is_not_counted_as_a_finished_trial(tmp_path):
    """A trial stopped by Ctrl-C or a dead worker is failed and retried; the progress line counted it
    and its retry, so a 3-trial sweep re-run after Ctrl-C ended at "4/3 done"."""
    study = optuna.create_study(study_name="s", storage=make_storage(f"sqlite:///{tmp_path / 'o.db'}"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeats warn outside study.optimize
        stopped = study.ask()
        fail_and_retry(study, study._storage.get_trial(stopped._trial_id), "stopped by SIGINT")
        retry = study.ask()  # takes the WAITING copy
        study.tell(retry, 1.0)
        study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)  # a real failure counts
    assert retry.number != stopped.number and finished(study) == 2 == budget_used(study)


def _stop_running_trial(study: optuna.Study, stopped_by: str | None) -> None:
    """The sweep's one RUNNING trial, its worker gone: as the driver finds it after a stop or a crash."""
    (running,) = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    study._storage.set_trial_user_attr(running._trial_id, "worker", "localhost:999999999")  # no such process
    recover_dead_workers(study, {"localhost:999999999"}, stopped_by=stopped_by)


def test_a_sweep_stopped_again_and_again_still_queues_its_trial(tmp_path):
    """Stopping a sweep (SIGTERM, Ctrl-C) queues the trial it was training again however often that
    happens: it is the user's stop, not the trial's fault. Before, the second stop left the study with
    nothing to run, "0 to run ... 2 fail", and a reason that said "retried" though it was not."""
    study = optuna.create_study(study_name="s", storage=make_storage(f"sqlite:///{tmp_path / 'o.db'}"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        for _ in range(3):
            _stop_running_trial(study, "SIGTERM")
            study.ask()  # the next invocation takes the WAITING copy
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "FAIL", "FAIL", "RUNNING"]
    assert all(t.user_attrs["failure_reason"] == "stopped with the sweep (SIGTERM); queued again" for t in trials[:3])
    assert "failure_reason" not in trials[3].user_attrs  # a copy does not carry its predecessor's reason
    assert counts(study) == {"retried": 3, "running": 1} and budget_used(study) == 1 and to_run(study, 1) == 0


def test_a_trial_whose_worker_dies_twice_is_not_run_a_third_time_and_says_so(tmp_path):
    study = optuna.create_study(study_name="s", storage=make_storage(f"sqlite:///{tmp_path / 'o.db'}"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        _stop_running_trial(study, None)
        study.ask()
        _stop_running_trial(study, None)
    first, second = study.get_trials()
    assert first.user_attrs["failure_reason"].endswith("died (its process is gone); queued again")
    assert second.user_attrs["failure_reason"].endswith("; not queued again (its worker died 2 times)")
    assert counts(study) == {"retried": 1, "fail": 1} and to_run(study, 1) == 0
    assert failure_lines(study) == [f"  trial 1: {second.user_attrs['failure_reason']}"]


def test_a_users_stops_do_not_use_up_the_retry_a_dead_worker_gets(tmp_path):
    """Optuna's retry count includes the copies a stopped sweep queued: a trial stopped once, then
    killed with its worker, was "not queued again"."""
    study = optuna.create_study(study_name="s", storage=make_storage(f"sqlite:///{tmp_path / 'o.db'}"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        _stop_running_trial(study, "SIGINT")
        study.ask()
        _stop_running_trial(study, None)  # its worker dies: the first death of this line
    assert [t.state.name for t in study.get_trials()] == ["FAIL", "FAIL", "WAITING"]
    assert study.get_trials()[1].user_attrs["failure_reason"].endswith("; queued again")


def test_a_trial_whose_heartbeat_stopped_is_queued_again_once(tmp_path):
    from ganlab.sweeping.worker_faults import retry_after_heartbeat_stopped

    study = optuna.create_study(study_name="s", storage=make_storage(f"sqlite:///{tmp_path / 'o.db'}"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(2):  # as Optuna's fail_stale_trials does: fail it, then call the storage's callback
            trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
            study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
            retry_after_heartbeat_stopped(study, study._storage.get_trial(trial._trial_id))
    assert [t.state.name for t in study.get_trials()] == ["FAIL", "FAIL"]  # the copy ran and died too: no third


def test_a_trial_asked_by_a_worker_killed_before_it_tagged_it_is_retried_once_stale(tmp_path):
    """kill -9 between a worker's ask and its tagging of the trial left a RUNNING trial with no
    attributes and no heartbeat, which nothing ever ended: the re-run finished with it RUNNING
    (test_sweep.py's kill -9 test, under load). Once older than --stale-after it is failed and queued
    again; a younger one (a live worker about to tag it) is left alone."""
    study = optuna.create_study(study_name="s", storage=make_storage(f"sqlite:///{tmp_path / 'o.db'}"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        orphan = study.ask()  # RUNNING, no params, no attributes: its worker died right here
        assert recover_dead_workers(study, untagged_after_s=3600) == {}  # young: maybe a live worker's
        assert study.trials[orphan.number].state == optuna.trial.TrialState.RUNNING
        retried = recover_dead_workers(study, untagged_after_s=0)
    assert list(retried) == [orphan.number] and retried[orphan.number] is not None
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING]
    assert "before it could tag" in study.trials[orphan.number].user_attrs["failure_reason"]


def test_workers_stopped_by_a_full_disk_do_not_use_up_a_trials_retry(tmp_path):
    """A full disk stopped the worker that took a dead worker's retry: "not queued again (its worker
    died 2 times)", and the re-run, after space was freed, ended a trial short. A worker stopped by its
    machine exits with EXIT_ENVIRONMENT, which is not held against the trial."""
    from ganlab.sweeping.worker_faults import EXIT_ENVIRONMENT

    study = optuna.create_study(study_name="s", storage=make_storage(f"sqlite:///{tmp_path / 'o.db'}"))
    tag = "localhost:999999999"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for code in (None, EXIT_ENVIRONMENT, EXIT_ENVIRONMENT):
            running = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
            study._storage.set_trial_user_attr(running._trial_id, "worker", tag)
            recover_dead_workers(study, {tag}, {tag: code} if code is not None else None)
    states = [t.state.name for t in study.get_trials()]
    assert states == ["FAIL", "FAIL", "FAIL", "WAITING"], states
    assert "stopped: its disk or store failed (exit code 75); queued again" in study.trials[2].user_attrs[
        "failure_reason"]


def test_a_trial_the_machine_stopped_is_queued_again_and_a_diverged_one_is_not(tmp_path, monkeypatch):
    """A run that met a full disk (in a checkpoint, a figure, the store) ended as TrainingFailed and
    its trial FAIL with that reason, counted as a failed configuration: the re-run after space was
    freed ran one trial short. Now the worker stops (EnvironmentFault) and queues the trial again."""
    import errno

    import pytest

    from ganlab.errors import EnvironmentFault
    from ganlab.sweeping import trial as trial_module
    from ganlab.sweeping.worker_faults import retried_failures, retry_interrupted
    from ganlab.training.runner import TrainingFailed

    def training(reason: str, cause: BaseException):
        def run(cfg, **kwargs):
            raise TrainingFailed(reason, "no-such-run") from cause
        return run

    monkeypatch.chdir(tmp_path)  # MlflowClient() opens the default store, ./mlflow.db
    sweep = load(str(_spec(tmp_path)))
    study = open_study(sweep, f"sqlite:///{tmp_path / 'o.db'}", 30)
    objective = trial_module.TrialObjective(sweep, "no-parent")
    monkeypatch.setattr(trial_module.MlflowClient, "set_tag", lambda *a, **k: None)
    full = OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(trial_module, "run_training", training(f"OSError: {full}", full))
    with pytest.raises(EnvironmentFault, match="trial 0 stopped: OSError: .Errno 28. No space left"):
        study.optimize(objective, n_trials=1, catch=(TrainingFailed,))
    assert "failure_reason" not in study.trials[0].user_attrs
    retry_interrupted(study)  # what the worker does before it exits
    assert [t.state.name for t in study.trials] == ["FAIL", "WAITING"] and retried_failures(study) == {0}

    diverged = FloatingPointError("loss is nan")
    monkeypatch.setattr(trial_module, "run_training", training("the loss is nan", diverged))
    study.optimize(objective, n_trials=1, catch=(TrainingFailed,))  # takes the waiting copy, fails alone
    assert study.trials[1].state.name == "FAIL" and study.trials[1].user_attrs["failure_reason"] == "the loss is nan"
    retry_interrupted(study)
    assert len(study.trials) == 2  # a failed configuration is not queued again


def _spec(tmp_path):
    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"fixed": ["train.iterations=10"], "space": {
        "optim.d_lr": {"type": "float", "low": 1e-4, "high": 1e-2}}, "objective": "ks", "trials": 2,
        "sampler": {"name": "tpe", "seed": 0}, "pruner": {"name": "none"}}))
    return path


def test_a_trial_its_machine_keeps_stopping_is_failed_for_good_after_three_retries(tmp_path):
    """A trial that itself exhausts a resource (a share of /dev/shm too large for a container) would be
    queued again forever, its copies taken first, starving the other trials."""
    from ganlab.sweeping.worker_faults import EXIT_ENVIRONMENT, MAX_MACHINE_RETRY

    study = optuna.create_study(study_name="s", storage=make_storage(f"sqlite:///{tmp_path / 'o.db'}"))
    tag = "localhost:999999999"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        for _ in range(MAX_MACHINE_RETRY + 1):
            (running,) = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
            study._storage.set_trial_user_attr(running._trial_id, "worker", tag)
            recover_dead_workers(study, {tag}, {tag: EXIT_ENVIRONMENT})
            if study.get_trials(states=(optuna.trial.TrialState.WAITING,)):
                study.ask()
    states = [t.state.name for t in study.get_trials()]
    assert states == ["FAIL"] * (MAX_MACHINE_RETRY + 1), states
    assert study.trials[-1].user_attrs["failure_reason"].endswith(
        f"not queued again (its machine stopped it {MAX_MACHINE_RETRY + 1} times)")
    assert to_run(study, 1) == 0  # the last one counts: the budget is used
