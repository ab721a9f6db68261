"""``train.accelerator`` as Lightning names it, checked against the machine: a GPU asked for and absent
is a one-line error before anything is created (no run, no store). Imports torch only, so the CLI can
ask before it opens the tracking store."""

from __future__ import annotations

import torch

from ganlab.errors import ConfigError


def resolve_accelerator(name: str) -> str:
    """The Lightning accelerator for train.accelerator; a one-line ConfigError when a GPU is asked for and absent."""
    if name in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"train.accelerator={name!r} but no CUDA device is available; use cpu or auto")
        return "gpu"
    if name == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return name
