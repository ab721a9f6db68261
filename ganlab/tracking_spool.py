"""A run's tracking calls kept on local disk while its tracking server is unreachable, sent when it
answers again; ``python -m ganlab.tracking_spool`` sends what is left after the run ended.

MLflow retries each HTTP call a few seconds (``configure_runtime`` bounds its retries); calls wait in
memory meanwhile (the tracking process's queue). When a call still fails because the server cannot
be reached, the run's tracker goes offline: that call and every later one (metrics, tags, files,
the generator Model, the run's end) are appended in order to a spool folder,
``mlruns/spool/<run_id>/`` beside the working directory's local store, files copied in. Every
``PROBE_EVERY_S`` seconds the tracker asks the server's ``/health``; when it answers, the spool is
sent in order and the tracker goes back online. Metrics keep the time they were measured.

Sending records its progress after each call (``sent``), so a send that is interrupted and run again
sends nothing twice; a spool fully sent is deleted.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ganlab.cli_parser import OneLineParser
from ganlab.config.uris import probe_health
from ganlab.errors import GanlabError

SPOOL_DIR = Path("mlruns") / "spool"
PROBE_EVERY_S = 10.0


class TrackingSpooled(GanlabError):
    """The run ended while its server was unreachable: its last calls and its end are in a spool."""


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (from an MLflow client call) means the server could not be reached, or went away
    while it answered (killed mid-response: a broken chunked read), as opposed to a refusal (bad
    request, missing run) that a retry would not change."""
    seen: BaseException | None = exc
    while seen is not None:
        name = type(seen).__name__
        if name in ("ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout", "MaxRetryError",
                    "NewConnectionError", "ConnectionRefusedError", "RemoteDisconnected",
                    "ChunkedEncodingError", "ProtocolError", "IncompleteRead", "ConnectionResetError"):
            return True
        text = str(seen)
        if "Max retries exceeded" in text or "Connection refused" in text or "Failed to establish" in text \
                or "Connection broken" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def server_answers(uri: str, timeout_s: float = 2.0) -> bool:
    return probe_health(uri, timeout_s) is None


