"""Typed schema of every config group, registered in Hydra's ConfigStore.

Each YAML option under ``conf/<group>/`` names its schema in its defaults list, so Hydra
rejects unknown keys and wrong types at composition time, before anything trains.
Value ranges and cross-group rules that a type cannot express live in ``validate.py``.

One source of defaults: a field the YAML options set is ``MISSING`` here (the YAML holds the value);
only fields no option sets keep a default here (e.g. an MLP's dropout), so no number is written twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional  # noqa: UP035 -- OmegaConf reads typing.Dict and Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


# --- data: the target distribution -------------------------------------------------------
@dataclass
class GaussianTargetConfig:
    name: str = MISSING
    mean: float = MISSING
    std: float = MISSING


@dataclass
class MixtureTargetConfig:
    name: str = MISSING
    weights: list[float] = MISSING
    means: list[float] = MISSING
    stds: list[float] = MISSING


@dataclass
class RingTargetConfig:
    """PacGAN/VEEGAN's ring: ``count`` Gaussians evenly spaced on a circle."""

    name: str = MISSING
    count: int = MISSING
    radius: float = MISSING
    std: float = MISSING


@dataclass
class GridTargetConfig:
    """PacGAN/VEEGAN's grid: side x side Gaussians ``spacing`` apart, centred on 0."""

    name: str = MISSING
    side: int = MISSING
    spacing: float = MISSING
    std: float = MISSING


@dataclass
class PictureOptions:
    """How pictures become densities: the box they cover = [xmin, xmax, ymin, ymax] (S4: [0, 1]^2),
    sub-pixel jitter, and the size large pictures are shrunk to."""

    box: list[float] = MISSING
    jitter: float = MISSING
    max_side: int = MISSING


@dataclass
class PictureTargetConfig(PictureOptions):
    """A grayscale picture as a density (white = more mass)."""

    name: str = MISSING
    path: str = MISSING


@dataclass
class ConditionalPictureTargetConfig(PictureOptions):
    """Several pictures on one box, one class each (S4's conditional GAN)."""

    name: str = MISSING
    paths: list[str] = MISSING


@dataclass
class ImageDatasetConfig:
    """An image dataset read from local files (never downloaded): digits (scikit-learn's bundled 8x8
    digits), mnist (the four IDX files in ``root``), cifar10 (the python batches in ``root``)."""

    name: str = MISSING
    root: str | None = MISSING  # the folder with the dataset's files (mnist, cifar10)
    holdout: float = MISSING  # digits: the share of each class held out for the quality metric


# --- noise: the generator's input -------------------------------------------------------
@dataclass
class UniformNoiseConfig:
    name: str = MISSING
    dim: int | None = MISSING  # None: the data's dimension
    low: float = MISSING
    high: float = MISSING


@dataclass
class NormalNoiseConfig:
    name: str = MISSING
    dim: int | None = MISSING  # None: the data's dimension
    mean: float = MISSING
    std: float = MISSING


@dataclass
class StratifiedNoiseConfig:
    """S3: an evenly spaced grid over [low, high] plus a small uniform jitter."""

    name: str = MISSING
    dim: int | None = MISSING  # None: the data's dimension
    low: float = MISSING
    high: float = MISSING
    jitter: float = MISSING


@dataclass
class AutoNoiseConfig:
    """noise=auto: the sampler is picked from the data's family at composition (see compose.py).
    Any value typed here is kept, if the picked sampler has that key."""

    name: str = MISSING
    dim: int | None = MISSING  # None: the data's dimension
    low: float | None = None
    high: float | None = None
    mean: float | None = None
    std: float | None = None
    jitter: float | None = None


# --- preprocess: what the discriminator sees ---------------------------------------------
@dataclass
class PreprocessConfig:
    name: str = MISSING
    # samples per D input for batch transforms; 0 = the whole batch (S1); preprocess=auto's null: 128,
    # or the largest divisor of train.batch_size below it
    group_size: Optional[int] = 0  # noqa: UP045 -- OmegaConf reads typing.Optional


@dataclass
class PackPreprocessConfig:
    """PacGAN: ``m`` samples concatenated into one D input (S1's `raw` is m = the whole batch)."""

    name: str = MISSING
    m: int = MISSING


