"""The sweep driver: opens (or resumes) the study and its MLflow parent run, starts the worker
processes that share the study, and prints the summary. ``python -m ganlab.sweep`` calls it."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import warnings


def _exit_with_parent(parent_pid: int) -> None:
    """A worker whose driver was killed stops too (its trial is failed later by the heartbeat check).
    Its parent is the forkserver, which lives as long as any worker does: the driver itself is watched,
    and a zombie (killed, not yet reaped by whoever started it) counts as dead."""
    from ganlab.run_heartbeat import pid_alive

    def watch() -> None:
        while True:
            if not pid_alive(parent_pid):
                os._exit(1)
            time.sleep(1.0)

    threading.Thread(target=watch, daemon=True).start()


_stopping = False


def _stop_once(signum: int, frame) -> None:
    """A worker's SIGINT, SIGTERM and SIGUSR1: stop the trial (as Ctrl-C does). SIGUSR1 is the driver
    passing a stop on; once the worker stops, only a second SIGINT stops it at once (as in a terminal), so
    neither can cut short the clean-up that a signal to the whole process group started.
    Lightning adds its own SIGTERM handler during a fit and calls this one after it."""
    global _stopping
    if _stopping and signum != signal.SIGINT:  # after the group's SIGTERM comes the driver's SIGUSR1, or
        return  # before it: Python runs pending handlers by signal number
    _stopping = True
    raise KeyboardInterrupt


def _redelivering_lost_stops(previous_hook):
    """A worker's ``sys.unraisablehook``. A signal that lands while a finaliser runs (SQLAlchemy's weakref
    callbacks run at any allocation) raised ``_stop_once``'s KeyboardInterrupt where Python prints and
    drops it; the worker, already stopping, then ignored the driver's SIGUSR1 and trained on (seen in
    the process-group test, once). The stop is sent again, to be raised where it can land; any other
    unraisable error goes to ``previous_hook``."""

    def hook(unraisable) -> None:
        global _stopping
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and _stopping:
            _stopping = False  # sent from another thread, a moment later: sent from here, its handler ran
            resend = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR1))  # inside this hook, and
            resend.daemon = True  # its KeyboardInterrupt was dropped again
            resend.start()
            return
        previous_hook(unraisable)

    return hook


def _worker(index: int, ignored: tuple[int, ...], environ: dict[str, str], sweep, storage_url: str, tracking_uri: str,
            parent_run_id: str, parent_pid: int, threads: int, stale_after: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):  # the forkserver ignores them; the driver may (nohup)
        signal.signal(sig, signal.SIG_IGN if sig in ignored else signal.SIG_DFL)
    for sig in (signal.SIGINT, signal.SIGUSR1, *(() if signal.SIGTERM in ignored else (signal.SIGTERM,))):
        signal.signal(sig, _stop_once)  # SIGTERM too: a worker stopping after it must ignore the driver's SIGUSR1
    sys.unraisablehook = _redelivering_lost_stops(sys.unraisablehook)
    os.environ.clear()  # the driver's environment now (credentials, MLflow's settings), as a spawned child's;
    os.environ.update(environ)  # the forkserver's is the driver's when its first worker started (the folder follows)
    _exit_with_parent(parent_pid)
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    try:
        _train_trials(index, sweep, storage_url, parent_run_id, threads, stale_after)
    except KeyboardInterrupt:  # a stop before its first trial (the worker was starting) or a second Ctrl-C
        sys.exit(130)  # during its clean-up: quietly, as the driver reports the stop; it fails any trial left


def _train_trials(index: int, sweep, storage_url: str, parent_run_id: str, threads: int, stale_after: int) -> None:
    """A worker's life: trials from the shared study until the sweep has its number, or a stop."""
    import optuna
    import torch

    from ganlab.errors import ConfigError
    from ganlab.runtime import configure_runtime
    from ganlab.sweeping.study import open_study, quiet_optuna
    from ganlab.sweeping.summary import short_reason, trial_line
    from ganlab.sweeping.trial import TrialObjective
    from ganlab.sweeping.worker_faults import StopWhenDone, retry_interrupted, to_run
    from ganlab.training.runner import TrainingFailed

    configure_runtime()
    torch.set_num_threads(threads)
    quiet_optuna()
    seeded = dict(sweep.sampler)
    seeded["seed"] = int(seeded.get("seed", 0)) + index  # distinct seeds: workers must not suggest alike
    sweep.sampler = seeded
    study = open_study(sweep, storage_url, stale_after)
    if to_run(study, sweep.trials) == 0:
        return
    objective = TrialObjective(sweep, parent_run_id)

    def progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        value = (" ".join(f"{v:.4g}" for v in trial.values) if trial.values else
                 short_reason(trial.user_attrs.get("failure_reason", "")))
        print(trial_line(study, sweep, trial, value), flush=True)

    try:
        study.optimize(objective, catch=(TrainingFailed, ConfigError), gc_after_trial=True,
                       callbacks=[StopWhenDone(sweep.trials), progress])
    except KeyboardInterrupt:  # Ctrl-C reaches every worker: the driver reports it, once
        retry_interrupted(study)  # Optuna failed the trial it stopped: the next invocation runs it again
        sys.exit(130)
    except Exception as exc:  # the study cannot be written (a full disk, a dead server): one line, not a traceback
        from ganlab.errors import environment_fault, one_line
        from ganlab.sweeping.worker_faults import EXIT_ENVIRONMENT

        machine = environment_fault(exc)
        if machine:
            with contextlib.suppress(Exception):  # Optuna failed the trial the fault stopped: queue it again
                retry_interrupted(study, machine_fault=one_line(exc))
        if os.environ.get("GANLAB_DEBUG"):
            raise
        print(f"ganlab sweep: worker {index} stopped: {one_line(exc)}", file=sys.stderr, flush=True)
        sys.exit(EXIT_ENVIRONMENT if machine else 1)  # either way the driver queues a trial left RUNNING


