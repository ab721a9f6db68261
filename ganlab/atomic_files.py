"""Atomic file writing: a crash at any moment leaves the old file or the new one, never half of one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def save_atomic(state: dict[str, Any], path: Path) -> Path:
    """``torch.save(state)`` to a temporary file beside ``path``, flushed to disk, then renamed over it."""
    import torch  # the caller already has it loaded; kept local so this leaf stays import-light

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
