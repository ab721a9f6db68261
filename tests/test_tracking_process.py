"""The CLI's tracker runs MLflow in a child process: it must record exactly what the in-process
Tracker records, and a dead tracking process must end training with one clear line."""

from __future__ import annotations

import math
import os
import signal

import pytest
from helpers import artifact_paths
from mlflow.tracking import MlflowClient

from ganlab.config.compose import compose_config
from ganlab.tracking_process import TrackerProcess
from ganlab.training.runner import TrainingFailed, run_training

TINY = ["train.iterations=30", "train.eval_every=10", "train.plot_every=20", "train.eval_samples=2048",
        "train.ckpt_every=10", "train.ckpt_keep=2"]


def _history(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    run = client.get_run(run_id)
    def value(v: float) -> float | None:
        return None if math.isnan(v) else v  # the losses before the first step are NaN, and NaN != NaN

    return {key: sorted((m.step, value(m.value)) for m in client.get_metric_history(run_id, key))
            for key in run.data.metrics}


@pytest.mark.slow
def test_a_run_tracked_from_a_child_process_records_what_an_in_process_run_records(tracking_uri):
    cfg = compose_config(TINY)
    inline = run_training(cfg, verbose=False)
    tracking = TrackerProcess()
    try:
        remote = run_training(cfg, verbose=False, tracking=tracking)
    finally:
        tracking.close()
    assert tracking.run_id == remote.run_id != inline.run_id
    client = MlflowClient(tracking_uri)
    a, b = client.get_run(inline.run_id), client.get_run(remote.run_id)
    assert a.info.status == b.info.status == "FINISHED"
    assert a.data.params == b.data.params
    assert _history(client, inline.run_id) == _history(client, remote.run_id)  # same seed, same values
    names = lambda run_id: sorted(p.rsplit("/", 1)[-1] if "checkpoints/" in p else p  # noqa: E731
                                  for p in artifact_paths(client, run_id))
    assert names(inline.run_id) == names(remote.run_id)
    assert "plots/histogram_000020.png" in names(remote.run_id) and "ckpt_00000030.pt" in names(remote.run_id)


def test_a_config_error_stops_the_tracking_process_without_touching_the_store(tmp_path):
    tracking = TrackerProcess()
    tracking.close()  # what the CLI does when composing fails: no store was opened, so no wait
    assert not tracking._proc.is_alive()


@pytest.mark.slow
def test_a_dead_tracking_process_fails_the_run_with_its_reason(tracking_uri):
    tracking = TrackerProcess()

    def kill_it(iteration: int, metrics: dict[str, float]) -> None:
        if iteration == 10:
            os.kill(tracking._proc.pid, signal.SIGKILL)
            tracking._proc.join()

    try:
        with pytest.raises(TrainingFailed) as err:
            run_training(compose_config(TINY), verbose=False, tracking=tracking, on_evaluate=kill_it)
    finally:
        tracking.close()
    assert "tracking process died" in err.value.reason and "\n" not in err.value.reason
    run = MlflowClient(tracking_uri).get_run(tracking.run_id)
    assert run.info.status == "FAILED"  # closed from the trainer, since the child could not
    assert "tracking process died" in run.data.tags["failure_reason"]


_ORPHAN_SCRIPT = """
import multiprocessing as mp
from ganlab.tracking_process import _serve

if __name__ == "__main__":
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child,))
    proc.start()
    child.close()
    for _ in range(3):
        parent.send(("list_checkpoints", (), {}, True))  # calls the trainer waits for: the child answers them
    parent.close()  # ... but the trainer is killed before it reads the answers
    proc.join(120)
    print("exit", proc.exitcode)
"""


def test_a_tracking_process_whose_trainer_died_exits_quietly(tmp_path):
    """After a kill -9 of the trainer the child's answers hit a closed pipe: it used to print a
    BrokenPipeError traceback and exit 1."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _ORPHAN_SCRIPT], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert out.stdout.strip() == "exit 0" and "Traceback" not in out.stderr, out.stderr[-2000:]


@pytest.mark.parametrize(("status", "ends"), [("FINISHED", "FAILED"), ("KILLED", "KILLED")])
def test_a_call_that_failed_in_the_child_still_ends_the_run_never_running(tracking_uri, status, ends):
    # figures and metrics are sent without waiting; one that fails in the child is reported to the next
    # waited call, here finish: a run that would have FINISHED ends FAILED with that reason (it was left
    # RUNNING when a GIF could not be written, e.g. with data.std=1e-30 before that was refused); a
    # stopped one stays KILLED, as the stop line says, with the failure added to its reason
    from ganlab.tracking_process import TrackingError

    cfg = compose_config(TINY)
    tracking = TrackerProcess()
    try:
        tracking.warm(tracking_uri, cfg.data)
        tracking.open(cfg)
        tracking.log_animation([], "plots/broken.gif")  # no frames: the child's writer fails
        if status == "FINISHED":
            with pytest.raises(TrackingError) as err:
                tracking.finish(status)
            message = str(err.value)
        else:
            tracking.finish(status, "stopped by SIGINT")
            message = "stopped by SIGINT; tracking failed"
    finally:
        tracking.close()
    run = MlflowClient(tracking_uri).get_run(tracking.run_id)
    assert run.info.status == ends
    assert message in run.data.tags["failure_reason"] and "\n" not in message
