"""1D figures: generated histogram over the target pdf with D's output (as S3 draws it), metric curves."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ganlab.data.targets_1d import Target1D
from ganlab.frames import HistogramFrame
from ganlab.plots.curves import training_curves_figure

BINS = 80


def histogram_frame(samples: np.ndarray, target: Target1D, iteration: int | None,
                    curve: Callable[[np.ndarray], np.ndarray | None]) -> HistogramFrame:
    lo, hi = target.plot_range()
    edges = np.linspace(lo, hi, BINS + 1)
    counts, _ = np.histogram(samples, bins=edges)
    density = counts / (max(samples.size, 1) * np.diff(edges))
    xs = np.linspace(lo, hi, 400)
    outside = float(np.mean((samples < lo) | (samples > hi))) if samples.size else 0.0
    return HistogramFrame(iteration, edges, density, xs, curve(xs), outside)


def draw_histogram(ax, frame: HistogramFrame, target: Target1D, ymax: float | None = None):
    """Draw one frame on ``ax``; returns D's twin axis (or None) so animations can redraw it."""
    ax.clear()
    ax.stairs(frame.density, frame.edges, fill=True, alpha=0.5, color="tab:orange", label="generated")
    ax.plot(frame.xs, target.pdf(frame.xs), color="tab:blue", lw=2, label="target pdf")
    ax.set_xlim(frame.edges[0], frame.edges[-1])
    ax.set_ylim(0, ymax or 1.3 * max(float(target.pdf(frame.xs).max()), float(frame.density.max())))
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    title = f"iteration {frame.iteration}" if frame.iteration is not None else ""
    if frame.outside > 0.001:
        title += f"  ({frame.outside:.1%} of samples outside the plot)"
    ax.set_title(title)
    if frame.d_curve is not None:
        ax.plot(frame.xs, frame.d_curve, color="tab:green", lw=1.5, ls="--", label="D(x)")
        ax.axhline(0.5, color="gray", lw=0.5)
    ax.legend(loc="upper right")


def histogram_figure(frame: HistogramFrame, target: Target1D, metrics: dict[str, float] | None = None) -> Figure:
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    # D(x) shares the axis: room for its 0-1 range when it is drawn, else fitted to the densities
    floor = 1.0 if frame.d_curve is not None else 0.0
    ymax = 1.3 * max(float(target.pdf(frame.xs).max()), float(frame.density.max()), floor)
    draw_histogram(ax, frame, target, ymax)
    if metrics:
        ax.text(0.01, 0.97, f"KS {metrics['ks']:.3f}\nW1/std {metrics['w1_over_std']:.3f}",
                transform=ax.transAxes, va="top", fontsize=9)
    return fig


def metric_curves_figure(rows: list[dict[str, float]], target: Target1D) -> Figure:
    """KS and W1/std (log scale), mean and std against the target's, D's outputs and the losses."""

    def quality(left, right, it, col) -> None:
        left.semilogy(it, np.maximum(col("ks"), 1e-6), label="KS")
        left.semilogy(it, np.maximum(col("w1_over_std"), 1e-6), label="W1 / target std")
        left.set_title("distance to target (lower is better)")
        left.legend()
        right.plot(it, col("mean"), label="generated mean")
        right.plot(it, col("std"), label="generated std")
        right.axhline(target.mean, color="tab:blue", ls=":", label=f"target mean {target.mean:g}")
        right.axhline(target.std, color="tab:orange", ls=":", label=f"target std {target.std:g}")
        right.set_title("moments")
        right.legend(fontsize=8)

    return training_curves_figure(rows, quality)


def close(fig: Figure) -> None:
    plt.close(fig)
