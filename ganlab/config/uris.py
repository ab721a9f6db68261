"""Tracking and storage URIs: checked and resolved here, without loading MLflow.

MLflow 3 refuses a plain folder as a store, so every URI must name a database or a server; with
none given, runs go to a SQLite store at ``mlruns/mlflow.db`` with artifacts under ``mlruns/``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from ganlab.errors import ConfigError, require

DEFAULT_STORE = Path("mlruns")
TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def check_tracking_uri(uri: str, key: str = "tracking.uri") -> None:
    """MLflow 3 needs a database or server URI; a plain folder path is refused here, not mid-run."""
    scheme = urlparse(uri).scheme.split("+")[0]
    require(scheme in TRACKING_SCHEMES, key, uri,
            "use a database or server URI such as sqlite:///mlruns/mlflow.db or http://127.0.0.1:5000")
    if scheme == "sqlite":
        _require_sqlite_path(uri, key)
    if scheme in ("http", "https"):
        require(bool(urlparse(uri).netloc), key, uri, "an http URI needs a host, e.g. http://127.0.0.1:5000")


STORAGE_SCHEMES = ("sqlite", "postgresql", "mysql")  # Optuna's RDB storage: a database, never a server


def check_storage_uri(uri: str) -> None:
    """A sweep's Optuna storage is a database URL (SQLAlchemy's); an MLflow server is not one."""
    scheme = urlparse(uri).scheme.split("+")[0]
    require(scheme in STORAGE_SCHEMES, "storage", uri,
            "use a database URL such as sqlite:///mlruns/optuna.db or postgresql://user@host/db")
    if scheme == "sqlite":
        _require_sqlite_path(uri, "storage")


def _require_sqlite_path(uri: str, key: str) -> None:
    require(uri.startswith("sqlite:///") and len(uri) > len("sqlite:///"), key, uri,
            "a SQLite URI looks like sqlite:///relative/path.db or sqlite:////absolute/path.db")


REACH_TIMEOUT_S = 20  # an unreachable server is reported within this, not after MLflow's minutes of retries
_reached: set[str] = set()


def probe_health(uri: str, timeout_s: float) -> str | None:
    """Ask an http(s) server's /health once: None if it answered (any HTTP status: a proxy or an older
    server without /health), else why not."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s):
            return None
    except urllib.error.HTTPError:
        return None
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306}  # the servers' defaults, when a URI names no port


def probe_database(uri: str, timeout_s: float) -> str | None:
    """Open a TCP connection to a database server's host and port once: None if it accepts, else why
    not (MLflow's own connection retries took 3.5 minutes to say so)."""
    import socket

    parsed = urlparse(uri)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or DATABASE_PORTS[parsed.scheme.split("+")[0]]),
                                      timeout=timeout_s):
            return None
    except OSError as exc:
        return str(exc) or type(exc).__name__


def _over_tcp(uri: str) -> bool:
    """Whether a database URI is reached over TCP (else through a local socket, which is not probed): a
    host, and no socket named in its query (libpq's ``host=/path``, MySQL's ``unix_socket``); MySQL's
    client also takes ``localhost`` as its socket."""
    parsed = urlparse(uri)
    query = parse_qs(parsed.query)
    if not parsed.hostname or any(h.startswith("/") for h in query.get("host", [])) or "unix_socket" in query:
        return False
    return not (parsed.scheme.startswith("mysql") and parsed.hostname == "localhost")


def shown_uri(uri: str) -> str:
    """A URI as an error message may show it: any password replaced by ***."""
    parsed = urlparse(uri)
    if parsed.password is None:
        return uri
    return parsed._replace(netloc=parsed.netloc.replace(f":{parsed.password}@", ":***@", 1)).geturl()


def check_reachable(uri: str, key: str = "tracking.uri", timeout_s: float | None = None) -> None:
    """An http(s) tracking server must answer its /health endpoint, and a database server (postgresql,
    mysql) accept a connection, within ``timeout_s`` (default 20 s, or $GANLAB_REACH_TIMEOUT_S; retried
    every 2 s); checked once per process. Unreachable is a one-line ConfigError, never 'no such run'."""
    scheme = urlparse(uri).scheme.split("+")[0]
    if uri in _reached or not (scheme in ("http", "https") or (scheme in DATABASE_PORTS and _over_tcp(uri))):
        return  # SQLite, or a database on a local socket: nothing to reach
    try:
        urlparse(uri).port  # noqa: B018 -- a port that is not a number: no retry makes it one
    except ValueError as exc:
        raise ConfigError(f"{key}={shown_uri(uri)}: {exc}") from None
    if timeout_s is None:
        timeout_s = float(os.environ.get("GANLAB_REACH_TIMEOUT_S", REACH_TIMEOUT_S))
    probe = probe_database if scheme in DATABASE_PORTS else probe_health

    deadline = time.monotonic() + timeout_s
    while True:
        reason = probe(uri, min(5.0, timeout_s))
        if reason is None:
            _reached.add(uri)
            return
        if time.monotonic() + 2 > deadline:
            break
        time.sleep(2)
    what = "database server" if scheme in DATABASE_PORTS else "tracking server"
    raise ConfigError(f"{key}={shown_uri(uri)}: the {what} is unreachable ({reason}) after {timeout_s:.0f} s; "
                      + ("start it or point it at another store" if scheme in DATABASE_PORTS
                         else "start it (make server) or point it at another store"))


def resolve_tracking_uri(uri: str | None = None, for_reading: bool = False) -> str:
    """``uri`` if given (tracking.uri), else $MLFLOW_TRACKING_URI, else the local SQLite store; a server
    that does not answer is a one-line error here (see :func:`check_reachable`). ``for_reading``: the
    caller only reads runs, so the local store's folder is not created (sampling in an empty folder
    left an empty ``mlruns/`` behind)."""
    if uri:
        check_reachable(uri)
        return uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        check_tracking_uri(env, key="MLFLOW_TRACKING_URI")
        check_reachable(env, key="MLFLOW_TRACKING_URI")
        return env
    if not for_reading:
        DEFAULT_STORE.mkdir(exist_ok=True)
    return local_store_uri()


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (MLflow store or Optuna storage), None for any other."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def local_store_uri() -> str:
    """The local SQLite store under ./mlruns (what runs use when no URI is given)."""
    return f"sqlite:///{(DEFAULT_STORE / 'mlflow.db').resolve()}"


def browse_hint(uri: str) -> str:
    """How to look at a store's runs: `make ui` serves the repository's own mlruns/ only; any other
    SQLite store needs its own `mlflow ui`, a server its address."""
    if uri.startswith(("http://", "https://")):
        return "(its web UI: open that address)"
    db = sqlite_file(uri)
    repo_store = Path(__file__).resolve().parents[2] / DEFAULT_STORE / "mlflow.db"
    if db is not None and db.resolve() == repo_store.resolve():
        return "(browse with `make ui`)"
    return f"(browse with: mlflow ui --backend-store-uri {uri})"
