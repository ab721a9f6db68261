"""Plot frames: what one plotted iteration needs, kept for the run's animation and its checkpoints.

Plain dataclasses of numpy arrays (no matplotlib), so checkpoints and the history can hold them
without loading any plotting code. The plotters in ``ganlab.plots`` make and draw them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# D's probability at (m, dim) points, for one class (None: unconditional), or None when D has no
# per-point output (a packed or batch discriminator)
DecisionFn = Callable[[np.ndarray, int | None], np.ndarray | None]


@dataclass
class HistogramFrame:
    """A 1D frame: the generated histogram and D's output along x."""

    iteration: int | None  # None: not from training (ganlab.sample's plot)
    edges: np.ndarray
    density: np.ndarray
    xs: np.ndarray
    d_curve: np.ndarray | None
    outside: float  # share of samples outside the plotted range


@dataclass
class ScatterFrame:
    """A 2D frame: some generated points, their classes, and D's map per panel."""

    iteration: int | None  # None: not from training (ganlab.sample's plot)
    points: np.ndarray
    labels: np.ndarray | None
    decision: list[np.ndarray | None]  # one GRID x GRID map per panel
    outside: float  # share of all samples outside the box


@dataclass
class ImageGridFrame:
    """An image frame: (rows * cols, H, W, C) images as uint8, and each row's class (conditional) or None."""

    iteration: int | None  # None: not from training (ganlab.sample's plot)
    images: np.ndarray
    row_labels: np.ndarray | None


FRAME_TYPES = {cls.__name__: cls for cls in (HistogramFrame, ScatterFrame, ImageGridFrame)}
Frame = HistogramFrame | ScatterFrame | ImageGridFrame
