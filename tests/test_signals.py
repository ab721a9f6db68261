"""SIGTERM and SIGINT stop a CLI run cleanly: one line on stderr, exit codes 143 and 130, the MLflow
run KILLED with the signal as its reason, and a checkpoint of the iteration it stopped in, from which
`resume=` goes on."""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import mlflow_store
from mlflow.tracking import MlflowClient

LONG = ["train.iterations=200000", "train.eval_every=100", "train.plot_every=100000", "train.eval_samples=2000",
        "train.ckpt_every=100000"]


def _start(tmp_path, uri: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "ganlab.train", *LONG, *extra], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_training(proc: subprocess.Popen) -> str:
    """The run id, once the run has logged its first evaluations."""
    deadline = time.monotonic() + 180
    run_id = None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("ganlab: run "):
            run_id = line.split()[2]
        if run_id and line.startswith("[it "):
            return run_id
    raise AssertionError("the run did not start training within 180 s")


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_ends_the_run_killed_with_a_checkpoint_and_its_exit_code(sig, code, tmp_path):
    uri = mlflow_store(tmp_path / "mlflow.db")
    proc = _start(tmp_path, uri)
    run_id = _wait_for_training(proc)
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    name = signal.Signals(sig).name
    assert err.strip().splitlines() == [  # said when the signal came, then when the run was closed
        f"ganlab: {name} received: stopping cleanly at the end of the current step (send it again to stop at once)",
        f"ganlab: stopped by {name}; run {run_id} is marked KILLED in MLflow "
        f"(python -m ganlab.train resume={run_id} continues it from its last checkpoint)"]
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["failure_reason"] == f"stopped by {name}"
    (checkpoint,) = [a.path for a in client.list_artifacts(run_id, "checkpoints")]
    stopped_at = int(checkpoint.split("_")[-1].split(".")[0])  # the iteration it stopped in, though none was due
    assert 0 < stopped_at < 100000


