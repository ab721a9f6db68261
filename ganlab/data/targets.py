"""The target registry (config group ``data``): each target's name, dimension, value checks and builder.

Validation, composition-time defaults (noise size, the automatic preprocess) and the training run
all read this one table; adding a target is one ``TARGETS.add`` call here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import ListConfig

from ganlab.data.image_datasets import IMAGE_SHAPES, ImageDataset, load_image_dataset
from ganlab.data.pictures import load_picture
from ganlab.data.targets_1d import Gaussian1D, Mixture1D, Target1D
from ganlab.data.targets_2d import (
    ConditionalPictureDensity,
    GaussianMixture2D,
    PictureDensity,
    Target2D,
    grid_means,
    ring_means,
)
from ganlab.errors import PictureError, require, require_positive
from ganlab.registry import Registry

Target = Target1D | Target2D | ImageDataset


@dataclass(frozen=True)
class TargetEntry:
    """How to check and build one target. ``family`` (1d, 2d, images) picks composition-time defaults;
    ``standard_units``: the target knows its mean and std per coordinate (``model.standardize``)."""

    build: Callable[[Any], Target]
    check: Callable[[Any], None]
    dim: int
    family: str
    conditional: bool = False
    standard_units: bool = False


TARGETS: Registry[TargetEntry] = Registry("data.name")


def build_target(cfg) -> Target:
    """Build the target named by a ``data`` config node (raises PictureError for a bad picture,
    DatasetFileError for missing or broken dataset files)."""
    return TARGETS[cfg.name].build(cfg)


def target_dim(name: str) -> int:
    return TARGETS[name].dim


# Training runs in float32 (24-bit significands): data much larger or smaller than these, or whose
# spread is below a millionth of its location (samples then sit a few float32 steps apart: N(10^4,
# 0.01^2) already floors KS at ~0.024, docs/recipes.md), cannot be learned or measured, and failed
# deep inside training (NaN losses, plots with NaN axes) before this was checked.
LARGEST_SCALE, SMALLEST_SCALE, SMALLEST_RELATIVE_SPREAD = 1e6, 1e-6, 1e-6


def _check_scale(location_key: str, location: Any, largest: float, spread_key: str, spread: Any) -> None:
    """The data's location (``location_key`` as typed; ``largest``: the farthest point it puts a mode at)
    and spread (a std, or a list of them) within what float32 training handles."""
    require(largest <= LARGEST_SCALE, location_key, location,
            f"must be within +-{LARGEST_SCALE:g} (training runs in float32; rescale the data)")
    for s in (list(spread) if isinstance(spread, Sequence | ListConfig) else [spread]):
        require(SMALLEST_SCALE <= s <= LARGEST_SCALE, spread_key, spread,
                f"must be between {SMALLEST_SCALE:g} and {LARGEST_SCALE:g} "
                "(training runs in float32; rescale the data)")
        require(s >= SMALLEST_RELATIVE_SPREAD * largest, spread_key, spread,
                f"must be at least {SMALLEST_RELATIVE_SPREAD:g} x the data's largest coordinate ({largest:g}, "
                f"from {location_key}): smaller, samples are a few float32 steps apart")


# ---------------------------------------------------------------------------------------------- 1D
def _check_gaussian(data) -> None:
    require(data.mean == data.mean and abs(data.mean) != float("inf"), "data.mean", data.mean,
            "must be a finite number")
    require_positive(data, "data", "std")
    _check_scale("data.mean", data.mean, abs(data.mean), "data.std", data.std)


def _check_mixture(data) -> None:
    n = len(data.weights)
    require(n > 0, "data.weights", list(data.weights), "a mixture needs at least one component")
    for key in ("means", "stds"):
        require(len(data[key]) == n, f"data.{key}", list(data[key]), f"needs {n} entries, one per weight")
    require(all(w >= 0 for w in data.weights) and abs(sum(data.weights) - 1) < 1e-6, "data.weights",
            list(data.weights), "weights must be >= 0 and sum to 1")
    require(all(s > 0 for s in data.stds), "data.stds", list(data.stds), "every std must be > 0")
    _check_scale("data.means", list(data.means), max(abs(m) for m in data.means), "data.stds", list(data.stds))


TARGETS.add("gaussian_1d", TargetEntry(lambda c: Gaussian1D(c.mean, c.std), _check_gaussian, 1, "1d",
                                       standard_units=True))
TARGETS.add("mixture_1d", TargetEntry(lambda c: Mixture1D(c.weights, c.means, c.stds), _check_mixture, 1, "1d",
                                      standard_units=True))


# ------------------------------------------------------------------------------ 2D Gaussian mixtures
def _check_ring(data) -> None:
    require(data.count >= 1, "data.count", data.count, "must be >= 1")
    require_positive(data, "data", "radius", "std")
    _check_scale("data.radius", data.radius, data.radius, "data.std", data.std)


def _check_grid(data) -> None:
    require(data.side >= 1, "data.side", data.side, "must be >= 1")
    require_positive(data, "data", "spacing", "std")
    _check_scale("data.spacing", data.spacing, data.spacing * (data.side - 1) / 2, "data.std", data.std)


TARGETS.add("ring8", TargetEntry(lambda c: GaussianMixture2D(ring_means(c.count, c.radius), c.std),
                                 _check_ring, 2, "2d", standard_units=True))
TARGETS.add("grid25", TargetEntry(lambda c: GaussianMixture2D(grid_means(c.side, c.spacing), c.std),
                                  _check_grid, 2, "2d", standard_units=True))


# ---------------------------------------------------------------------------------- 2D pictures
def _picture(cfg, path: str) -> PictureDensity:
    return PictureDensity(load_picture(path, cfg.max_side), cfg.box, cfg.jitter)


def _conditional_pictures(cfg) -> ConditionalPictureDensity:
    pictures = [_picture(cfg, path) for path in cfg.paths]
    shapes = {picture.weights.shape for picture in pictures}
    if len(shapes) > 1:
        raise PictureError(f"data.paths={list(cfg.paths)}: the class pictures differ in size "
                           f"{sorted(shapes)}; they must share one pixel grid")
    return ConditionalPictureDensity(pictures)


def _check_picture(data) -> None:
    box = list(data.box)
    require(len(box) == 4 and box[0] < box[1] and box[2] < box[3], "data.box", box,
            "must be [xmin, xmax, ymin, ymax] with xmin < xmax and ymin < ymax")
    require(0 <= data.jitter <= 1, "data.jitter", data.jitter, "must be in [0, 1] (a share of one pixel)")
    require(data.max_side >= 0, "data.max_side", data.max_side, "must be >= 0; 0 keeps the picture's size")
    if "paths" in data:
        require(len(data.paths) >= 2, "data.paths", list(data.paths), "a conditional target needs >= 2 pictures")
    build_target(data)  # open the pictures now: a bad path stops the run before anything is created


TARGETS.add("image_density", TargetEntry(lambda c: _picture(c, c.path), _check_picture, 2, "2d"))
TARGETS.add("conditional_image_density", TargetEntry(_conditional_pictures, _check_picture, 2, "2d",
                                                     conditional=True))


# ------------------------------------------------------------------------------- image datasets
def _dataset(cfg) -> ImageDataset:
    root = None if cfg.root is None else str(Path(cfg.root).expanduser())
    return load_image_dataset(cfg.name, root, cfg.holdout)


def _check_dataset(data) -> None:
    require(0 < data.holdout < 1, "data.holdout", data.holdout, "must be in (0, 1): the share of images held out")
    if data.name != "digits":
        require(bool(data.root), "data.root", data.root,
                f"{data.name} is read from local files: set data.root to their folder (nothing is downloaded)")
    build_target(data)  # read the files now: a missing or broken dataset stops the run before it starts


for _name, (_c, _h, _w) in IMAGE_SHAPES.items():
    TARGETS.add(_name, TargetEntry(_dataset, _check_dataset, _c * _h * _w, "images", conditional=True))
