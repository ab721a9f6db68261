"""SIGTERM and SIGINT end a run the same way: as a :class:`Stopped` exception in the main thread.

Why not let them be: Lightning turns Ctrl-C into ``sys.exit(1)`` and SIGTERM into ``sys.exit(0)``,
so a stopped run looked like a finished or a failed one to the shell. Raised as ``Stopped`` instead
(not a KeyboardInterrupt, which Lightning would swallow), the run's own handler marks it KILLED,
and the CLI prints one line and exits 128 + the signal number (130 for SIGINT, 143 for SIGTERM), as
shells and schedulers expect.

A training loop that checks :func:`check_stop` at every iteration boundary may ask for the stop to
wait there (:func:`defer_to_boundaries`), so that its checkpoint holds a whole iteration; a second
signal stops at once.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(BaseException):
    """The process received SIGINT or SIGTERM; ``exit_code`` is 128 + its number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        self.run_id: str | None = None  # the run it stopped, once marked KILLED
        self.checkpointed: bool | None = None  # whether that run has a checkpoint to resume from (None: unknown)


def as_stop(exc: KeyboardInterrupt | Stopped) -> Stopped:
    """A Ctrl-C that arrived as a KeyboardInterrupt (Python's own handler, a library's) as the
    ``Stopped`` of SIGINT: one name and exit code (130) for the stop lines."""
    return exc if isinstance(exc, Stopped) else Stopped(signal.SIGINT)


_deferred = False  # a loop checks check_stop() at its boundaries
AT_STEP_END = "stopping cleanly at the end of the current step"
_announcement = AT_STEP_END  # what the first signal says while deferred
_owned = 0  # how many stop_on_signals blocks are open
_pending: Stopped | None = None
_lost: Stopped | None = None  # raised inside a finaliser (``__del__``, a weakref callback), where Python drops it


def _keeping_lost_stops(previous_hook):
    """A ``sys.unraisablehook`` for :func:`stop_on_signals`. A signal that lands while a finaliser runs
    (SQLAlchemy's run at any allocation) raised ``Stopped`` there, and Python printed and dropped it: a
    stopped sweep went on and ended with exit 0. Kept instead for the next :func:`check_stop`; any
    other unraisable error goes to ``previous_hook``."""

    def hook(unraisable) -> None:
        global _lost
        if isinstance(unraisable.exc_value, Stopped):
            _lost = _lost or unraisable.exc_value
            return
        previous_hook(unraisable)

    return hook


def _raise_stopped(signum: int, frame) -> None:
    global _pending
    if _deferred and _pending is None:
        _pending = Stopped(signum)
        # said at once, or a user would wait in silence for the boundary (os.write: safe inside a handler;
        # stderr may be a pipe whose reader the same Ctrl-C ended: the stop must go on regardless)
        with contextlib.suppress(OSError):
            os.write(2, f"ganlab: {_pending.name} received: {_announcement} (send it again to stop at once)\n".encode())
        return
    raise Stopped(signum)


def defer_to_boundaries(on: bool = True, announcement: str = AT_STEP_END) -> None:
    """While on, a first signal waits for the loop's next :func:`check_stop` (a second one does not);
    ``announcement`` is what it says on stderr meanwhile."""
    global _deferred, _announcement
    _deferred, _announcement = on, announcement


@contextlib.contextmanager
def deferred_to_boundaries(announcement: str = AT_STEP_END) -> Iterator[None]:
    """:func:`defer_to_boundaries` within the block; a stop still pending at its end is dropped (the
    loop it was for has ended). Also for a loop that is mostly library calls (a database's, a process
    pool's): a signal raised inside one can leave its lock held or its state half-changed, and the
    clean-up that follows then waits forever on it (the likeliest cause of a sweep driver that hung
    after SIGTERM once in CI)."""
    outer = (_deferred, _announcement)  # nested: the outer block's deferral, and its pending stop, stay
    defer_to_boundaries(True, announcement)
    try:
        yield
    finally:
        defer_to_boundaries(*outer)
        if not outer[0]:
            check_stop()


def check_stop() -> Stopped | None:
    """The stop a signal asked for since the last check (the caller raises it once it has saved), or
    None; also one raised where Python dropped it (a finaliser), which only such a check can still see."""
    global _pending, _lost
    stop, _pending, _lost = _pending or _lost, None, None
    return stop


def raise_pending_stop() -> None:
    """Raise the stop a signal asked for since the last check (or one a finaliser swallowed), if any:
    a deferred block's check at a place where stopping is safe."""
    stop = check_stop()
    if stop is not None:
        raise stop


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Stopped`; the old handlers come back after."""
    global _owned
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in STOP_SIGNALS}
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _keeping_lost_stops(previous_hook)
    _owned += 1
    try:
        yield
    finally:
        _owned -= 1
        sys.unraisablehook = previous_hook
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def reclaim_stop_signals() -> None:
    """Within :func:`stop_on_signals`, make SIGINT and SIGTERM ours again. Lightning's trainer wraps
    SIGTERM in its own notifier, whose ``SIGTERMException`` (a ``SystemExit`` with code 0, no message)
    could win the race against a stop deferred to the iteration's end: a stopped run exited 0."""
    if _owned and threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            signal.signal(sig, _raise_stopped)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait for the end of the block, then reach whatever handler was in place.
    For work that must not be cut in half: a SQLite store's tables being created (interrupted, MLflow
    left a store that every later command refused: "table ... already exists"). Only the main thread
    receives signals, so elsewhere this holds nothing and needs to."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum)) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in received:  # in order: a second Ctrl-C during the block still means "stop now"
            signal.raise_signal(signum)


def call_ignoring_stop_signals(target: str, *args) -> None:
    """The entry point of a helper process that the main process stops in order (``target`` is
    "module:function"): it ignores SIGINT and SIGTERM before it imports the target's module. Spawned
    with the target itself, a helper imported torch for seconds first, and a signal to the whole
    process group then ended it: a population sweep stopped that way failed instead of checkpointing.
    (Making the parent ignore them while it starts the helper, to be inherited, could lose a signal
    meant for the parent: another of its threads may take it, and drop it.)"""
    ignore_stop_signals()
    module, _, name = target.partition(":")
    getattr(importlib.import_module(module), name)(*args)


def ignore_stop_signals() -> None:
    """For helper processes (the tracker): the main process ends them in order after a signal."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
