"""``train.accelerator`` as Lightning names it, checked against the machine: a GPU asked for and absent
is a one-line error before anything is created (no run, no store). Imports torch only when it must ask
it, so the CLIs check before they open a store."""

from __future__ import annotations

from ganlab.errors import ConfigError

GPU_NAMES = ("gpu", "cuda")  # cuda: the GPU by torch's name for it


def require_available(name: str) -> None:
    """A one-line ConfigError when ``name`` asks for a GPU this machine lacks; no torch import otherwise."""
    if name in GPU_NAMES:
        resolve_accelerator(name)


def resolve_accelerator(name: str) -> str:
    """The Lightning accelerator for train.accelerator; a one-line ConfigError when a GPU is asked for and absent."""
    import torch

    if name in GPU_NAMES:
        if not torch.cuda.is_available():
            raise ConfigError(f"train.accelerator={name!r} but no CUDA device is available; use cpu or auto")
        return "gpu"
    if name == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return name