def run_sweep(sweep, storage_url: str, tracking_uri: str, workers: int, threads: int = 1,
              stale_after: int = 30) -> int:
    """Open (or resume) the study and its parent run, keep ``workers`` processes on it until every
    trial is done (replacing any that dies, whose trial is retried), summarise. Returns an exit code."""
    from ganlab.runtime import configure_runtime
    from ganlab.signals import Stopped, as_stop, deferred_to_boundaries, raise_pending_stop, stop_on_signals
    from ganlab.sweeping.sole_writer_storage import refuse_if_claimed
    from ganlab.sweeping.study import enqueue_grid, open_study, quiet_optuna
    from ganlab.sweeping.summary import close_orphaned_child_runs, finish_parent_run, open_parent_run
    from ganlab.sweeping.worker_faults import recover_dead_workers, to_run

    configure_runtime()
    quiet_optuna()
    study = open_study(sweep, storage_url, stale_after)
    refuse_if_claimed(study)  # a population sweep on it now would not see these workers' trials
    enqueue_grid(study, sweep)
    parent_run_id, pool, start = None, None, time.perf_counter()
    try:
        # from the parent run's creation on, a signal is raised here, at a check between steps, never inside
        # the study's, MLflow's or the pool's calls (within one, it could leave a lock held that the clean-up
        # below then waits on), and never with a parent run left RUNNING; a pass of the loop takes ~1 s
        with stop_on_signals(), deferred_to_boundaries("stopping the workers cleanly"):
            parent_run_id = open_parent_run(sweep, tracking_uri, storage_url)
            pool = _Pool(sweep, storage_url, tracking_uri, parent_run_id, threads, stale_after)
            remaining = _recover_and_announce(study, sweep, storage_url, tracking_uri, parent_run_id, workers,
                                              stale_after)
            start = time.perf_counter()
            raise_pending_stop()
            pool.fill(min(workers, remaining))
            unowned = _UnownedTrials(study, stale_after)
            while pool.procs or unowned.pending():
                raise_pending_stop()
                for dead in pool.reap():
                    failed = recover_dead_workers(study, {dead.tag}, {dead.tag: dead.exitcode})
                    close_orphaned_child_runs(study, tracking_uri, parent_run_id)
                    queued = [str(n) for n, retry in failed.items() if retry is not None]
                    dropped = [str(n) for n, retry in failed.items() if retry is None]
                    print(f"ganlab sweep: worker {dead.tag} died (exit code {dead.exitcode})"
                          + (f"; trial(s) {', '.join(queued)} failed and queued again" if queued else "")
                          + (f"; trial(s) {', '.join(dropped)} failed and not queued again (their workers died "
                             "twice)" if dropped else ""), flush=True)
                if pool.procs:
                    unowned.check(every_s=5.0)
                else:  # only a trial to wait for (the loop's pending() fails it when old): reap() did not wait
                    time.sleep(1.0)
                pool.fill(min(workers, to_run(study, sweep.trials)) - len(pool.procs))
    except (KeyboardInterrupt, Stopped) as exc:
        if pool is None:  # not raised before the parent run exists (see above); kept for safety
            raise
        pool.stop()
        stop = as_stop(exc)
        recover_dead_workers(study, stopped_by=stop.name)
        close_orphaned_child_runs(study, tracking_uri, parent_run_id)
        finish_parent_run(study, sweep, tracking_uri, parent_run_id, status="KILLED")
        print(f"ganlab sweep: stopped by {stop.name}; run the same command again to continue the study",
              file=sys.stderr)
        return stop.exit_code
    except Exception as exc:  # the study or MLflow refuses the driver's writes (a full disk, a dead server)
        if pool is None or os.environ.get("GANLAB_DEBUG"):  # no parent run yet: the CLI says it in one line
            raise
        return _driver_failed(exc, pool, study, sweep, tracking_uri, parent_run_id)
    unrun = to_run(study, sweep.trials)
    if unrun:  # every worker start was used up and trials are left: the sweep did not do its work
        return _workers_used_up(pool, unrun, study, sweep, time.perf_counter() - start, tracking_uri, parent_run_id)
    finish_parent_run(study, sweep, tracking_uri, parent_run_id)
    return print_results(study, sweep, time.perf_counter() - start, tracking_uri)


