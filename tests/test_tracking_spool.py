"""A tracking server that stops answering mid-run loses nothing: the run's calls go to a local spool,
are sent in order when the server answers again, and a run that ends during the outage says where its
spool is; `python -m ganlab.tracking_spool` sends it later, each call once.

The fast tests stand a SQLite store in for the server and switch its reachability (a client whose
calls fail as MLflow's do when nothing listens); test_tracking_server.py kills a real server.
"""

from __future__ import annotations

import pytest
import requests
from conftest import mlflow_store
from mlflow.tracking import MlflowClient

import ganlab.tracking as tracking
import ganlab.tracking_spool as tracking_spool
from ganlab.config.compose import compose_config
from ganlab.tracking import Tracker
from ganlab.tracking_spool import Spool, TrackingSpooled, is_unreachable


class _Outage:
    """A switch for the server: while ``down``, every client call fails as an unreachable server's does."""

    def __init__(self) -> None:
        self.down = False


class _FlakyClient:
    def __init__(self, inner: MlflowClient, outage: _Outage) -> None:
        self._inner, self._outage = inner, outage

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if self._outage.down:
                raise requests.exceptions.ConnectionError(
                    "HTTPConnectionPool(host='127.0.0.1', port=5000): Max retries exceeded (Connection refused)")
            return attr(*args, **kwargs)

        return call


