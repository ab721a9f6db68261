"""`python -m ganlab.sweep [SWEEP] [KEY=VALUE ...] [--workers N | --population K] [--trials N]`: an Optuna study.

SWEEP names a file in ``sweeps/`` (default: ``default``) or is a path to one; config overrides after it
(``data=ring8 train.iterations=2000``) are fixed for every trial and make a study of their own. Several worker
processes share one study in an RDB storage (SQLite by default, PostgreSQL to scale out); running
the same command again resumes the study. Every trial is an MLflow child run of one parent run.
With --population K, one process trains K trials at a time as a population (refilled from the study
as trials end; checkpointed, so the same command continues it after a kill).
This module parses the command line; ``ganlab.sweeping.driver`` runs the workers,
``ganlab.sweeping.population_driver`` the population.
"""

from __future__ import annotations

import argparse
import os
import sys

from ganlab.cli_parser import OneLineParser
from ganlab.errors import ConfigError, GanlabError


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m ganlab.sweep", description=__doc__, command="ganlab sweep",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", nargs="?", default="default", help="a name in sweeps/ or a path to a .yaml file")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides for every trial, e.g. data=ring8 (a study of its own: its name "
                             "carries them)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes sharing the study (default 2)")
    parser.add_argument("--trials", type=int, help="total trials of the study (default: the file's)")
    parser.add_argument("--storage", help="Optuna storage URL (default: the file's, else sqlite:///mlruns/optuna.db)")
    parser.add_argument("--population", type=int, metavar="K",
                        help="train K trials at a time in one process (vectorised); sweeps it cannot train fall "
                             "back to --workers with a one-line notice")
    parser.add_argument("--threads", type=int, help="torch threads per worker (default 1); with --population, "
                        "cohort worker processes on CPU (default: every core this process may use)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI, e.g. http://127.0.0.1:5000 from `make server` "
                        "(default: $MLFLOW_TRACKING_URI, else the local store mlruns/mlflow.db)")
    parser.add_argument("--stale-after", type=int, default=30, metavar="SECONDS",
                        help="a trial whose worker sent no heartbeat for this long is failed and retried (default 30)")
    return parser


def _is_override(word: str) -> bool:
    """A config override, not a sweep: a sweep file's path may hold an '=' too (sweeps/lr=1.yaml)."""
    from ganlab.sweeping.definition import available

    if word in available() or (word.endswith((".yaml", ".yml")) and os.path.exists(word)):
        return False
    return "=" in word or word.startswith(("~", "+"))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_intermixed_args(argv)
    if _is_override(args.sweep):  # `ganlab.sweep data=ring8`: overrides of the default sweep
        args.overrides, args.sweep = [args.sweep, *args.overrides], "default"
    try:
        threads_given = args.threads is not None
        cores = len(os.sched_getaffinity(0))
        if not threads_given:
            args.threads = cores if args.population else 1
        if args.workers < 1:
            raise ConfigError(f"--workers={args.workers} must be >= 1")
        if args.threads < 1:
            raise ConfigError(f"--threads={args.threads} must be >= 1")
        if args.population and args.threads > cores:  # one cohort worker process per thread: more only contend
            raise ConfigError(f"--threads={args.threads} with --population must be at most {cores}, "
                              "the cores this process may use")
        from ganlab.config.uris import check_storage_uri, check_tracking_uri, resolve_tracking_uri
        from ganlab.sweeping.definition import load
        from ganlab.sweeping.driver import run_sweep
        from ganlab.sweeping.study import storage_url

        sweep = load(args.sweep, trials=args.trials, storage=args.storage, overrides=args.overrides)
        for notice in sweep.notices:
            print(f"ganlab sweep: {notice}", flush=True)
        from ganlab.training.accelerators import require_available

        require_available(sweep.accelerator)  # one line now, not a failed trial per worker later
        url = storage_url(sweep)
        check_storage_uri(url)
        if args.stale_after < 1:
            raise ConfigError(f"--stale-after={args.stale_after} must be >= 1 second")
        if args.tracking_uri:
            check_tracking_uri(args.tracking_uri, key="--tracking-uri")
        tracking_uri = resolve_tracking_uri(args.tracking_uri)
        if args.population is not None:
            from ganlab.sweeping.population_driver import population_unsupported, run_population_sweep

            reason = population_unsupported(sweep)
            if reason is None:
                return run_population_sweep(sweep, url, tracking_uri, args.population, args.threads,
                                            args.stale_after)
            args.threads = args.threads if threads_given else 1
            print(f"ganlab sweep: not trained as a population ({reason}); running its trials one process each "
                  f"with {args.workers} worker(s)", flush=True)
        return run_sweep(sweep, url, tracking_uri, args.workers, args.threads, args.stale_after)
    except GanlabError as exc:
        print(f"ganlab sweep: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # while loading, or opening the study (the drivers handle it from then on)
        print("ganlab sweep: interrupted before the sweep started; run the same command again to start it",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
