"""Shared fixtures: every test that trains logs to its own temporary MLflow store, and tests that need
a real `mlflow server` / `mlflow ui` start one on a free local port."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning  # noqa: F401 -- imported before configure_runtime, which quiets its logger

from ganlab.runtime import configure_runtime

configure_runtime()  # what every entry point does: quiet library loggers, headless matplotlib

if "PYTEST_XDIST_WORKER" in os.environ:
    # `make test` runs two pytest workers on two cores: one torch/OpenMP thread each (inherited by
    # the subprocesses the tests start), or the two would fight over both cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items) -> None:
    """The slow tests first (stable otherwise). `--dist worksteal` hands out the collected order in
    two halves and steals from the ends of the queues, so the suite ends on short tests and neither
    worker idles through the last minute or so while the other finishes a server or kill/resume test."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


_TEMPLATE_DIR: list[Path] = []  # set once per test process by _store_template_dir


@pytest.fixture(autouse=True)
def _signal_handling_is_left_as_found() -> Iterator[None]:
    """Code that trains in-process must give SIGINT/SIGTERM, the blocked-signal mask and ganlab's stop
    state back as it found them: a leak would make a later Ctrl-C in the same process do nothing."""
    import signal

    from ganlab import signals

    def state() -> dict:
        return {"SIGINT": signal.getsignal(signal.SIGINT), "SIGTERM": signal.getsignal(signal.SIGTERM),
                "blocked": signal.pthread_sigmask(signal.SIG_BLOCK, []),
                "deferred": signals._deferred, "owned": signals._owned, "pending": signals._pending}

    before = state()
    yield
    after = state()
    assert after == before, f"signal handling changed by this test: {before} -> {after}"


@pytest.fixture(autouse=True, scope="session")
def _store_template_dir(tmp_path_factory) -> None:
    _TEMPLATE_DIR.append(tmp_path_factory.mktemp("store_template"))


def mlflow_store(db: Path) -> str:
    """The URI of a ready MLflow SQLite store at ``db`` (kept if it exists): a copy of an empty store
    made once per test process. Creating a store runs MLflow's schema migrations, 1.5-3 s of CPU
    (measured) that nearly every test would pay again; the tests of store creation itself use a bare path."""
    template = _TEMPLATE_DIR[0] / "mlflow.db"
    if not template.exists():
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = SqlAlchemyStore(f"sqlite:///{template}", str(template.parent / "artifacts"))
        store.engine.dispose()
    db.parent.mkdir(parents=True, exist_ok=True)
    if not db.exists():
        shutil.copyfile(template, db)
    return f"sqlite:///{db}"


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    uri = mlflow_store(tmp_path / "mlruns" / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow(cwd: Path, command: str, *args: str, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """Run the MLflow CLI (``server`` or ``ui``) on 127.0.0.1 and ``port`` (default: a free one); wait
    for /health. Returns the process (its own session: stop it with ``stop_mlflow``) and its base URL."""
    port = port or free_port()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), command, *args,
                             "--host", "127.0.0.1", "--port", str(port)],
                            cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{base}/health", timeout=1)
            return proc, base
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_mlflow(proc)
                raise RuntimeError(f"mlflow {command} did not come up on {base}") from None
            time.sleep(0.5)


def stop_mlflow(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
    proc.wait(timeout=30)


@pytest.fixture
def mlflow_service(tmp_path) -> Iterator[Callable[..., str]]:
    """``start("server" | "ui", *args)`` runs the MLflow CLI on 127.0.0.1 and a free port, waits for
    /health and returns its base URL; every process started is stopped at teardown."""
    procs: list[subprocess.Popen] = []

    def start(command: str, *args: str) -> str:
        proc, base = start_mlflow(tmp_path, command, *args)
        procs.append(proc)
        return base

    yield start
    for proc in procs:
        stop_mlflow(proc)


@pytest.fixture(autouse=True, scope="session")
def _classifier_cache(tmp_path_factory) -> Iterator[None]:
    """The image metric's feature classifiers are cached per test session, never in the user's cache."""
    old = os.environ.get("GANLAB_CACHE")
    os.environ["GANLAB_CACHE"] = str(tmp_path_factory.mktemp("ganlab_cache"))
    yield
    if old is None:
        del os.environ["GANLAB_CACHE"]
    else:
        os.environ["GANLAB_CACHE"] = old


def write_idx(path: Path, array: np.ndarray, gzipped: bool = False) -> Path:
    """An IDX file as MNIST stores it: zero bytes, dtype 0x08 (ubyte), ndim, big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if gzipped else payload)
    return path


def fake_images(n: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images whose brightness depends on their class, so a classifier has something to learn."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.integers(0, 60, (n, *shape)) + (labels * 19).reshape(-1, *[1] * len(shape))
    return images.astype(np.uint8), labels.astype(np.uint8)


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory) -> Path:
    """A small MNIST in the real IDX format (gzipped): 200 training and 50 test 28x28 images."""
    root = tmp_path_factory.mktemp("mnist")
    for split, n, seed in (("train", 200, 0), ("t10k", 50, 1)):
        images, labels = fake_images(n, (28, 28), seed)
        write_idx(root / f"{split}-images-idx3-ubyte.gz", images, gzipped=True)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels, gzipped=True)
    return root


def write_cifar_batch(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """A CIFAR-10 python batch: a pickled dict with bytes keys, rows of 1024 R, 1024 G, 1024 B."""
    with open(path, "wb") as handle:
        pickle.dump({b"data": images.reshape(len(images), -1), b"labels": [int(v) for v in labels]}, handle,
                    protocol=2)
    return path


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory) -> Path:
    """A small CIFAR-10 in the real python-batch format: 5 x 40 training and 50 test 3x32x32 images."""
    root = tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py"
    root.mkdir()
    for k in range(1, 6):
        write_cifar_batch(root / f"data_batch_{k}", *fake_images(40, (3, 32, 32), k))
    write_cifar_batch(root / "test_batch", *fake_images(50, (3, 32, 32), 9))
    return root.parent
