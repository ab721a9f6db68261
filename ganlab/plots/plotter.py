"""One small interface for the figures of each kind of target, so the training loop and its monitor
never ask which kind they are plotting: a frame per plotted iteration, its figure, an animation of
all frames, and the metric curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ganlab.data.image_datasets import ImageDataset
from ganlab.data.targets import Target
from ganlab.frames import DecisionFn
from ganlab.plots.animation import write_gif
from ganlab.plots.plots_1d import draw_histogram, histogram_figure, histogram_frame, metric_curves_figure
from ganlab.plots.plots_2d import draw_panels, metric_curves_figure_2d, new_figure, scatter_figure, scatter_frame
from ganlab.plots.plots_images import draw_grid, grid_figure, grid_frame, metric_curves_figure_images


class Plotter1D:
    """Histogram over the exact pdf with D(x) as a curve (S3's plot)."""

    animation_name = "histogram"

    def __init__(self, target: Target) -> None:
        self.target = target

    def frame(self, samples: np.ndarray, labels: np.ndarray | None, iteration: int | None, decision: DecisionFn):
        def curve(xs: np.ndarray) -> np.ndarray | None:
            return decision(xs[:, None], None)

        return histogram_frame(samples.ravel(), self.target, iteration, curve)

    def figure(self, frame, metrics: dict[str, float]) -> Figure:
        return histogram_figure(frame, self.target, metrics)

    def animate(self, frames: list, path: Path) -> Path:
        fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
        ymax = 1.3 * max(max(float(f.density.max()) for f in frames),
                         float(self.target.pdf(frames[0].xs).max()), 1.0)
        return write_gif(fig, lambda i: draw_histogram(ax, frames[i], self.target, ymax), len(frames), path)

    def metric_curves(self, rows: list[dict[str, float]]) -> Figure:
        return metric_curves_figure(rows, self.target)


class Plotter2D:
    """Samples over the target (picture or modes), D's contours, one panel per class if conditional."""

    animation_name = "samples"

    def __init__(self, target: Target) -> None:
        self.target = target

    def frame(self, samples: np.ndarray, labels: np.ndarray | None, iteration: int | None, decision: DecisionFn):
        return scatter_frame(samples, labels, self.target, iteration, decision)

    def figure(self, frame, metrics: dict[str, float]) -> Figure:
        return scatter_figure(frame, self.target, metrics)

    def animate(self, frames: list, path: Path) -> Path:
        fig, axes = new_figure(frames[0], size=3.5)
        return write_gif(fig, lambda i: draw_panels(axes, frames[i], self.target), len(frames), path)

    def metric_curves(self, rows: list[dict[str, float]]) -> Figure:
        return metric_curves_figure_2d(rows, self.target)


class PlotterImages:
    """A grid of generated images from fixed noise (a row per class if conditional); D has no map."""

    animation_name = "grid"

    def __init__(self, target: ImageDataset) -> None:
        self.target = target

    def frame(self, samples: np.ndarray, labels: np.ndarray | None, iteration: int | None, decision: DecisionFn):
        return grid_frame(samples, labels, self.target, iteration)

    def figure(self, frame, metrics: dict[str, float]) -> Figure:
        return grid_figure(frame, metrics)

    def animate(self, frames: list, path: Path) -> Path:
        fig, ax = plt.subplots(figsize=(4, 4), layout="constrained")
        return write_gif(fig, lambda i: draw_grid(ax, frames[i]), len(frames), path)

    def metric_curves(self, rows: list[dict[str, float]]) -> Figure:
        return metric_curves_figure_images(rows)


Plotter = Plotter1D | Plotter2D | PlotterImages


def build_plotter(target: Target) -> Plotter:
    if isinstance(target, ImageDataset):
        return PlotterImages(target)
    return Plotter1D(target) if target.dim == 1 else Plotter2D(target)