def _recover_and_announce(study, sweep, storage_url: str, tracking_uri: str, parent_run_id: str, workers: int,
                          stale_after: int) -> int:
    """Before the workers start: fail and queue again what dead workers left RUNNING, close their runs,
    and print the sweep's header. Returns how many trials are to run."""
    import optuna

    from ganlab.sweeping.summary import close_orphaned_child_runs
    from ganlab.sweeping.worker_faults import budget_used, population_trials_running, recover_dead_workers, to_run

    study.set_user_attr("mlflow_parent_run_id", parent_run_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # other machines' dead workers, after --stale-after seconds
    recover_dead_workers(study, untagged_after_s=max(stale_after, UNOWNED_FLOOR_S))  # this machine's, at once
    close_orphaned_child_runs(study, tracking_uri, parent_run_id)
    remaining = to_run(study, sweep.trials)
    left = population_trials_running(study)
    if left:
        print(f"ganlab sweep: trial(s) {', '.join(map(str, left))} stopped in a population sweep and stay RUNNING: "
              "only the same command with --population continues them (from its checkpoint)", flush=True)
    over_seeds = (f"; each trains {sweep.seeds} seeds together and reports their median "
                  f"{sweep.objective.metric}" if sweep.seeds > 1 else "")
    print(f"ganlab sweep '{sweep.name}': {sweep.trials} trials ({budget_used(study)} already in the study, "
          f"{remaining} to run) with {min(workers, remaining)} worker(s){over_seeds}\n  storage {storage_url}\n"
          f"  MLflow parent run {parent_run_id} in experiment '{sweep.experiment_name}' ({tracking_uri})", flush=True)
    return remaining


def _workers_used_up(pool, unrun: int, study, sweep, seconds: float, tracking_uri: str, parent_run_id: str) -> int:
    """Workers kept dying (a disk or store that fails only for them, a crash on start) until the pool's
    starts ran out: what was done is summarised, the parent run closed KILLED, and the exit code says
    the sweep is unfinished (it was 0 when a trial had completed, with trials still WAITING)."""
    from ganlab.sweeping.summary import close_stopped_parent_run
    from ganlab.sweeping.worker_faults import EXIT_ENVIRONMENT

    print_results(study, sweep, seconds, tracking_uri)
    parent = close_stopped_parent_run(study, sweep, tracking_uri, parent_run_id)
    machine = set(pool.exit_codes) == {EXIT_ENVIRONMENT}
    died = (f", {len(pool.exit_codes)} died (exit codes {', '.join(map(str, pool.exit_codes))})"
            + (": their disk or store failed" if machine else "") if pool.exit_codes else "")
    print(f"ganlab sweep: stopped: all {pool.started} worker starts are used up{died}; {unrun} trial(s) not "
          f"run{parent}; run the same command again to continue the study", file=sys.stderr)
    return EXIT_ENVIRONMENT if machine else 1


def _driver_failed(exc: Exception, pool, study, sweep, tracking_uri: str, parent_run_id: str) -> int:
    """Stop the workers (their trials are failed and queued again by the next run, whose workers are
    gone by then), close the parent run KILLED if the store lets us, and say what happened in one line."""
    from ganlab.errors import one_line
    from ganlab.sweeping.summary import close_stopped_parent_run

    pool.stop()
    parent = close_stopped_parent_run(study, sweep, tracking_uri, parent_run_id)
    print(f"ganlab sweep: stopped: {one_line(exc)}{parent}; run the same command again to continue the study",
          file=sys.stderr)
    return 1


UNOWNED_FLOOR_S = 10.0  # a live worker tags its trial once its sampler has drawn it: allow for a slow draw


class _UnownedTrials:
    """RUNNING trials no worker has tagged: a worker that died between asking and tagging (kill -9,
    a full disk) leaves one, with no heartbeat. Once older than ``--stale-after`` (at least
    ``UNOWNED_FLOOR_S``; a live worker, on any machine, tags within its sampler's draw) it is failed
    and queued again, in this invocation: the sweep waits for that rather than end with a trial
    RUNNING. A trial's age is the larger of its start stamp's (another machine's local clock) and the
    time since this driver first saw it, so a clock that disagrees cannot hold the sweep for long."""

    def __init__(self, study, stale_after: float) -> None:
        self.study, self.after_s = study, max(float(stale_after), UNOWNED_FLOOR_S)
        self.last = time.monotonic()
        self.first_seen: dict[int, float] = {}
        self.announced: set[int] = set()

    def _age(self, trial) -> float:
        from ganlab.sweeping.worker_faults import age_s

        now = time.monotonic()
        return max(age_s(trial), now - self.first_seen.setdefault(trial.number, now))

    def _fail_old(self) -> list[int]:
        from ganlab.sweeping.worker_faults import fail_unowned

        failed = list(fail_unowned(self.study, self.after_s, self._age))
        if failed:
            print(f"ganlab sweep: trial(s) {', '.join(map(str, failed))} failed (their worker died before "
                  "tagging them) and queued again", flush=True)
        return failed

    def pending(self) -> bool:
        """With no worker left: fail the old ones (their copies are to be run), and say whether any
        is left to wait for or was just queued again."""
        from ganlab.sweeping.worker_faults import unowned_trials

        failed = self._fail_old()
        young = [t.number for t in unowned_trials(self.study)]  # the rest: not yet old enough
        new = [str(n) for n in young if n not in self.announced]
        if new:
            print(f"ganlab sweep: trial(s) {', '.join(new)} were asked by a worker that has not tagged them "
                  f"(it died first, or runs elsewhere); failed and queued again once {self.after_s:g} s "
                  "old unless tagged", flush=True)
            self.announced.update(young)
        return bool(failed or young)

    def check(self, every_s: float) -> None:
        """While workers run: fail the old ones every ``every_s`` seconds."""
        if time.monotonic() - self.last < every_s:
            return
        self.last = time.monotonic()
        self._fail_old()


WORKER_PRELOAD = ["ganlab.sweeping.worker_preload"]  # torch, Lightning, MLflow, Optuna: ~7 s of CPU per import


def worker_context():
    """Workers are forked from a forkserver that imported the trainer once (a fresh process that has
    run nothing and started no threads, so forking it is safe, unlike forking this driver): each
    worker, replacements included, starts in a fraction of a second instead of importing for ~7 s of
    CPU. Where there is no forkserver (not POSIX), workers are spawned."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(WORKER_PRELOAD)
    return ctx


STOP_GRACE_S = 30.0  # for a worker to close its trial's run once stopped


class _Pool:
    """The sweep's worker processes: started, reaped when they end, replaced (a bounded number of
    times, so a worker that cannot start does not loop forever), stopped on a signal."""

    def __init__(self, sweep, storage_url: str, tracking_uri: str, parent_run_id: str, threads: int,
                 stale_after: int) -> None:
        self.args = (sweep, storage_url, tracking_uri, parent_run_id, os.getpid(), threads, stale_after)
        self.procs: list = []
        self.exit_codes: list[int] = []  # of the workers that died, in order
        self.started = 0
        self.max_starts: int | None = None
        self.ctx = worker_context()

    def fill(self, count: int) -> None:
        if self.max_starts is None:
            self.max_starts = 3 * max(count, 1)  # the first pool, then two replacements each
        for _ in range(max(count, 0)):
            if self.started >= self.max_starts:
                return
            ignored = tuple(s for s in (signal.SIGTERM, signal.SIGHUP) if signal.getsignal(s) == signal.SIG_IGN)
            proc = self.ctx.Process(target=_worker, args=(self.started, ignored, dict(os.environ), *self.args),
                                    daemon=False)
            proc.start()
            self.procs.append(proc)
            self.started += 1

    def reap(self) -> list:
        """Wait a moment for workers to end; return those that died (exit code not 0), with their tag."""
        from ganlab.run_heartbeat import process_tag

        dead = []
        for proc in list(self.procs):
            proc.join(timeout=0.5 / max(len(self.procs), 1))
            if proc.is_alive():
                continue
            self.procs.remove(proc)
            if proc.exitcode != 0:
                self.exit_codes.append(proc.exitcode)
                proc.tag = process_tag(proc.pid)
                dead.append(proc)
        return dead

    def stop(self) -> None:
        """Stop every worker cleanly: each ends its trial's run KILLED and queues the trial again.
        Ctrl-C reached them with the driver; a signal to the driver alone did not, so it is passed on
        at once, as SIGUSR1, which a worker already stopping ignores (a second SIGINT, sent 2 s later
        before 2026-12-07, could cut a slow clean-up short)."""
        for proc in self.procs:
            if proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGUSR1)
        for proc in self.procs:
            proc.join(timeout=STOP_GRACE_S)
            if proc.is_alive():  # a stopping worker ignores SIGTERM (see _stop_once): its trial is failed
                proc.kill()  # and queued again as a dead worker's, by recover_dead_workers
                proc.join(timeout=5)


def print_results(study, sweep, seconds: float, tracking_uri: str | None = None) -> int:
    """The end of a sweep: the counts, the best trials as a table, how to re-run the best (recording
    to the sweep's store). Returns an exit code."""
    from ganlab.sweeping.summary import best_trials, counts, failure_lines, ks_noise_note, rerun_command

    n = counts(study)
    print(f"\nganlab sweep '{sweep.name}' done in {seconds:.0f} s: "
          + ", ".join(f"{v} {k}" for k, v in sorted(n.items())))
    best = best_trials(study)
    if not best:
        lines = failure_lines(study) or ["  (no trial failed on its own: run the same command to train the "
                                         "queued ones, or raise --trials)"]
        print("no trial completed; why the trials failed (also in MLflow, each child run's failure_reason):",
              *lines, sep="\n")
        return 1
    names = [sweep.objective_label(o.metric) for o in sweep.objectives]
    print("\n| rank | trial | " + " | ".join(names) + " | " + " | ".join(p.key for p in sweep.space) + " |")
    print("|---" * (2 + len(names) + len(sweep.space)) + "|")
    for rank, t in enumerate(best[:5], 1):
        params = " | ".join(_fmt(t.params.get(p.key)) for p in sweep.space)
        print(f"| {rank} | {t.number} | " + " | ".join(_fmt(v) for v in t.values) + f" | {params} |")
    note = ks_noise_note(best, sweep)
    if note:
        print(f"\n{note}")
    print(f"\nre-run the best trial:\n  {rerun_command(best[0], tracking_uri)}")
    return 0


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
