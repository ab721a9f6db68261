"""Typed schema of every config group, registered in Hydra's ConfigStore.

Each YAML option under ``conf/<group>/`` names its schema in its defaults list, so Hydra
rejects unknown keys and wrong types at composition time, before anything trains.
Value ranges and cross-group rules that a type cannot express live in ``validate.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


# --- data: the target distribution -------------------------------------------------------
@dataclass
class GaussianTargetConfig:
    name: str = "gaussian_1d"
    mean: float = 4.0
    std: float = 1.25


@dataclass
class MixtureTargetConfig:
    name: str = "mixture_1d"
    weights: list[float] = field(default_factory=lambda: [0.5, 0.5])
    means: list[float] = field(default_factory=lambda: [-2.0, 2.0])
    stds: list[float] = field(default_factory=lambda: [0.5, 0.5])


@dataclass
class RingTargetConfig:
    """PacGAN/VEEGAN's ring: ``count`` Gaussians evenly spaced on a circle."""

    name: str = "ring8"
    count: int = 8
    radius: float = 1.0
    std: float = 0.01


@dataclass
class GridTargetConfig:
    """PacGAN/VEEGAN's grid: side x side Gaussians ``spacing`` apart, centred on 0."""

    name: str = "grid25"
    side: int = 5
    spacing: float = 2.0
    std: float = 0.05


@dataclass
class PictureOptions:
    """How pictures become densities: the box they cover = [xmin, xmax, ymin, ymax] (S4: [0, 1]^2),
    sub-pixel jitter, and the size large pictures are shrunk to."""

    box: list[float] = field(default_factory=lambda: [0.0, 1.0, 0.0, 1.0])
    jitter: float = 1.0
    max_side: int = 512


@dataclass
class ImageTargetConfig(PictureOptions):
    """A grayscale picture as a density (white = more mass)."""

    name: str = "image_density"
    path: str = "zig"


@dataclass
class ConditionalImageTargetConfig(PictureOptions):
    """Several pictures on one box, one class each (S4's conditional GAN)."""

    name: str = "conditional_image_density"
    paths: list[str] = field(default_factory=lambda: ["blob_left", "blob_right"])


@dataclass
class ImageDatasetConfig:
    """An image dataset read from local files (never downloaded): digits (scikit-learn's bundled 8x8
    digits), mnist (the four IDX files in ``root``), cifar10 (the python batches in ``root``)."""

    name: str = "digits"
    root: str | None = None  # the folder with the dataset's files (mnist, cifar10)
    holdout: float = 0.2  # digits: the share of each class held out for the quality metric


# --- noise: the generator's input -------------------------------------------------------
@dataclass
class UniformNoiseConfig:
    name: str = "uniform"
    dim: int | None = None  # None: the data's dimension
    low: float = 0.0
    high: float = 1.0


@dataclass
class NormalNoiseConfig:
    name: str = "normal"
    dim: int | None = None  # None: the data's dimension
    mean: float = 0.0
    std: float = 1.0


@dataclass
class StratifiedNoiseConfig:
    """S3: an evenly spaced grid over [low, high] plus a small uniform jitter."""

    name: str = "stratified"
    dim: int | None = None  # None: the data's dimension
    low: float = -8.0
    high: float = 8.0
    jitter: float = 0.01


# --- preprocess: what the discriminator sees ---------------------------------------------
@dataclass
class PreprocessConfig:
    name: str = "none"
    group_size: int = 0  # samples per D input for batch transforms; 0 = the whole batch (S1)


@dataclass
class PackPreprocessConfig:
    """PacGAN: ``m`` samples concatenated into one D input (S1's `raw` is m = the whole batch)."""

    name: str = "pack"
    m: int = 4


@dataclass
class CenteredPreprocessConfig(PreprocessConfig):
    """S1's 'diffs' and 'variances': keep_raw=False is the 'remove raw data' switch."""

    keep_raw: bool = True


# --- model: generator and discriminator networks -----------------------------------------
@dataclass
class MLPConfig:
    hidden: list[int] = field(default_factory=lambda: [32, 32])
    activations: list[str] = field(default_factory=lambda: ["relu", "relu"])
    output_activation: str = "none"
    init: str = "default"
    init_std: float = 0.02
    batch_norm: list[bool] = field(default_factory=list)  # per hidden layer, between Linear and activation; []: none
    dropout: float = 0.0  # after each hidden activation (S5: 0.2)


@dataclass
class ModelConfig:
    name: str = "vanilla"
    g: MLPConfig = field(default_factory=MLPConfig)
    d: MLPConfig = field(default_factory=MLPConfig)


@dataclass
class MinibatchModelConfig(ModelConfig):
    """Per-sample D whose last hidden features go through a minibatch-discrimination layer."""

    name: str = "minibatch"
    kernels: int = 5
    kernel_dim: int = 3
    minibatch_init_std: float = 0.02


# --- optim -------------------------------------------------------------------------------
@dataclass
class OptimConfig:
    name: str = "adam"
    d_lr: float = 1e-3
    g_lr: float = 1e-3
    schedule: str = "none"
    final_lr_fraction: float = 0.1


@dataclass
class SGDConfig(OptimConfig):
    name: str = "sgd"
    momentum: float = 0.9


@dataclass
class AdamConfig(OptimConfig):
    name: str = "adam"
    beta1: float = 0.9
    beta2: float = 0.999


# --- train -------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    iterations: int = 3000
    d_steps: int = 1
    g_steps: int = 1
    batch_size: int = 256
    loss: str = "bce"
    label_smoothing: float = 0.0
    seed: int = 0
    eval_every: int = 100
    plot_every: int = 500
    eval_samples: int = 20000
    ema_decay: float = 0.0
    r1_gamma: float = 0.0
    accelerator: str = "cpu"
    threads: int = 1
    ckpt_every: int = 1000  # checkpoint every this many iterations and at the end; 0: never
    ckpt_keep: int = 1  # how many of the newest checkpoints the run keeps


@dataclass
class TrackingConfig:
    uri: str | None = None
    experiment: str | None = None


@dataclass
class Config:
    data: Any = None
    noise: Any = None
    preprocess: Any = None
    model: Any = None
    optim: Any = None
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


SCHEMAS: dict[str, dict[str, type]] = {
    "data": {"gaussian_1d": GaussianTargetConfig, "mixture_1d": MixtureTargetConfig, "ring8": RingTargetConfig,
             "grid25": GridTargetConfig, "image_density": ImageTargetConfig,
             "conditional_image_density": ConditionalImageTargetConfig, "image_dataset": ImageDatasetConfig},
    "noise": {"uniform": UniformNoiseConfig, "normal": NormalNoiseConfig, "stratified": StratifiedNoiseConfig},
    "preprocess": {"plain": PreprocessConfig, "centered": CenteredPreprocessConfig,
                   "pack": PackPreprocessConfig},
    "model": {"mlp": ModelConfig, "minibatch": MinibatchModelConfig},
    "optim": {"sgd": SGDConfig, "adam": AdamConfig},
    "train": {"train": TrainConfig},
    "tracking": {"tracking": TrackingConfig},
}


def register_schemas() -> None:
    """Register the schemas as ``<group>/schema_<name>`` so YAML options can extend them."""
    store = ConfigStore.instance()
    store.store(name="schema_config", node=Config)
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            store.store(group=group, name=f"schema_{name}", node=node)
