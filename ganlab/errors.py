"""Every error ganlab reports to a user, under one base class.

The CLIs catch :class:`GanlabError` and print its message as one line; anything else is a bug and
keeps its traceback. Each subclass says which kind of input was bad, so callers can catch narrowly.
This module imports nothing from ganlab: everyone may import it.
"""

from __future__ import annotations

import errno
from typing import Any


class GanlabError(Exception):
    """A problem the user can fix, with a one-line message that names the bad value."""

    def __init__(self, message: str = "") -> None:
        super().__init__(" ".join(str(message).split()))  # one line, whatever the cause said


class ConfigError(GanlabError, ValueError):
    """A bad configuration value or override."""


class DatasetFileError(GanlabError, ValueError):
    """A dataset file that is missing, truncated or not in the expected format (the message names it)."""


class PictureError(GanlabError, ValueError):
    """A picture used as a 2D density that cannot be used: missing, not an image, or without any mass."""


class CheckpointError(GanlabError, RuntimeError):
    """A checkpoint that cannot be used: missing, truncated, not ganlab's, or carrying pickled objects."""


class SampleError(GanlabError, ValueError):
    """Bad `ganlab.sample` arguments, or a run that cannot be sampled."""


class EnvironmentFault(GanlabError, RuntimeError):
    """The machine stopped the work (a full or read-only disk, a failing store), not the input: what ran
    is to be run again once that is fixed."""


def not_allowed(key: str, value: Any, allowed: str) -> ConfigError:
    """The standard one-line message: ``key=value is not allowed; <what is>``."""
    return ConfigError(f"{key}={value!r} is not allowed; {allowed}")


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    """Raise :func:`not_allowed` unless ``ok``."""
    if not ok:
        raise not_allowed(key, value, allowed)


def require_positive(node: Any, prefix: str, *keys: str) -> None:
    """Each ``node[key]`` must be a finite number > 0 (NaN and inf are refused too)."""
    for key in keys:
        value = node[key]
        require(value == value and abs(value) != float("inf") and value > 0, f"{prefix}.{key}", value, "must be > 0")


def one_line(exc: BaseException) -> str:
    """``Type: first line`` of an exception, and of its root cause when that says more: a wrapped
    database error's own message (Optuna's says only "an exception is raised during the commit")
    is often the part that tells a user what happened ("database or disk is full")."""
    def first(error: BaseException) -> str:
        text = str(error).strip()
        if isinstance(error, GanlabError):  # ganlab's own messages are one line already, however long
            return f"{type(error).__name__}: {text}"
        return f"{type(error).__name__}: {text.splitlines()[0][:200]}" if text else type(error).__name__

    root, seen = exc, {id(exc)}
    if exc.__cause__ is None and not exc.__suppress_context__ and exc.__context__ is not None \
            and not isinstance(exc, GanlabError):  # raised while handling another error: that one says why
        root = exc.__context__
        seen.add(id(root))
    while root.__cause__ is not None and id(root.__cause__) not in seen:  # raise ... from: what it wraps
        root = root.__cause__
        seen.add(id(root))
    described = first(exc)
    if root is not exc and str(root).strip() and str(root).strip().splitlines()[0][:200] not in described:
        described += f" (cause: {first(root)})"
    return described


_FAULT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}
_FAULT_TEXTS = ("disk is full", "no space left", "readonly database", "read-only file system",
                "disk i/o error", "quota exceeded")


def environment_fault(exc: BaseException) -> bool:
    """The machine failed, not the run: a full, read-only or failing disk somewhere in the error's chain
    (also as text: an error replayed from the tracking process or wrapped by MLflow keeps only its
    message). A sweep queues such a trial again instead of counting it as a failed configuration."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, OSError) and link.errno in _FAULT_ERRNOS:
            return True
        if any(text in str(link).lower() for text in _FAULT_TEXTS):
            return True
        link = link.__cause__ or link.__context__
    return False
