"""Animated GIFs over training (matplotlib's FuncAnimation + PillowWriter), for any kind of frame."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.figure import Figure


def write_gif(fig: Figure, draw: Callable[[int], None], frames: int, path: str | Path, fps: int = 4,
              dpi: int = 80) -> Path:
    """Call ``draw(i)`` for each frame on the same figure (fixed axes, so frames compare) and save a GIF.

    The figure's layout is computed on the first frame, then kept: laying it out again for every
    frame took a quarter of the GIF's time, and could only make the axes jitter between frames."""
    path = Path(path)

    def draw_frame(i: int) -> None:
        draw(i)
        if i == 0 and fig.get_layout_engine() is not None:
            fig.canvas.draw()
            fig.set_layout_engine("none")

    FuncAnimation(fig, draw_frame, frames=frames).save(path, writer=PillowWriter(fps=fps), dpi=dpi)
    plt.close(fig)
    return path
