"""The metric-curves figure every kind of run shares: two panels of the target's own quality
metrics on top, D's outputs and the losses below."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

Column = Callable[[str], np.ndarray]


def columns(rows: list[dict[str, float]]) -> tuple[np.ndarray, Column]:
    """The iterations, and a getter for one metric's values (NaN where a row lacks it)."""
    it = np.array([r["iteration"] for r in rows])

    def col(key: str) -> np.ndarray:
        return np.array([r.get(key, np.nan) for r in rows], dtype=float)

    return it, col


def training_curves_figure(rows: list[dict[str, float]],
                           draw_quality: Callable[[Axes, Axes, np.ndarray, Column], None]) -> Figure:
    """A 2 x 2 figure: ``draw_quality`` fills the top row; mean D(x), D(G(z)) and the losses go below."""
    it, col = columns(rows)
    fig, axes = plt.subplots(2, 2, figsize=(10, 6), layout="constrained", sharex=True)
    draw_quality(axes[0, 0], axes[0, 1], it, col)
    ax = axes[1, 0]
    ax.plot(it, col("d_real"), label="mean D(x)")
    ax.plot(it, col("d_fake"), label="mean D(G(z))")
    ax.axhline(0.5, color="gray", lw=0.5)
    ax.set_ylim(0, 1)
    ax.set_title("discriminator output")
    ax.legend()
    ax = axes[1, 1]
    ax.plot(it, col("loss_d"), label="D loss")
    ax.plot(it, col("loss_g"), label="G loss")
    ax.set_title("losses (last iteration)")
    ax.legend()
    for ax in axes[1]:
        ax.set_xlabel("iteration")
    return fig
