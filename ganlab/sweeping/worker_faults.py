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

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from ganlab.run_heartbeat import alive_here, process_tag

WORKER_ATTR = "worker"
MAX_RETRY = 1


def _retry(study: optuna.Study, trial: optuna.trial.FrozenTrial, max_retry: int | None) -> None:
    """Optuna's retry callback (marked experimental, and exactly what is needed), without its warning.
    The WAITING copy does not inherit the failed run's reason or worker: a copy carrying a reason
    looked, once stopped by Ctrl-C, like a trial that had failed on its own, and was not retried."""
    clean = copy.copy(trial)  # shallow: the setter below gives it its own user_attrs
    clean.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in ("failure_reason", WORKER_ATTR)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, clean)


def _retried_number(trial: optuna.trial.FrozenTrial) -> int | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


def _retries_so_far(trial: optuna.trial.FrozenTrial) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return len(RetryHeartbeatStaleTrialCallback.retry_history(trial))


def _dead_here(tag: str | None) -> bool:
    """A trial's worker ran on this host and its process is gone."""
    return alive_here(tag) is False


def fail_and_retry(study: optuna.Study, trial: optuna.trial.FrozenTrial, reason: str,
                   max_retry: int | None = MAX_RETRY) -> int | None:
    """Mark a RUNNING trial FAIL with ``reason`` (saying whether it is queued again) and enqueue its
    retry, at most ``max_retry`` times in a row (None: always); the retry's number."""
    again = max_retry is None or _retries_so_far(trial) < max_retry
    reason += "; queued again" if again else f"; not queued again (it was retried {_retries_so_far(trial)} time(s))"
    storage = study._storage  # noqa: SLF001 -- Optuna's documented way for an outside process to end a trial
    storage.set_trial_user_attr(trial._trial_id, "failure_reason", reason)  # noqa: SLF001
    if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):  # noqa: SLF001
        return None  # it ended meanwhile
    if not again:
        return None
    before = {t.number for t in study.get_trials(deepcopy=False)}
    _retry(study, storage.get_trial(trial._trial_id), max_retry)  # noqa: SLF001
    added = [t.number for t in study.get_trials(deepcopy=False) if t.number not in before]
    return added[0] if added else None


def recover_dead_workers(study: optuna.Study, dead_tags: set[str] | None = None,
                         exit_codes: dict[str, int] | None = None, stopped_by: str | None = None) -> list[int]:
    """Fail and retry the RUNNING trials of workers known dead (``dead_tags``) or found dead on this
    host; returns the failed trials' numbers. A worker that died on its own is retried once (a trial
    that kills its worker twice is not run a third time); ``stopped_by`` names the signal with which
    the user stopped the sweep, and its trials are queued again however often that happens."""
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        tag = trial.user_attrs.get(WORKER_ATTR)
        if (dead_tags is not None and tag in dead_tags) or _dead_here(tag):
            if stopped_by is not None:
                fail_and_retry(study, trial, f"stopped with the sweep ({stopped_by})", max_retry=None)
            else:
                code = (exit_codes or {}).get(tag)
                how = f"exit code {code}" if code is not None else "its process is gone"
                fail_and_retry(study, trial, f"its worker {tag} died ({how})")
            failed.append(trial.number)
    return failed


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


def retry_interrupted(study: optuna.Study) -> None:
    """This worker's trials that Optuna failed because Ctrl-C stopped them are retried (WAITING), so
    running the sweep again completes them instead of counting them as failures, however often the
    sweep is stopped."""
    me = process_tag()
    trials = study.get_trials(deepcopy=False)
    retried = {_retried_number(t) for t in trials}
    for trial in trials:
        if (trial.state == TrialState.FAIL and trial.user_attrs.get(WORKER_ATTR) == me
                and trial.number not in retried and "failure_reason" not in trial.user_attrs):
            _retry(study, trial, max_retry=None)  # the user's stop, not the trial's fault: always
