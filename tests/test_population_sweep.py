"""Population sweeps: trials trained together through Optuna's ask/tell (refill, pruning, failure),
one MLflow child run per trial, the fallback for sweeps a population cannot train, resume after kill -9."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import pytorch_lightning as pl
import torch
import yaml
from conftest import mlflow_store
from helpers import FullDisk
from mlflow.tracking import MlflowClient
from torch.utils.data import DataLoader

from ganlab.config.compose import compose_config
from ganlab.population.cohort import Cohort, build_member
from ganlab.population.member_settings import member_configs
from ganlab.population.population_module import PopulationModule
from ganlab.sweeping.definition import load
from ganlab.sweeping.population_driver import population_unsupported, run_population_sweep
from ganlab.sweeping.population_slots import LiveTrial, PopulationSlots
from ganlab.training.runner import final_sample_count

TINY = ["train.iterations=60", "train.eval_every=20", "train.plot_every=60", "train.eval_samples=2000"]


def _write(tmp_path: Path, name: str, **fields) -> str:
    spec = {"fixed": TINY, "space": {"optim.d_lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                                     "train.batch_size": {"type": "categorical", "choices": [128, 256]}},
            "objective": "ks", "trials": 6, "sampler": {"name": "tpe", "seed": 0, "n_startup_trials": 3},
            "pruner": {"name": "none"}, "population": {"best_artifacts": 1, "checkpoint_every_s": 1}}
    spec.update(fields)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def _children(tracking_uri: str, study: str):
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(f"sweep-{study}")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("ganlab.role") == "sweep_parent"]
    return client, parents, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def _sweep_in_process(tmp_path, monkeypatch, path: str, size: int, threads: int = 1) -> tuple[int, str, optuna.Study]:
    monkeypatch.chdir(tmp_path)
    tracking, storage = mlflow_store(tmp_path / "mlflow.db"), f"sqlite:///{tmp_path / 'optuna.db'}"
    sweep = load(path)
    code = run_population_sweep(sweep, storage, tracking, size=size, threads=threads)
    return code, tracking, optuna.load_study(study_name=sweep.name, storage=storage)


def _sweep_stopped_at(tmp_path, monkeypatch, path: str, size: int, iteration: int,
                      threads: int = 1) -> tuple[int, str, optuna.Study]:
    """The sweep, stopped by a Ctrl-C at the end of the population step that reaches ``iteration``."""
    from ganlab.signals import Stopped

    whole_step = PopulationModule.training_step

    def ctrl_c_at(self, batch, batch_idx):
        whole_step(self, batch, batch_idx)
        if self.iteration >= iteration:
            raise Stopped(signal.SIGINT)

    with monkeypatch.context() as stop:
        stop.setattr(PopulationModule, "training_step", ctrl_c_at)
        return _sweep_in_process(tmp_path, monkeypatch, path, size=size, threads=threads)


@pytest.mark.slow
def test_a_population_sweep_refills_its_slots_and_records_one_child_run_per_trial(tmp_path, monkeypatch, capsys):
    path = _write(tmp_path, "refill", fixed=[*TINY, "tracking.register=refill-best"])
    code, tracking, study = _sweep_in_process(tmp_path, monkeypatch, path, size=2)
    assert code == 0
    trial_lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[sweep refill] trial")]
    assert len(trial_lines) == 6 and trial_lines[-1].endswith(f"(6/6 done, best {study.best_value:.4g})")
    assert len(study.trials) == 6 and all(t.state.is_finished() for t in study.trials)  # 2 slots, 6 trials: refilled
    assert {t.params["train.batch_size"] for t in study.trials} == {128, 256}  # two cohorts side by side
    client, parents, children = _children(tracking, "refill")
    (parent,) = parents
    assert parent.info.status == "FINISHED"
    assert sorted(int(c.data.tags["trial_number"]) for c in children) == list(range(6))
    assert all(c.info.status == "FINISHED" and c.data.tags["trial_state"] == "complete" for c in children)
    for child in children:  # every evaluation of every trial, once
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "ks")]
        assert steps == [0, 20, 40, 60]
        assert child.data.params["optim.d_lr"] == repr(study.trials[int(child.data.tags["trial_number"])]
                                                       .params["optim.d_lr"])
    best = min((t for t in study.trials), key=lambda t: t.value)
    with_artifacts = [c for c in children if c.data.tags.get("best_artifacts") == "true"]
    assert [c.data.tags["trial_number"] for c in with_artifacts] == [str(best.number)]  # best_artifacts: 1
    arts = {a.path for a in client.list_artifacts(with_artifacts[0].info.run_id)}
    assert {"samples.npy", "model", "plots", "config.yaml"} <= arts
    # its generator is an MLflow Model, registered once the sweep ended (and only it)
    (version,) = client.search_model_versions("name = 'refill-best'")
    assert version.run_id == with_artifacts[0].info.run_id and parent.data.tags["registered"] == "models:/refill-best/1"
    assert not list((tmp_path / "populations").glob("*.pt"))  # a finished study leaves no checkpoint


@pytest.mark.slow
def test_a_conditional_population_sweep_logs_each_class_and_the_best_trials_labels(tmp_path, monkeypatch):
    # S4's conditional GAN as a population: per-class metrics on every child run; the best trial's
    # samples.npy comes with labels.npy (row i generated for class labels[i]) and its generator Model
    # takes noise and the one-hot class, as a single run's does
    import mlflow.pytorch
    import numpy as np
    from mlflow.artifacts import download_artifacts

    path = _write(tmp_path, "cgan", base=["experiment=cgan_two_blobs"], objective="sliced_w1", trials=3,
                  space={"optim.d_lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}})
    code, tracking, study = _sweep_in_process(tmp_path, monkeypatch, path, size=2)
    assert code == 0 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    client, _, children = _children(tracking, "cgan")
    assert len(children) == 3
    assert all({"sliced_w1_class0", "off_density_class1"} <= set(c.data.metrics) for c in children)
    (best,) = [c for c in children if c.data.tags.get("best_artifacts") == "true"]
    folder = Path(download_artifacts(run_id=best.info.run_id, tracking_uri=tracking, dst_path=str(tmp_path / "a")))
    samples, labels = np.load(folder / "samples.npy"), np.load(folder / "labels.npy")
    assert samples.shape == (len(labels), 2) and set(np.unique(labels)) == {0, 1}
    model = mlflow.pytorch.load_model(f"runs:/{best.info.run_id}/generator")
    assert next(model.parameters()).shape[1] == 2 + 2  # noise dim 2, then the one-hot of 2 classes


@pytest.mark.slow
def test_a_study_that_stops_taking_trials_ends_the_sweep_truthfully_and_the_same_command_finishes_it(
        tmp_path, monkeypatch, capsys):
    path = _write(tmp_path, "births", trials=4)
    write_trial = optuna.storages.RDBStorage.create_new_trial
    written = []

    def disk_fails_after_two(self, study_id, template_trial=None):  # the refill after the first two end
        if len(written) == 2:
            raise OSError("disk I/O error")
        written.append(template_trial.number)
        return write_trial(self, study_id, template_trial)

    with monkeypatch.context() as faults:
        faults.setattr(optuna.storages.RDBStorage, "create_new_trial", disk_fails_after_two)
        code, tracking, study = _sweep_in_process(tmp_path, monkeypatch, path, size=2)
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "StudyWriteError: writing trial 2 to the study failed: OSError: disk I/O error" in err, err
    assert [(t.number, t.state.name) for t in study.trials] == [(0, "COMPLETE"), (1, "COMPLETE")]  # told, kept
    _, (parent,), children = _children(tracking, "births")
    assert parent.info.status == "KILLED"
    assert sorted((c.data.tags["trial_number"], c.info.status) for c in children) == [("0", "FINISHED"),
                                                                                        ("1", "FINISHED")]

    code, tracking, study = _sweep_in_process(tmp_path, monkeypatch, path, size=2)  # the disk is back
    assert code == 0
    assert [(t.number, t.state.name) for t in study.trials] == [(n, "COMPLETE") for n in range(4)]
    _, (parent,), children = _children(tracking, "births")
    assert parent.info.status == "FINISHED"
    assert sorted(int(c.data.tags["trial_number"]) for c in children) == [0, 1, 2, 3]  # each trial once


@pytest.mark.slow
def test_a_full_disk_mid_sweep_is_one_line_and_the_same_command_finishes_the_sweep(tmp_path, monkeypatch, capfd):
    """The study and MLflow on a disk that fills once two trials have ended: the sweep stops with one
    line naming the cause (no library tracebacks), nothing is marked done that was not; once space is
    freed the same command finishes every trial, each with one child run, and closes the parent."""
    path = _write(tmp_path, "full", trials=4)
    write_trial = optuna.storages.RDBStorage.create_new_trial
    disk = FullDisk(monkeypatch)

    def fill_at_the_refill(self, study_id, template_trial=None):
        disk.full = disk.full or template_trial.number == 2
        return write_trial(self, study_id, template_trial)

    try:
        with monkeypatch.context() as faults:
            faults.setattr(optuna.storages.RDBStorage, "create_new_trial", fill_at_the_refill)
            code, tracking, _ = _sweep_in_process(tmp_path, monkeypatch, path, size=2)
    finally:
        disk.remove()
    err = capfd.readouterr().err
    assert code == 1 and "Traceback" not in err and "SQLAlchemy database error" not in err, err
    (line,) = [line for line in err.splitlines() if line.startswith("ganlab sweep:")]
    assert "database or disk is full" in line and "run the same command again" in line, line
    study = optuna.load_study(study_name="full", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    # results told after the disk filled could not be written: those trials stay RUNNING, to continue
    assert {t.state.name for t in study.trials} <= {"RUNNING", "COMPLETE"} and len(study.trials) <= 3

    code, tracking, study = _sweep_in_process(tmp_path, monkeypatch, path, size=2)  # space freed
    assert code == 0
    assert [(t.number, t.state.name) for t in study.trials] == [(n, "COMPLETE") for n in range(4)]
    _, (parent,), children = _children(tracking, "full")
    assert parent.info.status == "FINISHED"
    assert sorted(int(c.data.tags["trial_number"]) for c in children) == [0, 1, 2, 3]  # each trial once
    # a completed trial whose child run could not be closed while the disk was full is closed as complete
    assert all(c.info.status == "FINISHED" and c.data.tags["trial_state"] == "complete" for c in children)


def test_the_population_checkpoint_lives_beside_its_sqlite_storage_whatever_the_directory(tmp_path, monkeypatch):
    from ganlab.sweeping.population_driver import checkpoint_path

    sweep = load(_write(tmp_path, "where"))
    url = f"sqlite:///{tmp_path / 'studies' / 'o.db'}"
    paths = set()
    for cwd in (tmp_path, tmp_path / "studies"):
        cwd.mkdir(exist_ok=True)
        monkeypatch.chdir(cwd)
        paths.add(checkpoint_path(sweep, url))
    (path,) = paths  # the same command from another directory finds the same checkpoint
    assert path.parent == tmp_path / "studies" / "populations" and path.name.startswith("where-")
    assert checkpoint_path(sweep, "postgresql://h/db").parent == tmp_path / "studies" / "mlruns" / "populations"


@pytest.mark.parametrize("how, code", [("KeyboardInterrupt", 130), ("SIGTERM", 143)])
def test_a_stop_while_the_population_is_set_up_closes_the_parent_run_and_says_so(tmp_path, monkeypatch, capsys,
                                                                                   how, code):
    """Ctrl-C, or SIGTERM (which ended the process there with its parent run RUNNING before 2026-12-07;
    now acted on once set-up ends), while the checkpoint is read and trials reopened."""
    from ganlab.sweeping import population_driver

    def interrupted(*args):
        if how == "KeyboardInterrupt":
            raise KeyboardInterrupt
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
        return 0, 0, ""

    path = _write(tmp_path, "setup", trials=2)
    monkeypatch.setattr(population_driver, "_restore", interrupted)  # reading the checkpoint, reopening trials
    got, tracking, study = _sweep_in_process(tmp_path, monkeypatch, path, size=2)
    name = "SIGINT" if how == "KeyboardInterrupt" else how
    assert got == code and len(study.trials) == 0
    assert capsys.readouterr().err == (f"ganlab sweep: stopped by {name} before training started; the study's "
                                       "trials are as they were; run the same command again to continue\n")
    _, (parent,), children = _children(tracking, "setup")
    assert parent.info.status == "KILLED" and not children


@pytest.mark.slow
def test_stopped_as_every_member_finished_then_the_same_command_asks_the_rest(tmp_path, monkeypatch, capsys):
    """Ctrl-C as both members reach their last iteration: the checkpoint holds them before that
    evaluation, which the next run makes first; it ends both, and their slots must be refilled with
    the trials not yet asked (found by a review: the sweep said 'done' with half its trials unasked)."""
    path = _write(tmp_path, "last", trials=4)
    code, tracking, study = _sweep_stopped_at(tmp_path, monkeypatch, path, size=2, iteration=60)
    assert code == 130 and [t.state.name for t in study.trials] == ["RUNNING", "RUNNING"]
    code, tracking, study = _sweep_in_process(tmp_path, monkeypatch, path, size=2)
    assert code == 0
    assert [(t.number, t.state.name) for t in study.trials] == [(n, "COMPLETE") for n in range(4)]
    _, (parent,), children = _children(tracking, "last")
    assert parent.info.status == "FINISHED"
    assert sorted(int(c.data.tags["trial_number"]) for c in children) == [0, 1, 2, 3]  # each trial once
    assert all(c.info.status == "FINISHED" for c in children)


@pytest.mark.parametrize("content", ["missing", "garbage", "format 3", "current"])
def test_reading_a_checkpoint_says_why_its_trials_start_again_when_it_cannot_continue_them(tmp_path, content):
    from ganlab.sweeping.population_driver import CHECKPOINT_VERSION, read_checkpoint

    path = tmp_path / "default-1234abcd.pt"
    if content == "garbage":
        path.write_bytes(b"half a zip file")
    elif content != "missing":
        torch.save({"version": 3 if content == "format 3" else CHECKPOINT_VERSION, "step": 7}, path)
    saved, why = read_checkpoint(path)
    assert (saved is None) == (content != "current")
    expected = {"missing": "asked after the last checkpoint", "current": "asked after the last checkpoint",
                "garbage": "its checkpoint default-1234abcd.pt could not be read: ",
                "format 3": (f"its checkpoint default-1234abcd.pt is of format 3, written by another ganlab "
                             f"version; this one reads format {CHECKPOINT_VERSION}")}[content]
    assert why.startswith(expected) and "\n" not in why


@pytest.mark.slow
def test_a_sweep_whose_checkpoint_is_another_versions_starts_its_running_trials_again_and_says_why(
        tmp_path, monkeypatch, capsys):
    """Stopped mid-trial, then its checkpoint replaced by an older format's: the same command trains those
    trials again from their first iteration (each keeps its one child run) and says why."""
    from ganlab.sweeping.population_driver import checkpoint_path

    path = _write(tmp_path, "old", trials=2)
    code, tracking, study = _sweep_stopped_at(tmp_path, monkeypatch, path, size=2, iteration=30)
    assert code == 130 and [t.state.name for t in study.trials] == ["RUNNING", "RUNNING"]
    checkpoint = checkpoint_path(load(path), f"sqlite:///{tmp_path / 'optuna.db'}")
    assert checkpoint.exists()
    torch.save({"version": 3, "step": 30}, checkpoint)
    capsys.readouterr()
    code, tracking, study = _sweep_in_process(tmp_path, monkeypatch, path, size=2)
    assert code == 0 and [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert "2 running trials start again (its checkpoint old-" in capsys.readouterr().out
    client, _, children = _children(tracking, "old")
    assert sorted(int(c.data.tags["trial_number"]) for c in children) == [0, 1]  # each trial keeps its run
    for child in children:  # trained again from iteration 0: its curve goes on to the end
        assert child.info.status == "FINISHED"
        assert max(m.step for m in client.get_metric_history(child.info.run_id, "ks")) == 60


def _seeds_sweep(tmp_path, monkeypatch, stop_at: int | None = None, poison: bool = False, threads: int = 2):
    """The population sweep over two seeds per trial (4 members: 2 trials at a time), 3 trials, with two
    cohort worker processes (so cohorts are cut into pieces: a trial's seeds must stay together);
    optionally stopped at a step and run again, or with seed 1 of trial 0 diverging at iteration 30."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = _write(tmp_path, "seeds", trials=3, fixed=[*TINY, "train.seeds=2"])
    if poison:
        train_iteration = Cohort.train_iteration

        def seed_1_of_trial_0_diverges(self) -> None:
            train_iteration(self)
            for k, (key, cfg) in enumerate(zip(self.keys, self.configs, strict=True)):
                if key == 0 and cfg.train.seed == 1 and int(self.member_iteration[k]) == 30:
                    with torch.no_grad():
                        self.generator.flat[k].fill_(float("nan"))

        monkeypatch.setattr(Cohort, "train_iteration", seed_1_of_trial_0_diverges)
    if stop_at is not None:
        code, _, study = _sweep_stopped_at(tmp_path, monkeypatch, path, size=4, iteration=stop_at, threads=threads)
        assert code == 130 and any(t.state.name == "RUNNING" for t in study.trials)
    return _sweep_in_process(tmp_path, monkeypatch, path, size=4, threads=threads)


@pytest.mark.slow
def test_a_population_sweep_over_seeds_judges_each_trial_by_its_seeds_median(tmp_path, monkeypatch, capsys):
    code, tracking, study = _seeds_sweep(tmp_path, monkeypatch)
    assert code == 0 and "(2 trials of 2 seeds at a time, each judged by their median ks)" in capsys.readouterr().out
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    client, _, children = _children(tracking, "seeds")
    assert sorted(int(c.data.tags["trial_number"]) for c in children) == [0, 1, 2]
    for child in children:
        trial = study.trials[int(child.data.tags["trial_number"])]
        assert child.data.params["train.seeds"] == "2"
        finals = [child.data.metrics["ks_seed0"], child.data.metrics["ks_seed1"]]
        assert finals[0] != finals[1]  # two generators
        assert trial.value == pytest.approx(np.median(finals)) == pytest.approx(child.data.metrics["ks"])
        history = {m.step: m.value for m in client.get_metric_history(child.info.run_id, "ks")}
        assert sorted(history) == [0, 20, 40, 60]
        assert trial.intermediate_values == pytest.approx({20: history[20], 40: history[40]})
        # seeds.json and the median_seed tag, as a trial over seeds in a process worker records them
        per_seed = json.loads(Path(client.download_artifacts(child.info.run_id, "seeds.json", str(tmp_path)))
                              .read_text())
        assert [(s["seed"], s["status"]) for s in per_seed["seeds"]] == [(0, "FINISHED"), (1, "FINISHED")]
        assert [s["ks"] for s in per_seed["seeds"]] == pytest.approx(finals)
        median = per_seed["median_seed"]
        assert child.data.tags["median_seed"] == str(median) and finals[median] == min(finals)  # the lower middle
    # the best trial's samples.npy: its median seed's G on the noise a train.seeds run draws (the trial's
    # train.seed + 1, not the median seed's own)
    (best,) = [c for c in children if c.data.tags.get("best_artifacts") == "true"]
    cfg = compose_config([*TINY, "train.seeds=2", *(f"{k}={v}" for k, v in study.best_params.items())])
    member = member_configs(cfg)[int(best.data.tags["median_seed"])]
    built = build_member(member)
    generator = built.generator
    generator.load_state_dict(torch.load(client.download_artifacts(best.info.run_id, "model/generator_ema.pt",
                                                                   str(tmp_path))))
    z = built.noise.sample(final_sample_count(1), generator=torch.Generator().manual_seed(cfg.train.seed + 1))
    with torch.no_grad():
        expected = generator(z).numpy()
    np.testing.assert_allclose(np.load(client.download_artifacts(best.info.run_id, "samples.npy", str(tmp_path))),
                               expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_population_sweep_over_seeds_stopped_and_continued_ends_as_if_uninterrupted(tmp_path, monkeypatch,
                                                                                      capsys):
    _, whole_tracking, whole = _seeds_sweep(tmp_path / "whole", monkeypatch)
    capsys.readouterr()
    code, tracking, continued = _seeds_sweep(tmp_path / "stopped", monkeypatch, stop_at=30)
    assert code == 0 and [t.state.name for t in continued.trials] == ["COMPLETE"] * 3
    out = capsys.readouterr().out
    assert "2 trials continue from the checkpoint at step" in out and "warm-up" not in out  # no pruner
    # the two trials running at the stop continued from the checkpoint (one place per seed in its cohort):
    # the same values, reports and all (the third was asked after it, by a sampler seeded anew)
    for mine, theirs in zip(continued.trials[:2], whole.trials[:2], strict=True):
        assert (mine.params, mine.value, mine.intermediate_values) == (
            theirs.params, theirs.value, theirs.intermediate_values)
    # ... each seed's own curve under its own name (a member restored under another seed's config would
    # swap or merge them)
    for uri, trials in ((tracking, continued), (whole_tracking, whole)):
        client = MlflowClient(uri)
        trials.seed_finals = [[client.get_run(t.user_attrs["mlflow_run_id"]).data.metrics[f"ks_seed{s}"]
                               for s in (0, 1)] for t in trials.trials[:2]]
    assert continued.seed_finals == whole.seed_finals


@pytest.mark.slow
def test_a_seed_that_fails_fails_its_trial_in_a_population_sweep_and_the_others_go_on(tmp_path, monkeypatch):
    code, tracking, study = _seeds_sweep(tmp_path, monkeypatch, poison=True, threads=1)  # the patch: this process
    assert code == 0
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert study.trials[0].user_attrs["failure_reason"].startswith(
        "seed 1 failed (a trial over seeds fails with any of its seeds): loss became non-finite at iteration 31")
    client, _, children = _children(tracking, "seeds")
    (failed,) = [c for c in children if c.data.tags["trial_number"] == "0"]
    assert failed.data.tags["failed_seeds"] == "1" and failed.data.tags["trial_state"] == "failed"
    assert failed.info.status == "FAILED" and max(m.step for m in client.get_metric_history(
        failed.info.run_id, "ks")) == 20  # its last evaluation before the failure was read (at 40)


@pytest.mark.slow
def test_trials_whose_config_is_refused_fail_and_their_slots_are_asked_again(tmp_path, monkeypatch):
    # a group of 256 cannot divide a batch of 128 (each alone is fine, so the sweep file passes its
    # check): the first two trials fail at once, and the same refill asks two more for the two slots
    path = _write(tmp_path, "refused", trials=4,
                  space={"train.batch_size": {"type": "categorical", "choices": [128, 256]},
                         "preprocess.group_size": {"type": "categorical", "choices": [128, 256]}})
    study = optuna.create_study(study_name="refused", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    for batch, group in ((128, 256), (128, 256), (128, 128), (256, 128)):
        study.enqueue_trial({"train.batch_size": batch, "preprocess.group_size": group})
    code, tracking, study = _sweep_in_process(tmp_path, monkeypatch, path, size=2)
    assert code == 0
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL", "COMPLETE", "COMPLETE"]
    assert all("must divide train.batch_size=128" in t.user_attrs["failure_reason"] for t in study.trials[:2])


@pytest.mark.slow
def test_a_trial_that_cannot_be_asked_whole_is_failed_not_left_running(tmp_path, monkeypatch, capsys):
    from ganlab.sweeping.definition import SweepDefinition

    suggest, asked = SweepDefinition.suggest, []

    def third_fails(self, trial):
        asked.append(trial.number)
        if len(asked) == 3:
            raise ValueError("the sampler broke")
        return suggest(self, trial)

    monkeypatch.setattr(SweepDefinition, "suggest", third_fails)
    code, _, study = _sweep_in_process(tmp_path, monkeypatch, _write(tmp_path, "half", trials=4), size=2)
    assert code == 1 and "ValueError: the sampler broke" in capsys.readouterr().err
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "FAIL"]  # none stays RUNNING
    assert study.trials[2].user_attrs["failure_reason"] == "asking it failed: ValueError: the sampler broke"


@pytest.mark.slow
def test_pruned_and_failed_members_are_told_and_their_slots_refilled(tmp_path, monkeypatch):
    # queued in this order into 2 slots (no warm-up: both from the start): two good trials complete
    # first; then a G rate of 1e-7 stays at KS ~1 and is pruned against their median at its first
    # report, while an Adam step of 1e35 overflows
    # float32 within a few updates (a non-finite loss, FAIL); the last one takes a freed slot and ends
    path = _write(tmp_path, "ends", space={"optim.d_lr": {"type": "categorical", "choices": [1e-3, 1e35]},
                                          "optim.g_lr": {"type": "categorical", "choices": [1e-3, 3e-3, 1e-7]}},
                  trials=5, pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
                  population={"best_artifacts": 1, "checkpoint_every_s": 1, "warm_up": False})
    queued = [(1e-3, 1e-3), (1e-3, 3e-3), (1e-3, 1e-7), (1e35, 1e-3), (1e-3, 3e-3)]
    study = optuna.create_study(study_name="ends", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    for d_lr, g_lr in queued:
        study.enqueue_trial({"optim.d_lr": d_lr, "optim.g_lr": g_lr})
    code, tracking, study = _sweep_in_process(tmp_path, monkeypatch, path, size=2)
    assert code == 0
    states = [t.state.name for t in study.trials]
    assert states[:4] == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL"] and states[4] in ("COMPLETE", "PRUNED"), states
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert all("non-finite" in t.user_attrs["failure_reason"] for t in failed)
    _, _, children = _children(tracking, "ends")
    status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
    by_number = {int(c.data.tags["trial_number"]): c for c in children}
    assert sorted(by_number) == list(range(5))
    for t in study.trials:
        assert by_number[t.number].info.status == status[t.state.name]


def test_warm_up_opens_the_median_pruners_startup_trials_first_then_every_slot():
    sweep = load("default")  # median pruner, n_startup_trials: 4
    study = optuna.create_study()
    slots = PopulationSlots(study, sweep, None, 16, "parent", 0)
    for _ in range(4):
        assert slots.open_slots() == 4
        study.tell(study.ask(), 0.5)
    assert slots.open_slots() == 16
    study = optuna.create_study()
    assert PopulationSlots(study, sweep, None, 3, "parent", 0).open_slots() == 3  # fewer slots than it needs
    sweep.population["warm_up"] = False
    assert PopulationSlots(study, sweep, None, 16, "parent", 0).open_slots() == 16
    sweep.population["warm_up"], sweep.pruner = True, {"name": "successive_halving"}  # compares running trials
    assert PopulationSlots(study, sweep, None, 16, "parent", 0).open_slots() == 16
    sweep.seeds = 4  # a trial over 4 seeds is 4 members: 16 members hold 4 trials at a time
    assert PopulationSlots(study, sweep, None, 16, "parent", 0).open_slots() == 4


@pytest.mark.slow
def test_a_warm_up_sweep_asks_the_next_trials_once_the_first_have_completed(tmp_path, monkeypatch):
    # 3 slots, a median pruner that compares with 2 completed trials: trials 0 and 1 train alone; the
    # others are asked once both have completed, so that each of them can be pruned
    path = _write(tmp_path, "warm", fixed=["train.iterations=40", "train.eval_every=20", "train.plot_every=40",
                                           "train.eval_samples=1000", "train.batch_size=128"], trials=5,
                  space={"optim.d_lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
                  pruner={"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0})
    joins = []  # (trial, trials completed, trials training) as each trial joins
    original = PopulationSlots.join

    def join(self, trial, *args, **kwargs):
        done = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        joins.append((trial.number, len(done), len(self.live)))
        return original(self, trial, *args, **kwargs)

    monkeypatch.setattr(PopulationSlots, "join", join)
    code, _, study = _sweep_in_process(tmp_path, monkeypatch, path, size=3)
    assert code == 0
    assert [t.state.name for t in study.trials[:2]] == ["COMPLETE", "COMPLETE"]
    assert joins[:2] == [(0, 0, 0), (1, 0, 1)]  # the warm-up: two slots
    assert joins[2:5] == [(2, 2, 0), (3, 2, 1), (4, 2, 2)]  # then all three, once both have completed


def test_a_step_runs_up_to_the_next_members_evaluation_and_about_a_second():
    sweep = load("default")
    study = optuna.create_study()
    slots = PopulationSlots(study, sweep, None, 4, "parent", 0)
    module = PopulationModule([])
    module.iteration, module.seconds_per_iteration = 1000, 0.001
    for joined, eval_every, iterations in ((1000, 200, 4000), (930, 50, 4000), (0, 200, 1010)):
        cfg = compose_config([f"train.eval_every={eval_every}", f"train.iterations={iterations}"])
        slots.live[len(slots.live)] = LiveTrial(None, cfg, joined, None)
        ahead = slots.steps_ahead(module)
    assert ahead == 10  # the third member ends at its iteration 1,010, before the others are due (200 and 30 ahead)
    del slots.live[2]
    assert slots.steps_ahead(module) == 30  # the second is due at its iteration 100
    module.seconds_per_iteration = 0.05
    assert slots.steps_ahead(module) == 20  # about a second of training at 50 ms an iteration
    module.seconds_per_iteration = 5.0
    assert slots.steps_ahead(module) == 1


def test_a_member_with_nan_weights_leaves_the_others_bit_identical():
    configs = [compose_config([*TINY, "train.batch_size=128", f"train.seed={s}"]) for s in range(3)]

    def final_samples(poison: bool) -> np.ndarray:
        pl.seed_everything(0, verbose=False)
        cohort = Cohort(configs)
        if poison:
            with torch.no_grad():
                next(cohort.discriminator.parameters())[1].fill_(float("nan"))
        trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, accelerator="cpu")
        module = PopulationModule([cohort])
        trainer.fit(module, DataLoader(range(30), batch_size=None))
        cohort.collect_failures()  # member 1 stops here, halfway: the others go on with masks from now on
        trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, accelerator="cpu")
        trainer.fit(module, DataLoader(range(30), batch_size=None))
        z = cohort.noise.sample(1000, generator=torch.Generator().manual_seed(1))
        return cohort.generate_eval(z).numpy()

    clean, poisoned = final_samples(False), final_samples(True)
    assert np.isnan(poisoned[1]).all() or not np.array_equal(clean[1], poisoned[1])
    np.testing.assert_array_equal(clean[[0, 2]], poisoned[[0, 2]])


def test_a_member_joining_late_counts_its_own_iterations_and_schedule():
    cfg = compose_config([*TINY, "train.batch_size=128", "optim.schedule=linear", "optim.final_lr_fraction=0.1"])
    early = Cohort([cfg], keys=[0])
    module = PopulationModule([early])
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, DataLoader(range(20), batch_size=None))
    both = Cohort.assemble([(early, [0])], Cohort([cfg], keys=[1]))
    assert both.keys == [0, 1] and both.member_iteration.tolist() == [20, 0]
    opt_d, _ = both.optimizers()
    assert opt_d.steps.tolist() == [20.0, 0.0]
    lr = both.member_d_lr
    assert opt_d.lr[0].item() == pytest.approx(lr[0].item() * (1 - 0.9 * 20 / 60))
    assert opt_d.lr[1].item() == pytest.approx(lr[1].item())
    for mine, before in zip(both.generator.member(0).state_dict().values(),
                            early.generator.member(0).state_dict().values(), strict=True):
        assert torch.equal(mine, before)


def test_sweeps_a_population_cannot_train_are_named(tmp_path):
    path = _write(tmp_path, "dropout", base=["model.d.dropout=0.2"], trials=1, space={
        "optim.d_lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}})
    assert "dropout" in population_unsupported(load(path))
    assert population_unsupported(load("default")) is None
    assert population_unsupported(load("aylien_minibatch")) is None  # minibatch D: trained as a population


@pytest.mark.slow
def test_cli_falls_back_to_process_workers_with_one_line(tmp_path):
    path = _write(tmp_path, "fallback", base=["model.d.dropout=0.2"], trials=1, space={
        "optim.d_lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}})
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store(tmp_path / "mlflow.db")}
    proc = subprocess.run([sys.executable, "-m", "ganlab.sweep", path, "--population", "4", "--workers", "1",
                           "--storage", f"sqlite:///{tmp_path / 'o.db'}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    notice = [line for line in proc.stdout.splitlines() if "not trained as a population" in line]
    assert len(notice) == 1 and "dropout" in notice[0] and "1 worker(s)" in notice[0]
    assert "COMPLETE" in proc.stdout


@pytest.mark.slow
def test_kill_9_then_the_same_command_continues_every_trial_once(tmp_path):
    # trials long enough to outlive the second after a checkpoint (at 400 iterations, two cohort workers
    # could finish every member of the checkpoint before the kill, and nothing would continue from it)
    path = _write(tmp_path, "killed", fixed=["train.iterations=2000", "train.eval_every=100",
                                             "train.plot_every=2000", "train.eval_samples=2000"], trials=8)
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_store(tmp_path / "mlflow.db"), "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "ganlab.sweep", path, "--population", "4", "--threads", "2",  # cohort workers
            "--storage", f"sqlite:///{tmp_path / 'o.db'}"]
    first = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    checkpoint = tmp_path / "populations"  # beside the storage file
    deadline = time.monotonic() + 300
    while not list(checkpoint.glob("*.pt")) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.5)
    time.sleep(1.0)  # a little training past the checkpoint: some of it is done twice, nothing is lost
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert list(checkpoint.glob("*.pt")), "no checkpoint was written before the kill"
    second = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "continue from the checkpoint" in second.stdout
    study = optuna.load_study(study_name="killed", storage=f"sqlite:///{tmp_path / 'o.db'}")
    assert len(study.trials) == 8 and all(t.state.is_finished() for t in study.trials)
    client, parents, children = _children(f"sqlite:///{tmp_path / 'mlflow.db'}", "killed")
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert sorted(int(c.data.tags["trial_number"]) for c in children) == list(range(8))  # one each, none twice
    assert all(c.info.status in ("FINISHED", "KILLED", "FAILED") for c in children)
    for child in children:
        if child.data.tags["trial_state"] == "complete":
            steps = [m.step for m in client.get_metric_history(child.info.run_id, "ks")]
            assert steps == list(range(0, 2001, 100))  # every evaluation once, across the kill


@pytest.mark.slow
def test_a_cmaes_population_sweeps_generation_is_the_population_and_its_category_is_named_once(
        tmp_path, monkeypatch, capsys):
    """CMA-ES updates once a generation's trials have completed and ignores the rest of that
    generation: with its default generation (4 trials for one number) most of a population's results
    would be ignored, so a population sweep makes the generation the population. Its categorical
    batch size is drawn at random, said once at load, not in Optuna's warning for every trial."""
    path = _write(tmp_path, "cma", trials=6, sampler={"name": "cmaes", "seed": 0})
    sweep = load(path)
    assert sweep.notices == ["sampler cmaes draws train.batch_size at random: CMA-ES searches numbers, not "
                             "categories (tpe searches both)"]
    optuna_records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = optuna_records.append  # Optuna's own handler holds whichever stderr it first saw
    logging.getLogger("optuna").addHandler(handler)
    try:
        code, _, study = _sweep_in_process(tmp_path, monkeypatch, path, size=5)
    finally:
        logging.getLogger("optuna").removeHandler(handler)
    assert code == 0 and len(study.trials) == 6 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert "as a population of 5 on cpu (1 torch thread(s)); CMA-ES generations of 5 trials" in capsys.readouterr().out
    assert not [r.getMessage() for r in optuna_records if r.levelno >= logging.WARNING]


def test_the_progress_line_estimates_what_is_left_from_the_remaining_member_iterations():
    """Two live members at iterations 300 and 100 of 400, three trials still to ask: 100 + 300 + 3 x 400
    member-iterations left; at 160 member-iterations/s that is 10 s, said as a rounded estimate."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from ganlab.sweeping.population_slots import time_left

    cfg = OmegaConf.create({"train": {"eval_every": 100, "iterations": 400}})
    live = {0: LiveTrial(None, cfg, joined_at=200, run=None), 1: LiveTrial(None, cfg, joined_at=400, run=None)}
    slots = SimpleNamespace(live=live, budget=3, seeds=1)
    assert PopulationSlots.member_iterations_left(slots, step=500) == 100 + 300 + 3 * 400
    assert PopulationSlots.member_iterations_left(SimpleNamespace(live={}, budget=0, seeds=1), step=500) == 0
    slots.seeds = 2  # trials over two seeds: each iteration of a trial is two member-iterations
    assert PopulationSlots.member_iterations_left(slots, step=500) == 2 * (100 + 300 + 3 * 400)
    assert [time_left(s) for s in (1600 / 160, 0.2, 89, 600, 5399, 5400, 9000)] == [
        "about 10 s", "about 1 s", "about 89 s", "about 10 min", "about 90 min", "about 1.5 h", "about 2.5 h"]