@dataclass
class CenteredPreprocessConfig(PreprocessConfig):
    """S1's 'diffs' and 'variances': keep_raw=False is the 'remove raw data' switch."""

    keep_raw: bool = MISSING


# --- model: generator and discriminator networks -----------------------------------------
@dataclass
class MLPConfig:
    hidden: list[int] = MISSING
    activations: list[str] = MISSING
    output_activation: str = "none"
    init: str = MISSING
    init_std: float = 0.02
    batch_norm: list[bool] = field(default_factory=list)  # per hidden layer, between Linear and activation; []: none
    dropout: float = 0.0  # after each hidden activation (S5: 0.2)
    fourier_features: int = 0  # D only: lift each input point to [x, sin, cos] of this many random projections
    fourier_scale: float = 10.0  # their frequencies' spread, in cycles per unit of the data


@dataclass
class ModelConfig:
    name: str = MISSING
    g: MLPConfig = field(default_factory=MLPConfig)
    d: MLPConfig = field(default_factory=MLPConfig)
    # G and D work in the target's standard units (nets/data_units.py); null (the 1D recipe's): on when
    # the target knows its mean and std and G's output is unbounded
    standardize: Optional[bool] = False  # noqa: UP045 -- OmegaConf reads typing.Optional


@dataclass
class MinibatchModelConfig(ModelConfig):
    """Per-sample D whose last hidden features go through a minibatch-discrimination layer."""

    name: str = MISSING
    kernels: int = MISSING
    kernel_dim: int = MISSING
    minibatch_init_std: float = MISSING


# --- optim -------------------------------------------------------------------------------
@dataclass
class OptimConfig:
    name: str = MISSING
    d_lr: float = MISSING
    g_lr: float = MISSING
    schedule: str = MISSING
    final_lr_fraction: float = MISSING
    short_run_reference: int = MISSING  # shorter runs raise both lrs by this / iterations, at most x4; 0: off


@dataclass
class SGDConfig(OptimConfig):
    name: str = MISSING
    momentum: float = MISSING


@dataclass
class AdamConfig(OptimConfig):
    name: str = MISSING
    beta1: float = MISSING
    beta2: float = MISSING


# --- train -------------------------------------------------------------------------------
@dataclass
class TrainConfig:
    iterations: int = MISSING
    d_steps: int = MISSING
    g_steps: int = MISSING
    batch_size: int = MISSING
    loss: str = MISSING
    label_smoothing: float = MISSING
    seed: int = MISSING
    seeds: int = MISSING  # > 1: train seeds seed .. seed + seeds - 1 together (a population)
    eval_every: int = MISSING
    plot_every: int = MISSING
    eval_samples: int = MISSING
    ema_decay: float = MISSING
    r1_gamma: float = MISSING
    accelerator: str = MISSING
    threads: int = MISSING
    ckpt_every: int = MISSING  # checkpoint every this many iterations and at the end; 0: never
    ckpt_keep: int = MISSING  # how many of the newest checkpoints the run keeps


@dataclass
class TrackingConfig:
    uri: str | None = MISSING
    experiment: str | None = MISSING
    register: str | None = MISSING  # a Model Registry name: the run's generator becomes its next version
    system_metrics: bool = MISSING  # MLflow's system metrics (CPU, memory, GPU) every 10 s


@dataclass
class Config:
    data: Any = MISSING
    noise: Any = MISSING
    preprocess: Any = MISSING
    model: Any = MISSING
    optim: Any = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    # which conf/recipe files specialised this run (slot -> file), set by those files; {} for none
    applied_recipe: Dict[str, str] = field(default_factory=dict)  # noqa: UP006 -- OmegaConf reads typing.Dict


SCHEMAS: dict[str, dict[str, type]] = {
    "data": {"gaussian_1d": GaussianTargetConfig, "mixture_1d": MixtureTargetConfig, "ring8": RingTargetConfig,
             "grid25": GridTargetConfig, "image_density": PictureTargetConfig,
             "conditional_image_density": ConditionalPictureTargetConfig, "image_dataset": ImageDatasetConfig},
    "noise": {"uniform": UniformNoiseConfig, "normal": NormalNoiseConfig, "stratified": StratifiedNoiseConfig,
              "auto": AutoNoiseConfig},
    "preprocess": {"preprocess": PreprocessConfig, "preprocess_centered": CenteredPreprocessConfig,
                   "preprocess_pack": PackPreprocessConfig},
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
