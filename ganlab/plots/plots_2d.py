"""2D figures: generated samples over the target (the picture itself, or the mixture's modes), D's
output as contours, classes in colour; and the metric curves of a 2D run."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from ganlab.data.targets_2d import ConditionalPictureDensity, GaussianMixture2D, PictureDensity, Target2D
from ganlab.frames import DecisionFn, ScatterFrame
from ganlab.metrics.metrics_2d import HQ_STDS, PAPER_SAMPLES
from ganlab.plots.curves import training_curves_figure

POINTS = 2000  # samples drawn per frame: enough to see the shape, few enough to see single points
GRID = 80  # D is evaluated on GRID x GRID points for its contours
CLASS_COLORS = plt.get_cmap("tab10").colors

def _grid(target: Target2D) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xmin, xmax, ymin, ymax = target.box()
    xs, ys = np.linspace(xmin, xmax, GRID), np.linspace(ymin, ymax, GRID)
    xx, yy = np.meshgrid(xs, ys)
    return xx, yy, np.stack([xx.ravel(), yy.ravel()], axis=1)


def panel_classes(target: Target2D, conditional: bool) -> list[int | None]:
    """The panels a figure shows: all samples, then one per class for a conditional model."""
    if conditional and isinstance(target, ConditionalPictureDensity):
        return [None, *range(target.classes)]
    return [None]


def scatter_frame(samples: np.ndarray, labels: np.ndarray | None, target: Target2D, iteration: int | None,
                  decision: DecisionFn) -> ScatterFrame:
    xmin, xmax, ymin, ymax = target.box()
    inside = (samples[:, 0] >= xmin) & (samples[:, 0] <= xmax) & (samples[:, 1] >= ymin) & (samples[:, 1] <= ymax)
    _, _, points = _grid(target)
    maps = [decision(points, k) for k in panel_classes(target, labels is not None)]
    maps = [None if m is None else m.reshape(GRID, GRID) for m in maps]
    return ScatterFrame(iteration, samples[:POINTS], None if labels is None else labels[:POINTS], maps,
                        float(1 - inside.mean()) if len(samples) else 0.0)


def _background(ax, target: Target2D, label: int | None) -> None:
    xmin, xmax, ymin, ymax = target.box()
    if isinstance(target, ConditionalPictureDensity):
        image = target.union if label is None else target.images[label]
        ax.imshow(image.weights, extent=(xmin, xmax, ymin, ymax), cmap="gray", vmin=0, vmax=1, origin="upper")
    elif isinstance(target, PictureDensity):
        ax.imshow(target.weights, extent=(xmin, xmax, ymin, ymax), cmap="gray", vmin=0, vmax=1, origin="upper")
    elif isinstance(target, GaussianMixture2D):
        for mean in target.means:  # the high-quality region of each mode
            ax.add_patch(Circle(tuple(mean), HQ_STDS * target.std, color="tab:blue", alpha=0.35, lw=0))
        # the modes' centres above the samples (zorder), which used to hide them
        ax.scatter(target.means[:, 0], target.means[:, 1], marker="+", color="black", s=40, lw=1.2, zorder=3)


def draw_panels(axes, frame: ScatterFrame, target: Target2D) -> None:
    """Draw a frame on its panels (one axis per entry of ``frame.decision``)."""
    xx, yy, _ = _grid(target)
    xmin, xmax, ymin, ymax = target.box()
    classes = panel_classes(target, frame.labels is not None)
    for ax, label, decision in zip(axes, classes, frame.decision, strict=True):
        ax.clear()
        _background(ax, target, label)
        if decision is not None:
            contours = ax.contour(xx, yy, decision, levels=np.linspace(0.1, 0.9, 9), cmap="coolwarm",
                                  linewidths=0.8, vmin=0, vmax=1)
            ax.clabel(contours, contours.levels[::4], fontsize=6)
        points, labels = frame.points, frame.labels
        if labels is None:
            ax.scatter(points[:, 0], points[:, 1], s=2, color="tab:orange", alpha=0.6)
        elif label is None:
            colors = np.array(CLASS_COLORS)[labels % len(CLASS_COLORS)]
            ax.scatter(points[:, 0], points[:, 1], s=2, c=colors, alpha=0.6)
        else:
            mine = points[labels == label]
            ax.scatter(mine[:, 0], mine[:, 1], s=2, color=CLASS_COLORS[label % len(CLASS_COLORS)], alpha=0.6)
        ax.set_xlim(xmin, xmax)
        ax.set_ylim(ymin, ymax)
        ax.set_aspect("equal")
        ax.set_title("all classes" if label is None and labels is not None else
                     f"class {label}" + (f": D(x | {label})" if decision is not None else "") if label is not None
                     else "samples" + (", D(x) contours" if decision is not None else ""),
                     fontsize=9)
    title = f"iteration {frame.iteration}" if frame.iteration is not None else ""
    if frame.outside > 0.001:
        title += f"  ({frame.outside:.1%} of samples outside the box)"
    axes[0].figure.suptitle(title, fontsize=10)


def new_figure(frame: ScatterFrame, size: float = 4.0) -> tuple[Figure, list]:
    panels = len(frame.decision)
    fig, axes = plt.subplots(1, panels, figsize=(size * panels, size), layout="constrained", squeeze=False)
    return fig, list(axes[0])


def scatter_figure(frame: ScatterFrame, target: Target2D, metrics: dict[str, float] | None = None) -> Figure:
    from ganlab.metrics import headline

    fig, axes = new_figure(frame)
    draw_panels(axes, frame, target)
    if metrics:
        fig.suptitle(f"{fig.get_suptitle()}\n{headline(metrics)}", fontsize=9)
    return fig


def metric_curves_figure_2d(rows: list[dict[str, float]], target: Target2D) -> Figure:
    """Sliced W1 (log), mode coverage or off-density share, D's outputs and the losses over training."""
    keys = set(rows[0])

    def quality(left, right, it, col) -> None:
        left.semilogy(it, np.maximum(col("sliced_w1"), 1e-6), label="sliced W1, all")
        for key in sorted(k for k in keys if k.startswith("sliced_w1_class")):
            left.semilogy(it, np.maximum(col(key), 1e-6), label=key.replace("sliced_w1_", ""), lw=1)
        left.set_title("distance to target (lower is better)")
        left.legend(fontsize=8)
        if "modes" in keys:
            modes = len(target.means)
            right.plot(it, col("modes") / modes, label=f"modes captured / {modes}")
            right.plot(it, col("hq_share"), label="high-quality share")
            right.plot(it, np.minimum(col("reverse_kl"), 2), label="reverse KL (capped at 2)")
            right.set_title(f"mode coverage on {PAPER_SAMPLES} samples")
        else:
            for key in sorted(k for k in keys if k.startswith("off_density")):
                right.plot(it, col(key), label=key.replace("off_density", "off density").replace("_", " "))
            right.set_title("share of samples where the picture is black")
        right.legend(fontsize=8)

    return training_curves_figure(rows, quality)
