"""`python -m ganlab.stale_runs [tracking.uri=<uri>]`: close every run left RUNNING by a dead process.

A run whose process was killed (kill -9, a lost machine) cannot end itself and stays RUNNING in
MLflow. This marks each such run KILLED, with the reason in its ``failure_reason`` tag (see
``ganlab.run_heartbeat`` for how a dead run is told from a live one); live runs are left alone.
"""

from __future__ import annotations

import sys

from ganlab.errors import GanlabError


def close_stale_runs(tracking_uri: str) -> list[tuple[str, str]]:
    """(run id, reason) for every RUNNING run of the store that was closed as dead."""
    from mlflow.tracking import MlflowClient

    from ganlab.run_heartbeat import close_if_dead
    from ganlab.stored_runs import require_store

    require_store(tracking_uri)  # no store, no runs: MLflow would create an empty one to find none
    client = MlflowClient(tracking_uri)
    closed = []
    experiments = [e.experiment_id for e in client.search_experiments()]
    for run in client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=50000):
        reason = close_if_dead(client, run)
        if reason:
            closed.append((run.info.run_id, reason))
    return closed


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    from ganlab.config.uris import check_tracking_uri, resolve_tracking_uri
    from ganlab.runtime import configure_runtime

    configure_runtime()
    try:
        uri = None
        for arg in args:
            key, _, value = arg.partition("=")
            if key != "tracking.uri" or not value:
                raise GanlabError(f"{arg!r} is not allowed; the only argument is tracking.uri=<uri>")
            check_tracking_uri(value)
            uri = value
        uri = resolve_tracking_uri(uri, for_reading=True)
        from ganlab.stored_runs import store_exists

        if not store_exists(uri):
            print(f"ganlab.stale_runs: no tracking store at {uri} yet, so no run to close")
            return 0  # housekeeping in a fresh folder is not an error
        closed = close_stale_runs(uri)
    except GanlabError as exc:
        print(f"ganlab.stale_runs: error: {exc}", file=sys.stderr)
        return 2
    for run_id, reason in closed:
        print(f"ganlab.stale_runs: run {run_id} marked KILLED: {reason}")
    print(f"ganlab.stale_runs: {len(closed)} run(s) closed in {uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
