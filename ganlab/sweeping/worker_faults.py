"""A sweep worker that dies (kill -9, out of memory, a crash) loses no trial.

Each worker tags the trials it runs with ``worker = <host>:<pid>``. When the driver sees a worker
process end badly, or finds on start a RUNNING trial whose worker process on this host no longer
exists, the trial is failed at once (its reason recorded) and retried once as a WAITING copy, which
the remaining or a replacement worker runs in the same invocation. Workers on other machines are
covered by Optuna's heartbeats (a trial without a beat for ``--stale-after`` seconds is failed and
retried the same way). A failed trial that was retried does not use up the study's trial budget.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from datetime import datetime

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from ganlab.run_heartbeat import alive_here, process_tag

WORKER_ATTR = "worker"
MAX_RETRY = 1  # retries after worker deaths, per trial
WORKER_DEATHS = "ganlab:worker_deaths"  # a system attr of each retry copy
EXIT_ENVIRONMENT = 75  # a worker stopped by its machine (full disk, dead store): EX_TEMPFAIL, not the trial's fault
MACHINE_STOPS = "ganlab:machine_stops"  # a system attr of each retry copy: its line's stops by a machine fault
MAX_MACHINE_RETRY = 3  # a trial that itself exhausts a resource (a huge /dev/shm share) must not loop forever


def _retry(study: optuna.Study, trial: optuna.trial.FrozenTrial, worker_died: bool,
           machine_stop: bool = False) -> None:
    """Queue a WAITING copy through Optuna's retry callback (marked experimental, and exactly what is
    needed), without its warning. The copy does not inherit the failed run's reason or worker: a copy
    carrying a reason looked, once stopped by Ctrl-C, like a trial that had failed on its own. It
    counts the worker deaths of its line (``WORKER_DEATHS``), which alone limit retries: a user's
    stops do not use them up."""
    clean = copy.copy(trial)  # shallow: the setters below give it its own attrs
    clean.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in ("failure_reason", WORKER_ATTR)}
    clean.system_attrs = {**trial.system_attrs, WORKER_DEATHS: worker_deaths(trial) + int(worker_died),
                          MACHINE_STOPS: machine_stops(trial) + int(machine_stop)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        RetryHeartbeatStaleTrialCallback(max_retry=None)(study, clean)


def worker_deaths(trial: optuna.trial.FrozenTrial) -> int:
    """How many workers died running this trial's earlier copies (stops by the user not counted)."""
    return int(trial.system_attrs.get(WORKER_DEATHS, 0))


def machine_stops(trial: optuna.trial.FrozenTrial) -> int:
    """How often a machine fault (a full disk) stopped this trial's earlier copies."""
    return int(trial.system_attrs.get(MACHINE_STOPS, 0))


def _machine_limit_reached(trial: optuna.trial.FrozenTrial) -> str | None:
    """The "not queued again" note once machine faults stopped this trial's line ``MAX_MACHINE_RETRY`` times."""
    if machine_stops(trial) < MAX_MACHINE_RETRY:
        return None
    return f"not queued again (its machine stopped it {machine_stops(trial) + 1} times)"


def _dead_here(tag: str | None) -> bool:
    """A trial's worker ran on this host and its process is gone."""
    return alive_here(tag) is False


def fail_and_retry(study: optuna.Study, trial: optuna.trial.FrozenTrial, reason: str,
                   worker_died: bool = True, machine_stop: bool = False) -> int | None:
    """Mark a RUNNING trial FAIL with ``reason`` (saying whether it is queued again) and enqueue its
    retry: after a user's stop (``worker_died`` False) always, after a worker's death ``MAX_RETRY``
    times in its line, after a machine fault (``machine_stop``) ``MAX_MACHINE_RETRY`` times. Returns
    the retry's number, None when it was not queued."""
    again = not worker_died or worker_deaths(trial) < MAX_RETRY
    limit = _machine_limit_reached(trial) if machine_stop else None
    if limit is not None:
        reason += f"; {limit}"
        again = False
    else:
        deaths = worker_deaths(trial) + 1
        reason += "; queued again" if again else f"; not queued again (its worker died {deaths} times)"
    storage = study._storage  # noqa: SLF001 -- Optuna's documented way for an outside process to end a trial
    storage.set_trial_user_attr(trial._trial_id, "failure_reason", reason)  # noqa: SLF001
    if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):  # noqa: SLF001
        return None  # it ended meanwhile
    if not again:
        return None
    before = {t.number for t in study.get_trials(deepcopy=False)}
    _retry(study, storage.get_trial(trial._trial_id), worker_died, machine_stop)  # noqa: SLF001
    added = [t.number for t in study.get_trials(deepcopy=False) if t.number not in before]
    return added[0] if added else None


