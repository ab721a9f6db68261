"""Atomic file writing: a crash at any moment leaves the old file or the new one, never half of one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ganlab.signals import signals_held


def save_atomic(state: dict[str, Any], path: Path) -> Path:
    """``torch.save(state)`` to a temporary file beside ``path``, flushed to disk, then renamed over it.
    SIGINT/SIGTERM wait for the end of the write: a Ctrl-C inside torch's zip writer surfaced as a
    RuntimeError ("unexpected pos"), and a stopped sweep trial was recorded as failed by it."""
    import torch  # the caller already has it loaded; kept local so this leaf stays import-light

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with signals_held():
            with open(tmp, "wb") as handle:
                torch.save(state, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
