"""Tracking and storage URIs: checked and resolved here, without loading MLflow.

MLflow 3 refuses a plain folder as a store, so every URI must name a database or a server; with
none given, runs go to a SQLite store at ``mlruns/mlflow.db`` with artifacts under ``mlruns/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from ganlab.errors import require

DEFAULT_STORE = Path("mlruns")
TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def check_tracking_uri(uri: str, key: str = "tracking.uri") -> None:
    """MLflow 3 needs a database or server URI; a plain folder path is refused here, not mid-run."""
    scheme = urlparse(uri).scheme.split("+")[0]
    require(scheme in TRACKING_SCHEMES, key, uri,
            "use a database or server URI such as sqlite:///mlruns/mlflow.db or http://127.0.0.1:5000")
    if scheme == "sqlite":
        require(uri.startswith("sqlite:///") and len(uri) > len("sqlite:///"), key, uri,
                "a SQLite URI looks like sqlite:///relative/path.db or sqlite:////absolute/path.db")
    if scheme in ("http", "https"):
        require(bool(urlparse(uri).netloc), key, uri, "an http URI needs a host, e.g. http://127.0.0.1:5000")



def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri`` if given (tracking.uri), else $MLFLOW_TRACKING_URI, else the local SQLite store."""
    if uri:
        return uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        check_tracking_uri(env, key="MLFLOW_TRACKING_URI")
        return env
    DEFAULT_STORE.mkdir(exist_ok=True)
    return f"sqlite:///{(DEFAULT_STORE / 'mlflow.db').resolve()}"
