"""Animated GIFs over training (matplotlib's FuncAnimation + PillowWriter), for any kind of frame."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.figure import Figure


def write_gif(fig: Figure, draw: Callable[[int], None], frames: int, path: str | Path, fps: int = 4,
              dpi: int = 80) -> Path:
    """Call ``draw(i)`` for each frame on the same figure (fixed axes, so frames compare) and save a GIF."""
    path = Path(path)
    FuncAnimation(fig, draw, frames=frames).save(path, writer=PillowWriter(fps=fps), dpi=dpi)
    plt.close(fig)
    return path