@pytest.mark.slow
def test_a_stopped_seeds_run_says_how_to_resume_it_and_resume_finishes_it(tmp_path):
    """train.seeds runs checkpoint as single runs do: the stop line offers resume=, which goes on from
    the iteration the signal stopped and ends the same MLflow run FINISHED with its seeds' table."""
    uri = mlflow_store(tmp_path / "mlflow.db")
    proc = _start(tmp_path, uri, "train.seeds=2")
    run_id = _wait_for_training(proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == (
        f"ganlab: stopped by SIGINT; run {run_id} is marked KILLED in MLflow "
        f"(python -m ganlab.train resume={run_id} continues it from its last checkpoint)")
    client = MlflowClient(uri)
    assert client.get_run(run_id).data.tags["failure_reason"] == "stopped by SIGINT"
    (checkpoint,) = [a.path for a in client.list_artifacts(run_id, "checkpoints")]
    stopped_at = int(checkpoint.split("_")[-1].split(".")[0])
    again = subprocess.run([sys.executable, "-m", "ganlab.train", f"resume={run_id}",
                            f"train.iterations={stopped_at + 50}"], cwd=tmp_path, capture_output=True, text=True,
                           env={**os.environ, "MLFLOW_TRACKING_URI": uri}, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"run {run_id} resumed at iteration {stopped_at} of" in again.stdout
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "seeds.json" in {a.path for a in client.list_artifacts(run_id)}
    assert "failure_reason" not in run.data.tags  # the stop's reason went with the stop: the run finished


@pytest.fixture
def ctrl_c_raises():
    """Python's own SIGINT handler, whatever this process inherited: a shell starts background jobs
    (`make test-all &`) with SIGINT ignored, and Python then keeps it ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_signals_held_wait_for_the_end_of_the_block_and_then_reach_the_handler(ctrl_c_raises):
    from ganlab.signals import signals_held

    finished = False
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs between bytecodes: it would have raised here
            finished = True
    assert finished


def test_ctrl_c_while_a_new_store_creates_its_tables_leaves_a_working_store(tmp_path, ctrl_c_raises):
    """Interrupted in the middle of MLflow's migrations (here: right after one creates span_metrics),
    a store refused every later command ("table span_metrics already exists"); the interrupt now
    waits for the store to be whole."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from ganlab.tracking import open_experiment, warm_store

    def ctrl_c_mid_migration(conn, cursor, statement, *rest):
        if statement.lstrip().upper().startswith("CREATE TABLE SPAN_METRICS"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs between bytecodes: unheld, it raises here

    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"  # a bare path: this store is created here
    event.listen(Engine, "after_cursor_execute", ctrl_c_mid_migration)
    try:
        with pytest.raises(KeyboardInterrupt):
            warm_store(uri)
    finally:
        event.remove(Engine, "after_cursor_execute", ctrl_c_mid_migration)
    client, experiment_id = open_experiment(uri, "after")  # the next command finds a working store
    run = client.create_run(experiment_id)
    client.set_terminated(run.info.run_id)
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


def test_ctrl_c_before_a_sweep_starts_is_one_line(monkeypatch, capsys):
    from ganlab import sweep
    from ganlab.sweeping import definition

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(definition, "load", interrupted)
    assert sweep.main(["default"]) == 130
    err = capsys.readouterr().err
    assert err == "ganlab sweep: interrupted before the sweep started; run the same command again to start it\n"


def test_sigterm_stays_ganlab_s_while_lightning_trains(tracking_uri, monkeypatch):
    """Lightning wraps SIGTERM as fit starts; a SIGTERM that reached its notifier between ganlab's
    end-of-iteration check and Lightning's ended the process with SystemExit(0): a stopped run exited
    0 with no message (seen once in the whole suite). During training the handlers must be ganlab's."""
    import pytorch_lightning as pl

    from ganlab import signals
    from ganlab.config.compose import compose_config
    from ganlab.training import runner

    seen: list[object] = []

    class Look(pl.Callback):
        def on_train_batch_end(self, trainer, module, *args) -> None:
            seen.append(signal.getsignal(signal.SIGTERM))
            seen.append(signal.getsignal(signal.SIGINT))

    make = runner.make_trainer
    cfg = compose_config(["train.iterations=3", "train.eval_every=3", "train.plot_every=3",
                          "train.eval_samples=2000", "train.ckpt_every=0"])
    monkeypatch.setattr(runner, "make_trainer", lambda c, callbacks: make(c, [*callbacks, Look()]))
    with signals.stop_on_signals():
        runner.run_training(cfg, verbose=False)
    assert seen and all(handler is signals._raise_stopped for handler in seen)


class _SignalsWhilePickled:
    """Sends SIGINT to this process while torch.save pickles it: a Ctrl-C in the middle of a write."""

    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGINT)
        return (int, (0,))


def test_a_ctrl_c_during_a_checkpoint_write_waits_for_the_write(tmp_path, ctrl_c_raises):
    """Cut inside torch's zip writer, the KeyboardInterrupt surfaced as a RuntimeError ("unexpected
    pos"), which a sweep recorded as the trial's failure; now the write ends, then the Ctrl-C arrives."""
    import torch

    from ganlab.atomic_files import save_atomic

    path = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"cut": _SignalsWhilePickled(), "weights": torch.arange(100_000.0)}, path)
    assert torch.equal(torch.load(path, weights_only=False)["weights"], torch.arange(100_000.0))


def test_an_error_raised_while_a_ctrl_c_was_handled_is_a_stop_not_a_failure():
    from ganlab.training.runner import interruption_behind

    interrupt = KeyboardInterrupt()
    try:
        try:
            raise interrupt
        except KeyboardInterrupt:
            raise RuntimeError("unexpected pos 36160 vs 36052") from None  # a library's own error instead
    except RuntimeError as exc:
        assert interruption_behind(exc) is interrupt  # __context__ survives `from None`
    assert interruption_behind(RuntimeError("a real failure")) is None


def test_a_second_ctrl_c_held_during_a_block_still_reaches_the_handler(ctrl_c_raises):
    """Under a loop that defers the first stop to its iteration's end, a second Ctrl-C means "stop now":
    a held block used to pass on only the first."""
    from ganlab.signals import signals_held

    seen = []
    signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    with signals_held():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert seen == []
    assert seen == [signal.SIGINT, signal.SIGINT]


def test_the_stop_line_offers_resume_only_to_a_run_that_keeps_checkpoints():
    from ganlab.config.compose import compose_config
    from ganlab.train import how_to_go_on

    assert how_to_go_on(compose_config([]), "abc") == (
        "python -m ganlab.train resume=abc continues it from its last checkpoint")
    for overrides in (["train.ckpt_every=0"], ["train.ckpt_every=0", "train.seeds=2"]):
        assert how_to_go_on(compose_config(overrides), "abc") == (
            "it keeps no checkpoints (train.ckpt_every=0): run the command again to start over")
    assert how_to_go_on(compose_config([]), "abc", checkpointed=False) == (
        "it was stopped before its first checkpoint: run the command again to start over")


