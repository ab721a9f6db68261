"""Image figures: a grid of generated images from fixed noise (one row per class for a conditional
G), and the metric curves of an image run."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ganlab.data.image_datasets import ImageDataset
from ganlab.frames import ImageGridFrame
from ganlab.plots.curves import training_curves_figure

GRID_SIDE = 8  # 8 x 8 images per frame


def grid_frame(samples: np.ndarray, labels: np.ndarray | None, dataset: ImageDataset,
               iteration: int | None) -> ImageGridFrame:
    """The first 64 samples of the fixed evaluation batch (so frames compare), or, for a conditional
    G, the first 8 of each of up to 8 classes, one class per row."""
    if labels is None:
        picked, row_labels = np.arange(min(len(samples), GRID_SIDE * GRID_SIDE)), None
    else:
        classes = [k for k in range(dataset.classes) if (labels == k).sum() >= GRID_SIDE][:GRID_SIDE]
        picked = np.concatenate([np.flatnonzero(labels == k)[:GRID_SIDE] for k in classes])
        row_labels = np.array(classes)
    images = (dataset.to_images(samples[picked]) * 255).round().astype(np.uint8)
    return ImageGridFrame(iteration, images, row_labels)


def grid_mosaic(frame: ImageGridFrame) -> np.ndarray:
    """The frame's images tiled into one (rows*(H+1)-1, cols*(W+1)-1, C) picture with 1-pixel gaps."""
    n, h, w, c = frame.images.shape
    cols = GRID_SIDE if frame.row_labels is None else min(GRID_SIDE, n // max(len(frame.row_labels), 1))
    rows = -(-n // cols)
    mosaic = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1, c), 255, dtype=np.uint8)
    for i, image in enumerate(frame.images):
        r, q = divmod(i, cols)
        mosaic[r * (h + 1):r * (h + 1) + h, q * (w + 1):q * (w + 1) + w] = image
    return mosaic


def draw_grid(ax, frame: ImageGridFrame) -> None:
    ax.clear()
    mosaic = grid_mosaic(frame)
    if mosaic.shape[2] == 1:
        ax.imshow(mosaic[:, :, 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([])
    if frame.row_labels is None:
        ax.set_yticks([])
    else:
        h = frame.images.shape[1]
        ax.set_yticks([r * (h + 1) + h / 2 for r in range(len(frame.row_labels))],
                      [f"class {k}" for k in frame.row_labels], fontsize=7)
    if frame.iteration is not None:
        ax.set_title(f"iteration {frame.iteration}", fontsize=10)


def grid_figure(frame: ImageGridFrame, metrics: dict[str, float] | None = None) -> Figure:
    from ganlab.metrics import headline

    fig, ax = plt.subplots(figsize=(5, 5), layout="constrained")
    draw_grid(ax, frame)
    if metrics:
        fig.suptitle(headline(metrics), fontsize=9)
    return fig


def metric_curves_figure_images(rows: list[dict[str, float]]) -> Figure:
    """Frechet distance (log), class coverage, D's outputs and the losses over training."""

    def quality(left, right, it, col) -> None:
        left.semilogy(it, np.maximum(col("frechet_distance"), 1e-6), label="Frechet distance (classifier features)")
        left.set_title("distance to held-out images (lower is better)")
        left.legend(fontsize=8)
        right.plot(it, col("class_kl"), label="KL(generated classes || real)")
        if "label_accuracy" in rows[0]:
            right.plot(it, col("label_accuracy"), label="label accuracy (conditional)")
        right.set_title("class coverage")
        right.legend(fontsize=8)

    return training_curves_figure(rows, quality)
