"""Is a RUNNING run still alive? Its process beats a tag every 30 s; a run whose process died
(kill -9, a lost machine) stops beating, and is recognised, closed KILLED, and not confused with a
live one: ``resume=`` refuses a live run (it would log every step twice) and closes a dead one first;
``python -m ganlab.stale_runs`` closes every dead one in a store.

Tags: ``ganlab.process`` = ``<host>:<pid>`` of the process that records the run, ``ganlab.heartbeat``
= the unix time of its last beat. On the same host a gone pid is dead at once; elsewhere a beat
older than ``STALE_AFTER_S`` is.
"""

from __future__ import annotations

import os
import socket
import threading
import time

HEARTBEAT_TAG, PROCESS_TAG = "ganlab.heartbeat", "ganlab.process"
BEAT_S = 30
STALE_AFTER_S = 120  # four missed beats


class Heartbeat:
    """A daemon thread that tags the run with the time every ``BEAT_S`` seconds until :meth:`stop`."""

    def __init__(self, client, run_id: str) -> None:
        self.client, self.run_id = client, run_id
        self._stop = threading.Event()
        client.set_tag(run_id, PROCESS_TAG, process_tag())
        self._beat()
        self._thread = threading.Thread(target=self._loop, name="ganlab-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        self.client.set_tag(self.run_id, HEARTBEAT_TAG, str(int(time.time())))

    def _loop(self) -> None:
        while not self._stop.wait(BEAT_S):
            try:
                self._beat()
            except Exception:  # noqa: BLE001 -- a missed beat is harmless; an outage is reported elsewhere
                pass

    def stop(self) -> None:
        self._stop.set()


def pid_alive(pid: int) -> bool:
    """Whether a process of this machine exists and is not a zombie."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as stat:  # a killed process not yet reaped (a zombie) is dead too
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False
    except PermissionError:
        return True
    except OSError:  # no /proc (not Linux): the signal check alone
        return True


def process_tag(pid: int | None = None) -> str:
    """``<host>:<pid>`` of this process (or of ``pid`` on this host): how runs and sweep trials name
    the process that owns them."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def alive_here(tag: str | None) -> bool | None:
    """Whether the process a :func:`process_tag` names is alive, if it ran on this host; else None."""
    host, _, pid = (tag or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    return pid_alive(int(pid))


def liveness(run) -> tuple[bool, str]:
    """(alive, how we know) for a RUNNING MLflow run."""
    tags = run.data.tags
    process, beat = tags.get(PROCESS_TAG, ""), tags.get(HEARTBEAT_TAG)
    alive = alive_here(process)
    if alive is not None:
        return alive, f"process {process} {'is running' if alive else 'is gone'}"
    if beat is None:
        return False, "it has no heartbeat (recorded before heartbeats, or its process died at once)"
    age = time.time() - int(beat)
    return age < STALE_AFTER_S, f"last heartbeat {age:.0f} s ago from {process or 'an unknown process'}"


def close_if_dead(client, run) -> str | None:
    """Mark a RUNNING run whose process died KILLED (with the reason); return the reason, or None if
    the run is alive or not RUNNING."""
    if run.info.status != "RUNNING":
        return None
    alive, how = liveness(run)
    if alive:
        return None
    reason = f"its process died ({how})"
    client.set_tag(run.info.run_id, "failure_reason", reason)
    client.set_terminated(run.info.run_id, status="KILLED")
    return reason