@pytest.mark.parametrize("resumed", [False, True])
def test_a_run_stopped_at_once_knows_whether_it_has_a_checkpoint(resumed):
    # a second signal stops in the middle of an iteration, with no checkpoint of it: resume= is offered
    # only if an earlier one exists (this run's, or the one a resumed run started from)
    from types import SimpleNamespace

    from ganlab.config.compose import compose_config
    from ganlab.signals import Stopped
    from ganlab.training.checkpoints import CheckpointWriter

    cfg = compose_config(["train.ckpt_every=1000"])
    writer = CheckpointWriter(tracker=None, cfg=cfg, history=None)
    writer.on_fit_start(None, SimpleNamespace(iteration=500 if resumed else 0))
    stop = Stopped(signal.SIGTERM)
    writer.on_exception(None, None, stop)
    writer.on_fit_end(None, None)
    assert stop.checkpointed is resumed


@pytest.mark.parametrize("seeds", [1, 3])  # run_training, run_population
def test_a_library_error_raised_while_handling_ctrl_c_ends_the_run_killed_not_failed(seeds, tracking_uri,
                                                                                    monkeypatch):
    """As torch's zip writer cut mid-write does: the run is stopped (KILLED, a sweep queues its trial again),
    not failed (a sweep would record a failure the trial never had)."""
    from mlflow.tracking import MlflowClient

    from ganlab.config.compose import compose_config
    from ganlab.population import population_runner
    from ganlab.training import runner

    def cut_by_ctrl_c(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("unexpected pos 36160 vs 36052") from None

    module = runner if seeds == 1 else population_runner
    monkeypatch.setattr(module, "_log_final_artifacts", cut_by_ctrl_c)
    cfg = compose_config([f"train.seeds={seeds}", "train.iterations=20", "train.eval_every=10",
                          "train.plot_every=20", "train.eval_samples=2000", "train.ckpt_every=0"])
    train = runner.run_training if seeds == 1 else population_runner.run_population
    with pytest.raises(KeyboardInterrupt) as stop:
        train(cfg, verbose=False)
    run = MlflowClient(tracking_uri).get_run(stop.value.run_id)
    assert run.info.status == "KILLED"


def test_a_first_signal_is_deferred_even_when_stderr_is_a_closed_pipe(monkeypatch):
    # `ganlab.train ... 2>&1 | tee log`, then Ctrl-C: tee dies with the same signal, and the notice's write
    # fails; raised from the handler mid-step it turned a clean stop (KILLED, checkpointed) into a failure
    from ganlab import signals

    def broken_pipe(fd, data):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(signals.os, "write", broken_pipe)
    with signals.deferred_to_boundaries():
        signals._raise_stopped(signal.SIGINT, None)  # the handler itself: must not raise
        stop = signals.check_stop()
    assert isinstance(stop, signals.Stopped) and stop.name == "SIGINT"


def _with_finalisers(script: str, signal_name: str) -> str:
    """``script`` with two classes in place of ``{finalisers}``: one whose finaliser sends this process
    ``signal_name`` and gives its handler a moment to run there, one whose finaliser fails."""
    return script.replace("{finalisers}", f"""class SignalledWhileFinalised:
    def __del__(self):
        os.kill(os.getpid(), signal.{signal_name})
        sum(range(1000))  # the handler runs here, inside the finaliser
class Failing:
    def __del__(self):
        raise ValueError("not a stop")
""")


def test_a_stop_raised_inside_a_finaliser_is_not_lost():
    """A signal that lands while a finaliser runs (SQLAlchemy's weakref callbacks run at any allocation)
    raised ``Stopped`` where Python drops exceptions: a stopped sweep went on and exited 0. The next
    ``check_stop`` returns it; other unraisable errors still reach the hook that was in place."""
    script = """
import os, signal, sys
from ganlab import signals
seen = []
sys.unraisablehook = lambda u: seen.append(type(u.exc_value).__name__)
{finalisers}with signals.stop_on_signals():
    SignalledWhileFinalised()
    Failing()
    stop = signals.check_stop()
print(stop.name if stop else None, seen, signals.check_stop(), sys.unraisablehook.__name__)
"""
    out = subprocess.run([sys.executable, "-c", _with_finalisers(script, "SIGTERM")], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.split() == ["SIGTERM", "['ValueError']", "None", "<lambda>"], out.stdout + out.stderr



def test_a_helper_process_ignores_stop_signals_before_it_imports_its_module(tmp_path, monkeypatch):
    """``call_ignoring_stop_signals``: a spawned helper ignores SIGINT and SIGTERM from before the import
    of its target's module (a cohort worker's imports torch, for seconds, in which a signal to the whole
    process group ended it)."""
    import multiprocessing as mp

    from ganlab.signals import call_ignoring_stop_signals

    (tmp_path / "slow_helper.py").write_text(
        "import os, signal\n"
        "seen = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))  # while it imports\n"
        "def main(out):\n"
        "    open(out, 'w').write(' '.join(str(int(h)) for h in seen))\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # a spawned child gets this process's sys.path
    out = tmp_path / "seen.txt"
    child = mp.get_context("spawn").Process(target=call_ignoring_stop_signals, args=("slow_helper:main", str(out)))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0 and out.read_text() == f"{int(signal.SIG_IGN)} {int(signal.SIG_IGN)}"


@pytest.mark.slow
def test_a_stop_while_the_run_is_opened_ends_that_run_killed(tracking_uri, monkeypatch):
    """SIGTERM while the tracker creates the run (the CLI's tracking process had created it, the trainer
    was waiting for its id): the run was left RUNNING, and the CLI said it stopped "before the run was
    created". Now the stop waits for the run to exist, then ends it KILLED."""
    from ganlab.config.compose import compose_config
    from ganlab.signals import Stopped, stop_on_signals
    from ganlab.training import runner

    real = runner._open_tracker

    def signalled_while_waiting_for_the_id(*args):
        tracker = real(*args)  # created ...
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # ... and the id on its way back
        return tracker

    monkeypatch.setattr(runner, "_open_tracker", signalled_while_waiting_for_the_id)
    cfg = compose_config(["train.iterations=20", "train.eval_every=10", "train.plot_every=20",
                          f"tracking.uri={tracking_uri}"])
    with pytest.raises(Stopped) as stopped, stop_on_signals():
        runner.run_training(cfg, verbose=False)
    assert stopped.value.run_id is not None and stopped.value.exit_code == 143
    run = MlflowClient(tracking_uri).get_run(stopped.value.run_id)
    assert run.info.status == "KILLED" and run.data.tags["failure_reason"] == "stopped by SIGTERM"


def test_a_deferred_block_inside_another_keeps_the_outer_deferral_and_its_pending_stop():
    from ganlab import signals

    with signals.stop_on_signals(), signals.deferred_to_boundaries("outer"):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        with signals.deferred_to_boundaries("inner"):
            assert signals._announcement == "inner"
        assert signals._deferred and signals._announcement == "outer"
        stop = signals.check_stop()
    assert stop is not None and stop.name == "SIGTERM"
    assert not signals._deferred


def test_a_sweep_workers_stop_raised_inside_a_finaliser_is_sent_again():
    """A worker's stop (a KeyboardInterrupt from its handler) raised inside a finaliser was printed
    ("Exception ignored in ... KeyboardInterrupt") and dropped, and the worker, already stopping, ignored
    the driver's SIGUSR1 and trained on. It is now sent again and stops the worker's main flow."""
    script = """
import os, signal, sys
from ganlab.sweeping import driver
seen = []
sys.unraisablehook = lambda u: seen.append(type(u.exc_value).__name__)
sys.unraisablehook = driver._redelivering_lost_stops(sys.unraisablehook)
signal.signal(signal.SIGUSR1, driver._stop_once)
{finalisers}try:
    SignalledWhileFinalised()
    Failing()
    import time
    for _ in range(100):  # training on, for up to 5 s
        time.sleep(0.05)
    print("trained on")
except KeyboardInterrupt:
    print("stopped", seen)
"""
    out = subprocess.run([sys.executable, "-c", _with_finalisers(script, "SIGUSR1")], capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "stopped ['ValueError']" and "KeyboardInterrupt" not in out.stderr, \
        out.stdout + out.stderr
