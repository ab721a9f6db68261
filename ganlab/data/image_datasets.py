"""Image datasets as GAN targets (S2, S5): 8x8 digits, MNIST, CIFAR-10, read from local files.

Images live as flat rows in [-1, 1] (C*H*W values, G's Tanh range), so G, D, packing, conditioning
and EMA treat them like any other target; only plots and the quality metric reshape them. Training
batches come from a real DataLoader over shuffled epochs (``ganlab.data.loaders``); ``sample`` draws
random training images for evaluation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch

from ganlab.data.image_dataset_files import ImageArrays, load_cifar10, load_digits, load_mnist

# dataset name -> its reader (root folder, held-out share) -> ImageArrays; and its image shape
READERS: dict[str, Callable[[str, float], ImageArrays]] = {
    "digits": lambda root, holdout: load_digits(holdout),  # bundled with scikit-learn: no root
    "mnist": lambda root, holdout: load_mnist(root),
    "cifar10": lambda root, holdout: load_cifar10(root),
}
IMAGE_DATASETS = tuple(READERS)
IMAGE_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def _scaled(images: np.ndarray, max_value: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 (N, C*H*W) in [-1, 1]."""
    flat = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32))
    return flat * (2.0 / max_value) - 1.0


class ImageDataset:
    """Training and held-out images of one dataset, with class labels."""

    def __init__(self, arrays: ImageArrays) -> None:
        self.name = arrays.name
        self.image_shape: tuple[int, int, int] = tuple(arrays.train_images.shape[1:])
        self.dim = int(np.prod(self.image_shape))
        self.classes = arrays.classes
        self.train = _scaled(arrays.train_images, arrays.max_value)
        self.train_labels = torch.from_numpy(arrays.train_labels.astype(np.int64))
        self.test = _scaled(arrays.test_images, arrays.max_value)
        self.test_labels = torch.from_numpy(arrays.test_labels.astype(np.int64))
        counts = torch.bincount(self.train_labels, minlength=self.classes).double()
        self.class_weights = counts / counts.sum()
        # what the cached feature classifier was trained on: the images themselves, not the path
        digest = hashlib.sha256(arrays.train_images.tobytes()).hexdigest()[:16]
        self.fingerprint = f"{self.name}-{len(self.train)}-{digest}"

    def sample_with_labels(self, n: int, device: torch.device | str = "cpu",
                           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """n training images drawn at random (with replacement) and their classes."""
        idx = torch.randint(len(self.train), (n,), generator=generator)
        return self.train[idx].to(device), self.train_labels[idx].to(device)

    def sample(self, n: int, device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> torch.Tensor:
        return self.sample_with_labels(n, device, generator)[0]

    def sample_labels(self, n: int, device: torch.device | str = "cpu",
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Classes for generated images, in the training set's proportions."""
        return torch.multinomial(self.class_weights, n, replacement=True, generator=generator).to(device)

    def to_images(self, flat: np.ndarray) -> np.ndarray:
        """Flat rows in [-1, 1] -> (n, H, W, C) in [0, 1] for plotting (values outside are clipped)."""
        images = flat.reshape(-1, *self.image_shape).transpose(0, 2, 3, 1)
        return np.clip((images + 1.0) / 2.0, 0.0, 1.0)


@lru_cache(maxsize=4)
def load_image_dataset(name: str, root: str | None, holdout: float) -> ImageDataset:
    """Read a dataset once per process (validation and the run share it). Raises DatasetFileError."""
    return ImageDataset(READERS[name](root or "", holdout))