def retry_after_heartbeat_stopped(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """The storage's callback for a trial whose worker (on any machine) stopped beating, which Optuna
    has failed: queued again if its line has not lost a worker before (a user's stops not counted)."""
    if worker_deaths(trial) < MAX_RETRY:
        _retry(study, trial, worker_died=True)


def recover_dead_workers(study: optuna.Study, dead_tags: set[str] | None = None,
                         exit_codes: dict[str, int] | None = None,
                         stopped_by: str | None = None, untagged_after_s: float | None = None) -> dict[int, int | None]:
    """Fail and retry the RUNNING trials of workers known dead (``dead_tags``) or found dead on this
    host; returns each failed trial's number -> its retry's number (None: not queued again). A trial
    whose worker dies is retried once (a trial that kills its worker twice is not run a third time);
    ``stopped_by`` names the signal with which the user stopped the sweep, and its trials are queued
    again however often that happens. ``untagged_after_s``: an :func:`unowned` trial started longer
    ago than that was asked by a worker that died (kill -9, a full disk) before it could tag it: a live
    worker tags its trial within milliseconds, and without a tag or a heartbeat nothing else ends it."""
    failed = fail_unowned(study, untagged_after_s) if untagged_after_s is not None else {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        tag = trial.user_attrs.get(WORKER_ATTR)
        if trial.number in failed:
            continue
        if (dead_tags is not None and tag in dead_tags) or _dead_here(tag):
            code = (exit_codes or {}).get(tag)
            if stopped_by is not None:
                failed[trial.number] = fail_and_retry(study, trial, f"stopped with the sweep ({stopped_by})",
                                                      worker_died=False)
            elif code == EXIT_ENVIRONMENT:
                failed[trial.number] = fail_and_retry(study, trial, f"its worker {tag} stopped: its disk or store "
                                                      f"failed (exit code {code})", worker_died=False,
                                                      machine_stop=True)
            else:
                how = f"exit code {code}" if code is not None else "its process is gone"
                failed[trial.number] = fail_and_retry(study, trial, f"its worker {tag} died ({how})")
    return failed


def unowned(trial: optuna.trial.FrozenTrial) -> bool:
    """A RUNNING trial nobody has claimed: no worker tag (a retry copy keeps its overrides but not its
    worker) and not a population sweep's."""
    return (trial.state == TrialState.RUNNING and WORKER_ATTR not in trial.user_attrs
            and not trial.user_attrs.get("population"))


def age_s(trial: optuna.trial.FrozenTrial) -> float:
    if trial.datetime_start is None:
        return 0.0
    return (datetime.now() - trial.datetime_start).total_seconds()  # Optuna stamps it in local time


def unowned_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if unowned(t)]


def fail_unowned(study: optuna.Study, older_than_s: float,
                 age: Callable[[optuna.trial.FrozenTrial], float] = age_s) -> dict[int, int | None]:
    """Fail and retry each :func:`unowned` trial whose ``age`` (by default, since its start stamp) is
    more than ``older_than_s`` seconds."""
    return {t.number: fail_and_retry(study, t, "its worker died before it could tag the trial",
                                     worker_died=False)  # the trial never started: not its fault
            for t in unowned_trials(study) if age(t) > older_than_s}


def retried_failures(study: optuna.Study) -> set[int]:
    """Numbers of the failed trials that were queued again (a stopped sweep's, a dead worker's)."""
    trials = study.get_trials(deepcopy=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        again = {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}
    return {t.number for t in trials if t.state == TrialState.FAIL and t.number in again}


def _counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The started trials that count against the study's budget: all but failed ones that were
    retried (their retry counts instead)."""
    retried = retried_failures(study)
    return [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING and t.number not in retried]


def budget_used(study: optuna.Study) -> int:
    return len(_counted(study))


def finished(study: optuna.Study) -> int:
    """Ended trials, as the budget counts them (a sweep re-run after Ctrl-C counted "4/3 done")."""
    return sum(1 for t in _counted(study) if t.state.is_finished())


def waiting(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def population_trials_running(study: optuna.Study) -> dict[int, optuna.trial.FrozenTrial]:
    """Trials a population sweep was training when it stopped: only a population sweep continues them
    (from its checkpoint); process workers leave them RUNNING."""
    return {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.user_attrs.get("population")}


def to_run(study: optuna.Study, trials: int) -> int:
    """How many trials an invocation still runs: the unused budget, and at least every WAITING trial."""
    return max(trials - budget_used(study), waiting(study))


class StopWhenDone:
    """A worker's ``study.optimize`` callback: stop once the budget is used and no trial waits."""

    def __init__(self, trials: int) -> None:
        self.trials = trials

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if budget_used(study) >= self.trials and waiting(study) == 0:
            study.stop()


def retry_interrupted(study: optuna.Study, machine_fault: str | None = None) -> None:
    """This worker's trials that Optuna failed because Ctrl-C or its machine (``machine_fault``, e.g. a
    full disk) stopped them (they have no ``failure_reason``) are retried (WAITING), so running the
    sweep again completes them instead of counting them as failures: after a user's stop however
    often it happens, after a machine fault ``MAX_MACHINE_RETRY`` times (then failed with the fault)."""
    me = process_tag()
    retried = retried_failures(study)  # every failed link of a retry chain, not only its first
    for trial in study.get_trials(deepcopy=False):
        if (trial.state == TrialState.FAIL and trial.user_attrs.get(WORKER_ATTR) == me
                and trial.number not in retried and "failure_reason" not in trial.user_attrs):
            limit = _machine_limit_reached(trial) if machine_fault is not None else None
            if limit is not None:
                study._storage.set_trial_user_attr(  # noqa: SLF001 -- a finished trial's reason
                    trial._trial_id, "failure_reason", f"{machine_fault}; {limit}")  # noqa: SLF001
                continue
            _retry(study, trial, worker_died=False, machine_stop=machine_fault is not None)
