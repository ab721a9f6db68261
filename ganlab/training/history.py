"""A run's history: metric rows per evaluated iteration and plot frames per plotted iteration, and
their checkpoint form (tensors, numbers, strings, lists and dicts only, so ``weights_only`` loads it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ganlab.frames import FRAME_TYPES, Frame


@dataclass
class History:
    """Metric values per evaluated iteration, and plot frames per plotted iteration."""

    rows: list[dict[str, float]] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)

    def last(self) -> dict[str, float]:
        return self.rows[-1] if self.rows else {}

    def state(self) -> dict[str, Any]:
        """What a checkpoint stores of the history."""
        return {"history_rows": self.rows, "history_frames": _plain(self.frames)}

    def restore(self, state: dict[str, Any]) -> None:
        """Replace this history with the one a checkpoint stored."""
        self.rows[:] = state["history_rows"]
        self.frames[:] = _unplain(state["history_frames"])


def _plain(value: Any) -> Any:
    """Numpy arrays -> tensors and frames -> tagged dicts, recursively: what weights_only allows."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if dataclasses.is_dataclass(value) and type(value).__name__ in FRAME_TYPES:
        fields = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"__frame__": type(value).__name__, **fields}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _unplain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, dict) and "__frame__" in value:
        fields = {k: _unplain(v) for k, v in value.items() if k != "__frame__"}
        return FRAME_TYPES[value["__frame__"]](**fields)
    if isinstance(value, list):
        return [_unplain(v) for v in value]
    if isinstance(value, dict):
        return {k: _unplain(v) for k, v in value.items()}
    return value
