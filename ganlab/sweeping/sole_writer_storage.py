"""An Optuna storage for the one process that writes a study (a population sweep): reads from memory,
reports and results written behind, on a thread.

Optuna's RDB storage re-reads every unfinished trial (params, attributes, every intermediate value)
from the database on each ``get_all_trials``, and the samplers and pruners call it on every ``ask`` and
every ``should_prune``. A population keeps hundreds of trials running at once, so each call read them
all: 0.3 s a call with 256 running trials, called ~20 times per trial. This wrapper loads the study
once and keeps every trial in memory, updated as this process writes it. That is only right while no
other process writes the study, which :func:`claim_study` makes sure of.

A trial's birth (its creation, params and attributes as the sampler and the population set them)
is kept in memory until :meth:`SoleWriterStorage.write_births` (the population calls it once it has
asked the trials of a refill, before they train), then written in one transaction per trial; any
other write to an unborn trial, and every flush, writes the births first. So the database knows
every trial that trains and how to start it again, and a trial costs one transaction to start, not
eight (create, five params, two attributes: 29 s of a 1,024-trial start on the 2-core machine).
A trial never written (the process died while asking) never existed for the study: the next run
asks again. Taking a waiting trial is written through. Everything after a birth (reports,
attributes, final states: the bulk of the traffic) goes to the database in order on one background
thread. :meth:`SoleWriterStorage.flush` waits for the queue (the population flushes before each
checkpoint and at the end); a failed write is raised on the next call, on the training thread.
"""

from __future__ import annotations

import copy
import datetime
import json
import queue
import threading
from collections.abc import Callable, Container, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from ganlab.errors import GanlabError, one_line
from ganlab.run_heartbeat import alive_here, process_tag

WRITER_ATTR = "ganlab.population_writer"  # the study's writer, host:pid


class StudyWriteError(GanlabError):
    """Writing the study to its storage failed; the message says which write and why."""


class StudyBusyError(GanlabError):
    """Another live process is writing this study as a population."""


def refuse_if_claimed(study: optuna.Study) -> None:
    """Refuse while another live process on this machine trains ``study`` as a population (it holds the
    study in memory and would not see a second writer's trials)."""
    holder = study.user_attrs.get(WRITER_ATTR)
    if holder and holder != process_tag() and alive_here(holder):  # on another host: cannot tell, allowed
        raise StudyBusyError(f"study '{study.study_name}' is being trained as a population by process {holder}; "
                             "wait for it to end or stop it (it must be the study's only writer)")


def claim_study(study: optuna.Study) -> None:
    """Mark ``study`` as written by this process alone (see :func:`refuse_if_claimed`)."""
    refuse_if_claimed(study)
    study.set_user_attr(WRITER_ATTR, process_tag())


