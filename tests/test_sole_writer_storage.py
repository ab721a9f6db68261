"""The population sweep's study storage: reads from memory, reports and results written behind.

What matters: the database ends up holding exactly what a plain storage would (states, values,
params, attributes, every report); samplers and pruners decide exactly as they would on the plain
storage; trial reads never go to the database; a failed write is raised, not lost; and a second
live writer is refused.
"""

from __future__ import annotations

import subprocess
import sys
import time

import optuna
import pytest
from conftest import mlflow_store
from optuna.storages import BaseStorage

from ganlab.run_heartbeat import process_tag
from ganlab.sweeping.sole_writer_storage import (
    WRITER_ATTR,
    SoleWriterStorage,
    StudyBusyError,
    StudyWriteError,
    claim_study,
)
from ganlab.sweeping.study import make_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _objective_curve(x: float, y: int, step: int) -> float:
    return (x - 0.3) ** 2 + 0.1 * y + 1.0 / (step + 1)


def _drive(study: optuna.Study, trials: int, running: int = 6) -> list[tuple[int, dict, str]]:
    """An ask/report/prune/tell loop with several trials running at once, as a population does."""
    live: list[optuna.Trial] = []
    log = []
    asked = 0
    step = 0
    while asked < trials or live:
        while len(live) < running and asked < trials:
            trial = study.ask()
            trial.suggest_float("x", 0.0, 1.0)
            trial.suggest_int("y", 0, 3)
            trial.set_user_attr("overrides", [f"x={trial.params['x']}"])
            live.append(trial)
            asked += 1
        step += 1
        for trial in list(live):
            value = _objective_curve(trial.params["x"], trial.params["y"], step)
            trial.report(value, step)
            if trial.number % 7 == 3:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                log.append((trial.number, trial.params, "FAIL"))
                live.remove(trial)
            elif trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                log.append((trial.number, trial.params, "PRUNED"))
                live.remove(trial)
            elif step % 5 == trial.number % 5 and step > 3:
                study.tell(trial, value)
                log.append((trial.number, trial.params, "COMPLETE"))
                live.remove(trial)
    return log


def _study(storage, name: str = "s") -> optuna.Study:
    return optuna.create_study(storage=storage, study_name=name, load_if_exists=True,
                               sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=4, constant_liar=True),
                               pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2))


