"""Cohorts trained in worker processes over shared memory: a population sweep's use of several CPU cores.

Why processes and not threads: a cohort iteration is ~1,200 small torch operations whose Python and
dispatch side holds the GIL, so two cohort threads of one process use about 1.3-1.6 cores of two,
where two processes use 1.7-1.9 (``benchmarks/cohort_threads.py``, docs/population_speed.md).

Every tensor of a cohort (weights, Adam state, member settings and counters) is moved to shared memory
before the cohort is sent to a worker, and every tensor that outlives an iteration is updated in place
(``cohort.py``), so the main process sees a worker's training without copying anything back: it
evaluates, checkpoints, stops and reassembles cohorts between steps exactly as before. What a worker
changes outside tensors is the cohort's random stream, sent back after each step; what the main process
holds outside tensors (the random stream, which members are stopped) is sent with each step, so the
main process's cohorts stay the record of truth whichever worker trains them (or the main process).
Workers ignore SIGINT and SIGTERM (the main process turns them into a stop at the step's end) and exit
when the main process's end of their pipe closes, a ``kill -9`` of it included.

Workers are spawned, not forked (the main process runs MLflow's and the study's threads), so a script
that starts a population sweep needs the usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import math
import time
import traceback
from multiprocessing.connection import Connection, wait
from multiprocessing.util import Finalize

import torch
import torch.multiprocessing as tmp

from ganlab.population.cohort import Cohort, train_cohorts
from ganlab.population.heap_reuse import keep_freed_memory
from ganlab.signals import call_ignoring_stop_signals

CHUNKS = 8  # a step's iterations of a cohort are handed out in about this many runs ...
MIN_RUN = 4  # ... of at least this many iterations (a hand-out costs a message each way)


class CohortProcessError(RuntimeError):
    """A worker process failed or died during a step (the step's cohorts may be part-way through it)."""


def _rng_bytes(cohort: Cohort) -> bytes:
    """The cohort's random stream as bytes (a tensor would travel as a shared-memory segment of its own)."""
    return cohort.rng.get_state().numpy().tobytes()


def _rng_state(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _serve(conn: Connection) -> None:
    """A worker's loop: receive cohorts and steps, train them in place, send back their random streams."""
    torch.set_num_threads(1)  # started by call_ignoring_stop_signals: the main process stops them in order
    heap_kept = keep_freed_memory()
    held: dict[int, Cohort] = {}
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the main process is gone
            return
        if message is None:
            return
        new, forget, work, steps = message
        try:
            held.update(new)
            for key in forget:
                held.pop(key, None)
            cohorts = []
            for key, alive, rng in work:
                cohort = held[key]
                cohort.rng.set_state(_rng_state(rng))
                if cohort.alive != alive:  # members the main process stopped since the last step
                    cohort.alive = list(alive)
                    cohort._masks()
                cohorts.append(cohort)
            start = time.perf_counter()
            train_cohorts(cohorts, steps)
            reply = ("done", {key: _rng_bytes(held[key]) for key, _, _ in work}, time.perf_counter() - start,
                     heap_kept)
        except Exception:  # noqa: BLE001 -- reported to the main process, which raises it
            reply = ("error", traceback.format_exc())
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


class CohortProcesses:
    """``count`` spawned worker processes; :meth:`train` hands a step's cohorts out to them."""

    def __init__(self, count: int) -> None:
        context = tmp.get_context("spawn")  # the main process runs threads (MLflow, the study): no fork
        self._pipes: list[Connection] = []
        self._processes = []
        self._held: list[dict[int, Cohort]] = []  # per worker: the cohorts it holds (kept alive here, so no
        # new cohort can take a held one's id)
        self.busy_s = 0.0  # the workers' training time, summed over workers ...
        self.wall_s = 0.0  # ... and the steps' wall time: busy_s / (count * wall_s) is their use of the cores
        self.count = count
        self.heap_kept: list[bool | None] = [None] * count  # per worker, from its replies (heap_reuse.py)
        self._failed = False
        for _ in range(count):
            mine, theirs = context.Pipe()
            process = context.Process(target=call_ignoring_stop_signals, daemon=True, name="ganlab-cohorts",
                                      args=(f"{__name__}:_serve", theirs))  # ignoring them before it imports torch
            process.start()
            theirs.close()
            self._pipes.append(mine)
            self._processes.append(process)
            self._held.append({})
        # before multiprocessing's own exit handler joins its children (exit priority >= 0 runs first)
        Finalize(self, _shut_down, args=(self._pipes, self._processes), exitpriority=10)

    def train(self, cohorts: list[Cohort], steps: int) -> None:
        """``steps`` iterations of every cohort, all in place; returns when all are done.

        Work is handed out in runs of about ``steps / CHUNKS`` iterations of one cohort, each to the next
        free worker, the cohort with the most work left first (a cohort's runs are trained one after
        another, each where the last one ended): the workers then end the step within about one run of
        each other, whatever the cohorts' real costs and however many there are. Handing out whole
        cohorts, three equal ones left one of two workers idle a third of the step."""
        if self._failed:
            raise CohortProcessError("the cohort worker processes failed in an earlier step")
        try:
            self._train(cohorts, steps)
        except BaseException:
            self._failed = True  # replies of that step may still be unread: no later step may read them
            raise

    def _train(self, cohorts: list[Cohort], steps: int) -> None:
        start = time.perf_counter()
        wanted = {id(c): c for c in cohorts}
        left = {id(c): steps for c in cohorts}  # iterations not yet handed out
        run = max(MIN_RUN, math.ceil(steps / CHUNKS))
        running: dict[int, Cohort] = {}  # worker -> the cohort it trains now

        def hand_out() -> None:
            for worker in range(self.count):
                waiting = [c for c in cohorts if left[id(c)] and all(c is not r for r in running.values())]
                if worker in running or not waiting:
                    continue
                cohort = max(waiting, key=lambda c: c.cost * left[id(c)])
                n = min(run, left[id(cohort)])
                left[id(cohort)] -= n
                running[worker] = self._hand(worker, cohort, wanted, n)

        hand_out()
        while running:
            for conn in wait([self._pipes[worker] for worker in running]):
                worker = self._pipes.index(conn)
                kind, payload, *rest = self._receive(worker)
                if kind == "error":
                    raise CohortProcessError(f"a cohort worker process failed:\n{payload}")
                cohort = running.pop(worker)
                cohort.rng.set_state(_rng_state(payload[id(cohort)]))
                self.busy_s += rest[0]
                self.heap_kept[worker] = rest[1]
            hand_out()
        self.wall_s += time.perf_counter() - start

    def _hand(self, worker: int, cohort: Cohort, wanted: dict[int, Cohort], steps: int) -> Cohort:
        """Send ``cohort`` to ``worker`` for ``steps`` iterations (moving it to shared memory and sending it
        whole the first time that worker trains it; the worker drops cohorts no longer ``wanted``)."""
        held = self._held[worker]
        forget = [key for key in held if key not in wanted]
        for key in forget:
            del held[key]
        new = {}
        if id(cohort) not in held:
            cohort.share_memory()
            held[id(cohort)] = new[id(cohort)] = cohort
        self._send(worker, (new, forget, [(id(cohort), list(cohort.alive), _rng_bytes(cohort))], steps))
        return cohort

    def busy_share(self) -> float | None:
        """How much of the steps' wall time the workers spent training, averaged over workers (1.0: no
        worker ever waited for another or for the main process's messages); None before any step."""
        return self.busy_s / (self.count * self.wall_s) if self.wall_s > 0 else None

    def _send(self, worker: int, message) -> None:
        try:
            self._pipes[worker].send(message)
        except (BrokenPipeError, OSError) as exc:
            raise self._died(worker) from exc

    def _receive(self, worker: int):
        try:
            return self._pipes[worker].recv()
        except (EOFError, OSError) as exc:
            raise self._died(worker) from exc

    def _died(self, worker: int) -> CohortProcessError:
        process = self._processes[worker]
        process.join(timeout=1.0)
        return CohortProcessError(f"cohort worker process {process.pid} died (exit code {process.exitcode}) "
                                  "during a population step")

    def close(self) -> None:
        _shut_down(self._pipes, self._processes)
        self._held.clear()


def _shut_down(pipes: list[Connection], processes: list) -> None:
    """Ask each worker to end, then make sure it has (they ignore SIGTERM, so one that does not end is
    killed). Also run at exit, before multiprocessing joins its children: a population stopped while it
    was set up left its workers waiting on their pipes, and the process waited for them forever."""
    for pipe in pipes:
        try:
            pipe.send(None)
        except (BrokenPipeError, OSError):
            pass
    for process in processes:
        process.join(timeout=5.0)
        if process.is_alive():
            process.kill()
            process.join(timeout=5.0)
    for pipe in pipes:
        pipe.close()
    pipes.clear()
    processes.clear()