class Spool:
    """One run's spooled calls: ``calls.jsonl`` (one call a line, in order), ``files/`` and ``run.json``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files = folder / "files"

    @classmethod
    def create(cls, run_id: str, uri: str, root: Path = SPOOL_DIR) -> Spool:
        spool = cls(root.resolve() / run_id)
        spool.files.mkdir(parents=True, exist_ok=True)
        meta = spool.folder / "run.json"
        if not meta.exists():
            meta.write_text(json.dumps({"run_id": run_id, "uri": uri}))
        return spool

    @property
    def run_id(self) -> str:
        return self.meta()["run_id"]

    def meta(self) -> dict[str, str]:
        return json.loads((self.folder / "run.json").read_text())

    def append(self, call: str, **args: Any) -> None:
        with open(self.folder / "calls.jsonl", "a") as out:
            out.write(json.dumps({"call": call, **args}) + "\n")
            out.flush()

    def keep_file(self, local_path: str | Path) -> str:
        """A copy of a file (which may be temporary) in the spool; its name there."""
        name = f"{len(list(self.files.iterdir())):05d}-{Path(local_path).name}"
        shutil.copyfile(local_path, self.files / name)
        return name

    def calls(self) -> list[dict[str, Any]]:
        path = self.folder / "calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def _sent(self) -> int:
        path = self.folder / "sent"
        return int(path.read_text()) if path.exists() else 0

    def send(self, client) -> int:
        """Send every call not sent yet, in order, with ``client``; delete the spool; return how many."""
        calls, done = self.calls(), self._sent()
        run_id = self.run_id
        for n, call in enumerate(calls[done:], start=done + 1):
            _SENDERS[call["call"]](client, run_id, self, call)
            tmp = self.folder / "sent.tmp"
            tmp.write_text(str(n))
            tmp.replace(self.folder / "sent")
        shutil.rmtree(self.folder)
        return len(calls) - done

    def describe(self) -> str:
        calls = self.calls()[self._sent():]
        kinds: dict[str, int] = {}
        for call in calls:
            kinds[call["call"]] = kinds.get(call["call"], 0) + 1
        return ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())) or "nothing"


def _log_batch(client, run_id: str, spool: Spool, call: dict) -> None:
    from mlflow.entities import Metric, RunTag

    client.log_batch(run_id, metrics=[Metric(k, v, ts, step) for k, v, ts, step in call.get("metrics", [])],
                     tags=[RunTag(k, v) for k, v in call.get("tags", [])])


def _log_artifact(client, run_id: str, spool: Spool, call: dict) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:  # the artifact keeps its own name, not the spool's
        named = Path(tmp) / call["name"]
        shutil.copyfile(spool.files / call["file"], named)
        client.log_artifact(run_id, str(named), call.get("artifact_path"))


def _set_terminated(client, run_id: str, spool: Spool, call: dict) -> None:
    client.set_terminated(run_id, status=call["status"], end_time=call.get("end_time"))


def _log_generator(client, run_id: str, spool: Spool, call: dict) -> None:
    import torch
    from omegaconf import OmegaConf

    from ganlab.generator_model import log_generator_model

    saved = torch.load(spool.files / call["file"], weights_only=False)  # written by this package, above
    log_generator_model(client, run_id, saved["generator"], saved["example"], OmegaConf.create(saved["cfg"]))


def _register_generator(client, run_id: str, spool: Spool, call: dict) -> None:
    from ganlab.generator_model import register_generator

    register_generator(client, run_id, call["name"])


_SENDERS = {"log_batch": _log_batch, "log_artifact": _log_artifact, "set_terminated": _set_terminated,
            "log_generator": _log_generator, "register_generator": _register_generator}


def pending(root: Path = SPOOL_DIR) -> list[Spool]:
    return [Spool(p) for p in sorted(root.glob("*")) if (p / "run.json").exists()]


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="python -m ganlab.tracking_spool", command="ganlab spool",
        description="Send the tracking calls that runs spooled while their MLflow server was unreachable "
                    f"(default: every run under {SPOOL_DIR}/), then delete them.")
    parser.add_argument("folders", nargs="*", type=Path, help="spool folders (default: all)")
    parser.add_argument("--uri", help="the tracking server, if it moved (default: the one each run was using)")
    args = parser.parse_args(argv)
    spools = [Spool(f) for f in args.folders] if args.folders else pending()
    missing = [s.folder for s in spools if not (s.folder / "run.json").exists()]
    if missing:
        print(f"ganlab spool: error: {missing[0]} is not a spool folder (no run.json)", file=sys.stderr)
        return 2
    if not spools:
        print(f"ganlab spool: nothing to send (no spool under {SPOOL_DIR.resolve()})")
        return 0
    from ganlab.runtime import configure_runtime

    configure_runtime()
    import mlflow
    from mlflow.tracking import MlflowClient

    failed = 0
    for spool in spools:
        meta, what = spool.meta(), spool.describe()
        uri, run_id = args.uri or meta["uri"], meta["run_id"]
        if not server_answers(uri, timeout_s=5.0):
            print(f"ganlab spool: run {run_id}: the tracking server {uri} is still unreachable; "
                  f"kept in {spool.folder}", file=sys.stderr)
            failed += 1
            continue
        try:
            start = time.perf_counter()
            mlflow.set_tracking_uri(uri)  # the generator Model is logged through MLflow's fluent API
            sent = spool.send(MlflowClient(uri))
        except Exception as exc:  # noqa: BLE001 -- one line per run; what was sent stays sent
            print(f"ganlab spool: run {run_id}: sending failed ({type(exc).__name__}: "
                  f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); the rest is kept in "
                  f"{spool.folder}", file=sys.stderr)
            failed += 1
            continue
        print(f"ganlab spool: run {run_id}: sent {sent} calls ({what}) to {uri} in "
              f"{time.perf_counter() - start:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