def _sole_writer(tmp_path) -> tuple[str, BaseStorage, SoleWriterStorage, optuna.Study]:
    """A fresh SQLite study behind the wrapper: its URL, the database storage, the wrapper, the study."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    inner = make_storage(url)
    storage = SoleWriterStorage(inner)
    return url, inner, storage, _study(storage)


def _snapshot(trials: list[optuna.trial.FrozenTrial]) -> list[tuple]:
    return [(t.number, t.state, t.values, t.params, t.intermediate_values, t.user_attrs) for t in trials]


def test_decisions_and_database_match_a_plain_storage(tmp_path):
    plain = _study(make_storage(f"sqlite:///{tmp_path / 'plain.db'}"))
    expected = _drive(plain, trials=24)

    url = f"sqlite:///{tmp_path / 'sole.db'}"
    storage = SoleWriterStorage(make_storage(url))
    sole = _study(storage)
    assert _drive(sole, trials=24) == expected  # the sampler's suggestions and the pruner's calls are the same
    storage.close()

    reread = optuna.load_study(study_name="s", storage=make_storage(url))
    assert _snapshot(reread.get_trials()) == _snapshot(plain.get_trials())
    assert _snapshot(sole.get_trials()) == _snapshot(plain.get_trials())
    states = {t.state for t in reread.get_trials()}
    assert {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL} <= states


def test_trial_reads_never_go_to_the_database(tmp_path):
    _, inner, storage, study = _sole_writer(tmp_path)
    for _ in range(3):
        study.ask().suggest_float("x", 0, 1)

    def refuse(*args, **kwargs):
        raise AssertionError("read from the database")

    inner.get_all_trials = inner.get_trial = refuse  # type: ignore[method-assign]
    for trial in study.get_trials(deepcopy=False):
        optuna.Trial(study, trial._trial_id).report(0.5, 1)
        # written through the storage itself (optuna.Trial also edits the object it holds in place)
        storage.set_trial_intermediate_value(trial._trial_id, 2, 0.25)
        storage.set_trial_user_attr(trial._trial_id, "k", trial.number)
    storage.set_trial_state_values(study.get_trials()[0]._trial_id, optuna.trial.TrialState.COMPLETE, [0.1])
    assert len(study.get_trials()) == 3
    assert all(t.intermediate_values == {1: 0.5, 2: 0.25} for t in study.get_trials())
    assert [t.user_attrs["k"] for t in study.get_trials()] == [0, 1, 2]
    assert study.best_trial.number == 0 and study.best_value == 0.1
    storage.close()


def test_a_trial_is_written_whole_in_one_transaction_when_its_births_are_written(tmp_path):
    url, inner, storage, study = _sole_writer(tmp_path)
    calls: list[str] = []
    for name in ("create_new_trial", "set_trial_param", "set_trial_user_attr"):
        method = getattr(inner, name)
        setattr(inner, name, lambda *a, _m=method, _n=name, **k: (calls.append(_n), _m(*a, **k))[1])
    handles = []
    for _ in range(3):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.suggest_int("y", 0, 3)
        trial.set_user_attr("overrides", [f"x={trial.params['x']}"])
        handles.append(trial)
    plain = optuna.load_study(study_name="s", storage=make_storage(url))
    assert plain.get_trials() == [] and calls == []  # asked, in memory only
    assert [t.number for t in study.get_trials()] == [0, 1, 2]

    storage.write_births()
    assert calls == ["create_new_trial"] * 3
    written = plain.get_trials()
    assert [(t.number, t.state, t.params, t.user_attrs) for t in written] == [
        (h.number, optuna.trial.TrialState.RUNNING, h.params, {"overrides": [f"x={h.params['x']}"]}) for h in handles]
    handles[1].report(0.5, 1)  # handles taken before the birth still address their trial
    study.tell(handles[1], 0.5)
    storage.flush()
    again = plain.get_trials()[1]
    assert again.state == optuna.trial.TrialState.COMPLETE and again.intermediate_values == {1: 0.5}
    assert study.get_trials()[1]._trial_id == again._trial_id
    storage.close()


def test_a_birth_that_cannot_be_written_is_one_clear_error_and_the_results_told_before_it_are_kept(tmp_path):
    url, inner, storage, study = _sole_writer(tmp_path)
    done = study.ask()
    storage.write_births()
    slow_write = inner.set_trial_state_values

    def slowly(*args, **kwargs):  # still queued when the next birth fails
        time.sleep(0.3)
        return slow_write(*args, **kwargs)

    def read_only(*args, **kwargs):
        raise OSError("attempt to write a readonly database")

    inner.set_trial_state_values = slowly  # type: ignore[method-assign]
    study.tell(done, 0.25)
    study.ask().suggest_float("x", 0.0, 1.0)
    inner.create_new_trial = read_only  # type: ignore[method-assign]
    with pytest.raises(StudyWriteError, match="writing trial 1 to the study failed: OSError: attempt to write"):
        storage.flush()
    (written,) = optuna.load_study(study_name="s", storage=make_storage(url)).get_trials()
    assert written.state == optuna.trial.TrialState.COMPLETE and written.value == 0.25  # not lost with the birth
    with pytest.raises(StudyWriteError):
        storage.close()
    assert not storage._writer.is_alive()


def test_what_the_database_would_refuse_fails_at_the_call_not_at_the_birth(tmp_path):
    url, _, storage, study = _sole_writer(tmp_path)
    study.enqueue_trial({"x": 0.5})
    study.ask().suggest_float("x", 0.0, 1.0)  # the enqueued trial, taken: its x is a float
    unborn = study.ask()
    with pytest.raises(ValueError, match="Cannot set different distribution kind"):
        unborn.suggest_int("x", 0, 3)
    with pytest.raises(TypeError, match="not JSON serializable"):
        unborn.set_user_attr("when", object())
    storage.write_births()  # the refused calls left nothing that blocks the births
    assert [t.number for t in optuna.load_study(study_name="s", storage=make_storage(url)).trials] == [0, 1]


def test_a_trial_another_process_added_meanwhile_stops_the_births_with_one_line(tmp_path):
    url, _, storage, study = _sole_writer(tmp_path)
    study.ask()
    optuna.load_study(study_name="s", storage=make_storage(url)).ask()  # a writer claim_study could not see
    with pytest.raises(StudyBusyError, match="another process added trials to study 's'"):
        storage.write_births()


def test_a_failed_write_is_raised_on_the_next_call(tmp_path):
    _, inner, storage, study = _sole_writer(tmp_path)
    trial = study.ask()

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    inner.set_trial_intermediate_value = disk_full  # type: ignore[method-assign]
    trial.report(1.0, 1)  # queued
    with pytest.raises(StudyWriteError, match="No space left on device"):
        storage.flush()
    with pytest.raises(StudyWriteError):
        study.ask()


def test_a_second_live_writer_is_refused_and_a_dead_ones_claim_is_taken_over(tmp_path):
    study = _study(make_storage(f"sqlite:///{tmp_path / 'x.db'}"))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        study.set_user_attr(WRITER_ATTR, process_tag(other.pid))
        with pytest.raises(StudyBusyError, match=f"process {process_tag(other.pid)}"):
            claim_study(study)
    finally:
        other.kill()
        other.wait()
    claim_study(study)  # its holder is gone
    assert study.user_attrs[WRITER_ATTR] == process_tag()


@pytest.mark.parametrize("mode", [["--workers", "1"], ["--population", "2"]])
def test_a_sweep_on_a_study_a_live_population_writes_is_one_line(tmp_path, monkeypatch, capsys, mode):
    import yaml

    from ganlab import sweep as sweep_cli

    monkeypatch.chdir(tmp_path)
    spec = {"fixed": ["train.iterations=20"], "objective": "ks", "trials": 2, "pruner": {"name": "none"},
            "space": {"optim.d_lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}}
    (tmp_path / "busy.yaml").write_text(yaml.safe_dump(spec))
    url = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(storage=make_storage(url), study_name="busy")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        study.set_user_attr(WRITER_ATTR, process_tag(other.pid))
        code = sweep_cli.main([str(tmp_path / "busy.yaml"), *mode, "--storage", url,
                               "--tracking-uri", mlflow_store(tmp_path / "m.db")])
    finally:
        other.kill()
        other.wait()
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert f"being trained as a population by process {process_tag(other.pid)}" in err
    assert study.trials == []