@pytest.fixture
def offline_tracker(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = mlflow_store(tmp_path / "mlruns" / "mlflow.db")
    cfg = compose_config(["train.iterations=10", f"tracking.uri={uri}"])
    tracker = Tracker(cfg, heartbeat=False)
    outage = _Outage()
    tracker.client = _FlakyClient(tracker.client, outage)
    monkeypatch.setattr(tracking, "server_answers", lambda uri, timeout_s=2.0: not outage.down)
    monkeypatch.setattr(tracking_spool, "server_answers", lambda uri, timeout_s=2.0: not outage.down)
    monkeypatch.setattr(tracking, "PROBE_EVERY_S", 0.0)
    monkeypatch.setenv("GANLAB_SPOOL_WAIT_S", "0")  # a run ending offline does not wait for the server
    return tracker, outage, MlflowClient(uri)


def _steps(client: MlflowClient, run_id: str, key: str = "ks") -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_an_outage_mid_run_is_spooled_then_sent_in_order_when_the_server_answers(offline_tracker, tmp_path):
    tracker, outage, client = offline_tracker
    tracker.log_metrics({"ks": 0.5}, 0)
    outage.down = True
    for step in (10, 20, 30):
        tracker.log_metrics({"ks": 0.5 - step / 100}, step)
    picture = tmp_path / "frame.png"
    picture.write_bytes(b"\x89PNG not really")
    tracker.log_artifact(picture, "plots")
    picture.unlink()  # a temporary file: the spool holds its own copy
    tracker.set_tag("note", "written while offline")
    spool = Spool(tmp_path / "mlruns" / "spool" / tracker.run_id)
    assert spool.folder.is_dir() and len(spool.calls()) == 5
    assert _steps(client, tracker.run_id) == [0]  # nothing reached the store meanwhile
    outage.down = False
    tracker.log_metrics({"ks": 0.1}, 40)  # the server answers: the spool goes first, then this
    tracker.finish("FINISHED")
    run = client.get_run(tracker.run_id)
    assert _steps(client, tracker.run_id) == [0, 10, 20, 30, 40]  # every step, once
    assert run.info.status == "FINISHED" and run.data.tags["note"] == "written while offline"
    assert [a.path for a in client.list_artifacts(tracker.run_id, "plots")] == ["plots/frame.png"]
    assert not spool.folder.exists()


def test_a_run_ending_during_the_outage_names_its_spool_and_the_command_sends_it(offline_tracker, tmp_path,
                                                                                   capsys):
    tracker, outage, client = offline_tracker
    outage.down = True
    for step in (0, 10):
        tracker.log_metrics({"ks": 0.3}, step)
    with pytest.raises(TrackingSpooled) as err:
        tracker.finish("FINISHED")
    message = str(err.value)
    folder = tmp_path / "mlruns" / "spool" / tracker.run_id
    assert "\n" not in message and str(folder) in message and "python -m ganlab.tracking_spool" in message
    assert f"run {tracker.run_id} ended FINISHED" in message
    assert client.get_run(tracker.run_id).info.status == "RUNNING"

    assert tracking_spool.main([]) == 1  # still down: kept, one line
    assert "still unreachable" in capsys.readouterr().err and folder.is_dir()
    outage.down = False
    assert tracking_spool.main([]) == 0
    assert f"run {tracker.run_id}: sent 3 calls" in capsys.readouterr().out
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and _steps(client, tracker.run_id) == [0, 10]
    assert not folder.exists()
    assert tracking_spool.main([]) == 0  # nothing left: sends nothing twice


def test_an_interrupted_send_resumes_where_it_stopped(offline_tracker, tmp_path, monkeypatch):
    tracker, outage, client = offline_tracker
    outage.down = True
    for step in (0, 10, 20):
        tracker.log_metrics({"ks": 0.3}, step)
    spool = Spool(tmp_path / "mlruns" / "spool" / tracker.run_id)
    sent = []
    real = tracking_spool._SENDERS["log_batch"]

    def dies_on_the_third(client, run_id, spool, call):
        if len(sent) == 2:
            raise requests.exceptions.ConnectionError("Max retries exceeded")
        sent.append(call)
        real(client, run_id, spool, call)

    monkeypatch.setitem(tracking_spool._SENDERS, "log_batch", dies_on_the_third)
    outage.down = False
    with pytest.raises(requests.exceptions.ConnectionError):
        spool.send(client)
    monkeypatch.setitem(tracking_spool._SENDERS, "log_batch", real)
    assert spool.send(client) == 1
    assert _steps(client, tracker.run_id) == [0, 10, 20]


@pytest.mark.slow
def test_the_generator_model_and_registration_wait_in_the_spool(offline_tracker):
    import torch

    tracker, outage, client = offline_tracker
    cfg = compose_config(["train.iterations=10"])
    generator = torch.nn.Sequential(torch.nn.Linear(1, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    outage.down = True
    tracker.log_generator(generator, torch.zeros(8, 1), cfg)
    assert tracker.register_generator("spooled-gen") is None
    outage.down = False
    tracker.finish("FINISHED")
    (version,) = client.search_model_versions("name = 'spooled-gen'")
    assert int(version.version) == 1 and version.run_id == tracker.run_id
    assert client.get_run(tracker.run_id).data.tags.get("generator_model")


@pytest.mark.parametrize(("exc", "unreachable"), [
    (requests.exceptions.ConnectionError("Max retries exceeded with url: /api"), True),
    (ConnectionRefusedError(111, "Connection refused"), True),
    # the server killed while it sent an answer (seen on CI in a population sweep's outage test)
    (requests.exceptions.ChunkedEncodingError("('Connection broken: IncompleteRead(0 bytes read, 6528 more "
                                              "expected)', IncompleteRead(0 bytes read))"), True),
    (ConnectionResetError(104, "Connection reset by peer"), True),
    (ValueError("RESOURCE_DOES_NOT_EXIST: run 'x' not found"), False),
    (OSError(28, "No space left on device"), False),
])
def test_only_an_unreachable_server_is_spooled(exc, unreachable):
    assert is_unreachable(exc) is unreachable


def test_a_local_store_error_is_not_spooled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = mlflow_store(tmp_path / "m.db")
    tracker = Tracker(compose_config(["train.iterations=10", f"tracking.uri={uri}"]), heartbeat=False)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    tracker.client.log_batch = full
    with pytest.raises(OSError, match="No space"):
        tracker.log_metrics({"ks": 0.1}, 0)
    assert not (tmp_path / "mlruns" / "spool").exists()
