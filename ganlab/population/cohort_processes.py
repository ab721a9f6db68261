"""Cohorts trained in worker processes over shared memory: a population sweep's use of several CPU cores.

Why processes and not threads: a cohort iteration is ~1,200 small torch operations whose Python and
dispatch side holds the GIL, so two cohort threads of one process use about 1.3-1.6 cores of two,
where two processes use 1.7-1.9 (``benchmarks/cohort_threads.py``, docs/population.md).

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

import signal
import time
import traceback
from multiprocessing.connection import Connection

import torch
import torch.multiprocessing as tmp

from ganlab.population.cohort import Cohort, train_cohorts


class CohortProcessError(RuntimeError):
    """A worker process failed or died during a step (the step's cohorts may be part-way through it)."""


def _rng_bytes(cohort: Cohort) -> bytes:
    """The cohort's random stream as bytes (a tensor would travel as a shared-memory segment of its own)."""
    return cohort.rng.get_state().numpy().tobytes()


def _rng_state(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _serve(conn: Connection) -> None:
    """A worker's loop: receive cohorts and steps, train them in place, send back their random streams."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    torch.set_num_threads(1)
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
            reply = ("done", {key: _rng_bytes(held[key]) for key, _, _ in work}, time.perf_counter() - start)
        except Exception:  # noqa: BLE001 -- reported to the main process, which raises it
            reply = ("error", traceback.format_exc())
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


class CohortProcesses:
    """``count`` spawned worker processes; :meth:`train` gives each its share of a step's cohorts."""

    def __init__(self, count: int) -> None:
        context = tmp.get_context("spawn")  # the main process runs threads (MLflow, the study): no fork
        self._pipes: list[Connection] = []
        self._processes = []
        self._held: list[dict[int, Cohort]] = []  # per worker: the cohorts it holds (kept alive here)
        self.busy_s = 0.0  # the workers' training time, summed over workers ...
        self.wall_s = 0.0  # ... and the steps' wall time: busy_s / (count * wall_s) is their use of the cores
        self.count = count
        for _ in range(count):
            mine, theirs = context.Pipe()
            process = context.Process(target=_serve, args=(theirs,), daemon=True, name="ganlab-cohorts")
            process.start()
            theirs.close()
            self._pipes.append(mine)
            self._processes.append(process)
            self._held.append({})

    def train(self, shares: list[list[Cohort]], steps: int) -> None:
        """``steps`` iterations of every cohort, share i in worker i, all in place; returns when all are done."""
        start = time.perf_counter()
        for worker, share in enumerate(shares):
            held = self._held[worker]
            wanted = {id(c): c for c in share}
            new = {}
            for key, cohort in wanted.items():
                if key not in held:
                    cohort.share_memory()
                    new[key] = cohort
            forget = [key for key in held if key not in wanted]
            self._held[worker] = wanted
            self._send(worker, (new, forget, [(id(c), list(c.alive), _rng_bytes(c)) for c in share], steps))
        for worker, share in enumerate(shares):
            kind, payload, *seconds = self._receive(worker)
            if kind == "error":
                raise CohortProcessError(f"a cohort worker process failed:\n{payload}")
            for cohort in share:
                cohort.rng.set_state(_rng_state(payload[id(cohort)]))
            self.busy_s += seconds[0]
        self.wall_s += time.perf_counter() - start

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
        for pipe in self._pipes:
            try:
                pipe.send(None)
            except (BrokenPipeError, OSError):
                pass
        for process in self._processes:
            process.join(timeout=5.0)
            if process.is_alive():
                process.terminate()
        for pipe in self._pipes:
            pipe.close()
        self._pipes, self._processes, self._held = [], [], []
