"""Every target of the ``data`` config group: its name, its dimension, and how to build it."""

from __future__ import annotations

from pathlib import Path

from ganlab.data.targets_1d import Gaussian1D, Mixture1D, Target1D
from ganlab.data.targets_2d import (
    ConditionalImageDensity,
    GaussianMixture2D,
    ImageDensity,
    ImageDensityError,
    Target2D,
    grid_means,
    load_density_image,
    ring_means,
)
from ganlab.data.targets_images import IMAGE_DATASETS, IMAGE_SHAPES, ImageDataset, load_image_dataset

Target = Target1D | Target2D | ImageDataset

TARGET_DIMS = {"gaussian_1d": 1, "mixture_1d": 1, "ring8": 2, "grid25": 2, "image_density": 2,
               "conditional_image_density": 2,
               **{name: int(c * h * w) for name, (c, h, w) in IMAGE_SHAPES.items()}}
TARGET_NAMES = tuple(TARGET_DIMS)
CONDITIONAL_TARGETS = ("conditional_image_density", *IMAGE_DATASETS)


def _image(cfg, path: str) -> ImageDensity:
    return ImageDensity(load_density_image(path, cfg.max_side), cfg.box, cfg.jitter)


def build_target(cfg) -> Target:
    """Build the target named by a ``data`` config node (raises ImageDensityError for a bad picture,
    DatasetFileError for missing or broken dataset files)."""
    name = cfg.name
    if name in IMAGE_DATASETS:
        root = None if cfg.root is None else str(Path(cfg.root).expanduser())
        return load_image_dataset(name, root, cfg.holdout)
    if name == "gaussian_1d":
        return Gaussian1D(cfg.mean, cfg.std)
    if name == "mixture_1d":
        return Mixture1D(cfg.weights, cfg.means, cfg.stds)
    if name == "ring8":
        return GaussianMixture2D(ring_means(cfg.count, cfg.radius), cfg.std)
    if name == "grid25":
        return GaussianMixture2D(grid_means(cfg.side, cfg.spacing), cfg.std)
    if name == "image_density":
        return _image(cfg, cfg.path)
    if name == "conditional_image_density":
        images = [_image(cfg, path) for path in cfg.paths]
        shapes = {image.weights.shape for image in images}
        if len(shapes) > 1:
            raise ImageDensityError(f"data.paths={list(cfg.paths)}: the class pictures differ in size "
                                    f"{sorted(shapes)}; they must share one pixel grid")
        return ConditionalImageDensity(images)
    raise ValueError(f"unknown data '{name}'; allowed: {', '.join(TARGET_NAMES)}")
