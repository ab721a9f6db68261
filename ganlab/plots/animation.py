"""Animated GIF of the generated histogram over training (matplotlib's FuncAnimation + PillowWriter)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.animation import FuncAnimation, PillowWriter

from ganlab.data.targets_1d import Target1D
from ganlab.plots.plots_1d import HistogramFrame, draw_histogram


def histogram_animation(frames: list[HistogramFrame], target: Target1D, path: str | Path, fps: int = 4) -> Path:
    """Write one GIF frame per plotted iteration, on fixed axes so frames compare."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
    ymax = 1.3 * max(max(float(f.density.max()) for f in frames), float(target.pdf(frames[0].xs).max()), 1.0)
    anim = FuncAnimation(fig, lambda i: draw_histogram(ax, frames[i], target, ymax), frames=len(frames))
    anim.save(path, writer=PillowWriter(fps=fps), dpi=80)
    plt.close(fig)
    return path