class SoleWriterStorage(BaseStorage):
    """Wraps a storage (an ``RDBStorage``): study-level calls go straight through, trials live in memory."""

    def __init__(self, inner: BaseStorage) -> None:
        self.inner = inner
        self._trials: dict[int, FrozenTrial] = {}  # trial id -> its latest state, as this process wrote it
        self._study_trials: dict[int, list[int]] = {}  # study id -> trial ids in number order
        self._distributions: dict[int, dict[str, BaseDistribution]] = {}  # study id -> each param's first
        self._study_of: dict[int, int] = {}  # trial id (provisional ones too) -> its study id
        self._unborn: dict[int, int] = {}  # provisional trial id (negative) -> its study id, in the order asked
        self._born: dict[int, int] = {}  # provisional trial id -> the database's, once written
        self._next_provisional = -1
        self._lock = threading.RLock()
        self._writes: queue.Queue[Callable[[], Any] | None] = queue.Queue()
        self._error: BaseException | None = None
        self._writer = threading.Thread(target=self._write_behind, name="ganlab-study-writes", daemon=True)
        self._writer.start()

    # -- the write-behind thread -----------------------------------------------------------------------
    def _write_behind(self) -> None:
        while True:
            write = self._writes.get()
            try:
                if write is None:
                    return
                if self._error is None:  # after a failure nothing more is written: the order would break
                    write()
            except BaseException as exc:  # noqa: BLE001 -- raised on the training thread by _check
                self._error = exc
            finally:
                self._writes.task_done()

    def _check(self) -> None:
        if self._error is not None:
            raise StudyWriteError(f"writing the study failed: {one_line(self._error)}")

    def _behind(self, write: Callable[[], Any]) -> None:
        self._check()
        self._writes.put(write)

    def flush(self) -> None:
        """Write the births, wait until every queued write is in the database; raise the first that failed.
        The queue is waited for even when a birth fails: the results already told must not be lost with it."""
        try:
            self.write_births()
        finally:
            self._writes.join()
        self._check()

    def close(self) -> None:
        """Flush and end the writer thread (ended even if the flush fails)."""
        try:
            self.flush()
        finally:
            self._writes.put(None)
            self._writer.join()

    # -- the study: straight through -------------------------------------------------------------------
    def create_new_study(self, directions: Sequence[StudyDirection], study_name: str | None = None) -> int:
        return self.inner.create_new_study(directions, study_name)

    def delete_study(self, study_id: int) -> None:
        self.flush()
        self.inner.delete_study(study_id)
        for trial_id in self._study_trials.pop(study_id, []):
            self._trials.pop(trial_id, None)
            self._study_of.pop(trial_id, None)
            self._unborn.pop(trial_id, None)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self.inner.set_study_user_attr(study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self.inner.set_study_system_attr(study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        return self.inner.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self.inner.get_study_name_from_id(study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self.inner.get_study_directions(study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self.inner.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self.inner.get_study_system_attrs(study_id)

    def get_all_studies(self):
        self.flush()
        return self.inner.get_all_studies()

    # -- trials: in memory ---------------------------------------------------------------------------
    def _load(self, study_id: int) -> list[int]:
        """The study's trial ids, read from the database once."""
        if study_id not in self._study_trials:
            trials = self.inner.get_all_trials(study_id, deepcopy=False)
            with self._lock:
                for trial in trials:
                    self._trials[trial._trial_id] = trial
                    self._study_of[trial._trial_id] = study_id
                self._study_trials[study_id] = [t._trial_id for t in sorted(trials, key=lambda t: t.number)]
                for trial in trials:
                    self._note_distributions(study_id, trial.distributions)
        return self._study_trials[study_id]

    def _note_distributions(self, study_id: int, distributions: dict[str, BaseDistribution]) -> None:
        """Each param's first distribution in the study: what an unborn trial's params are checked
        against, as the database checks them (so an incompatible one fails at the call, not at its birth)."""
        first = self._distributions.setdefault(study_id, {})
        for name, distribution in distributions.items():
            first.setdefault(name, distribution)

    def _id(self, trial_id: int) -> int:
        """The database's id of a trial (handles given out before its birth was written hold another)."""
        return self._born.get(trial_id, trial_id)

    def _written_id(self, trial_id: int) -> int:
        """The database's id of a trial that a queued write is about to address: births written first."""
        if self._id(trial_id) in self._unborn:
            self.write_births()
        return self._id(trial_id)

    def _updatable(self, trial_id: int) -> FrozenTrial:
        self._check()
        trial = self.get_trial(trial_id)
        self.check_trial_is_updatable(trial_id, trial.state)
        return copy.copy(trial)  # copy on write: lists handed out by get_all_trials stay as they were

    def _keep(self, trial: FrozenTrial) -> None:
        self._trials[trial._trial_id] = trial

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        ids = self._load(study_id)
        self._check()
        if template_trial is not None:  # an enqueued or added trial: written through, after the births before it
            self.write_births()
            trial_id = self.inner.create_new_trial(study_id, template_trial)
            trial = self.inner.get_trial(trial_id)
            self._note_distributions(study_id, trial.distributions)
        else:  # asked: in memory until write_births (its number is the study's next: no other process writes it)
            trial_id, self._next_provisional = self._next_provisional, self._next_provisional - 1
            trial = FrozenTrial(number=len(ids), state=TrialState.RUNNING, value=None,
                                datetime_start=datetime.datetime.now(), datetime_complete=None, params={},
                                distributions={}, user_attrs={}, system_attrs={}, intermediate_values={},
                                trial_id=trial_id)
            self._unborn[trial_id] = study_id
        with self._lock:
            self._trials[trial_id] = trial
            self._study_of[trial_id] = study_id
            ids.append(trial_id)
        return trial_id

    def write_births(self) -> None:
        """Write every trial asked but not yet written, in the order asked, one transaction each."""
        self._check()
        last: tuple[int, FrozenTrial] | None = None
        while self._unborn:
            provisional, study_id = next(iter(self._unborn.items()))
            trial = self._trials[provisional]
            try:  # the database numbers it as we did: it gets the study's trials in order, from us alone
                real = self.inner.create_new_trial(study_id, template_trial=trial)
            except Exception as exc:
                raise StudyWriteError(f"writing trial {trial.number} to the study failed: {one_line(exc)}") from exc
            born = copy.copy(trial)
            born._trial_id = real
            with self._lock:
                del self._unborn[provisional]
                self._born[provisional] = real
                self._trials[real] = born
                self._study_of[real] = study_id
                del self._trials[provisional]
                self._study_trials[study_id][trial.number] = real
            last = study_id, born
        if last is not None:
            self._check_numbering(*last)

    def _check_numbering(self, study_id: int, trial: FrozenTrial) -> None:
        """The database numbers a trial by the trials before it; if another process added one meanwhile
        (``claim_study`` cannot see one on another machine), the numbers here are wrong from then on."""
        try:
            same = self.inner.get_trial_id_from_study_id_trial_number(study_id, trial.number) == trial._trial_id
        except KeyError:
            same = False
        if not same:
            raise StudyBusyError(f"another process added trials to study {self.get_study_name_from_id(study_id)!r} "
                                 f"while this population was its only writer (trial {trial.number} here has another "
                                 "number in the database); stop the other process, then run the same command again")

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        trial_id = self._id(trial_id)
        trial = self._updatable(trial_id)
        study_id = self._study_of[trial_id]
        if trial_id in self._unborn:
            first = self._distributions.setdefault(study_id, {})
            if param_name in first:  # as the database checks it (raises ValueError when incompatible)
                optuna.distributions.check_distribution_compatibility(first[param_name], distribution)
        else:
            self.inner.set_trial_param(trial_id, param_name, param_value_internal, distribution)  # checks compatibility
        self._note_distributions(study_id, {param_name: distribution})
        trial.params = {**trial.params, param_name: distribution.to_external_repr(param_value_internal)}
        trial.distributions = {**trial.distributions, param_name: distribution}
        self._keep(trial)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        ids = self._load(study_id)
        if 0 <= trial_number < len(ids) and self._trials[ids[trial_number]].number == trial_number:
            return ids[trial_number]
        raise KeyError(f"no trial number {trial_number} in study {study_id}")

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        trial_id = self._written_id(trial_id)
        trial = self._updatable(trial_id)
        if state == TrialState.RUNNING:  # taking a waiting trial: written through, as births are
            if trial.state != TrialState.WAITING or not self.inner.set_trial_state_values(trial_id, state, values):
                return False
            trial.datetime_start = datetime.datetime.now()
        else:
            self._behind(lambda: self.inner.set_trial_state_values(trial_id, state, values))
            if state.is_finished():
                trial.datetime_complete = datetime.datetime.now()
        trial.state = state
        if values is not None:
            trial.values = list(values)
        self._keep(trial)
        return True

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        trial_id = self._written_id(trial_id)
        trial = self._updatable(trial_id)
        self._behind(lambda: self.inner.set_trial_intermediate_value(trial_id, step, intermediate_value))
        trial.intermediate_values = {**trial.intermediate_values, step: intermediate_value}
        self._keep(trial)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        trial_id = self._id(trial_id)
        trial = self._updatable(trial_id)
        json.dumps(value)  # as the database stores it: a value it cannot take fails here, not in a later write
        if trial_id not in self._unborn:  # an unborn trial's attributes are written with it
            self._behind(lambda: self.inner.set_trial_user_attr(trial_id, key, value))
        trial.user_attrs = {**trial.user_attrs, key: value}
        self._keep(trial)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        trial_id = self._id(trial_id)
        trial = self._updatable(trial_id)
        json.dumps(value)
        if trial_id not in self._unborn:
            self._behind(lambda: self.inner.set_trial_system_attr(trial_id, key, value))
        trial.system_attrs = {**trial.system_attrs, key: value}
        self._keep(trial)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        trial_id = self._id(trial_id)
        trial = self._trials.get(trial_id)
        return trial if trial is not None else self.inner.get_trial(trial_id)  # a study this process does not hold

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        self._check()
        with self._lock:
            trials = [self._trials[i] for i in self._load(study_id)]
        if states is not None:
            trials = [t for t in trials if t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials
