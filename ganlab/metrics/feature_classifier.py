"""The small classifier whose features the image Frechet distance is measured in.

Inception features (FID) mean a 100 MB download and nothing sensible for 8x8 digits, so ganlab
trains a small CNN on the dataset itself, once, and caches its weights: under ``$GANLAB_CACHE``, else
``$XDG_CACHE_HOME/ganlab``, else ``~/.cache/ganlab``. The cache key is a fingerprint of the training
images, so another copy of MNIST or a changed split trains a new one. Training runs under a forked
RNG: a run's result never depends on whether the cache existed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ganlab.atomic_files import save_atomic
from ganlab.data.image_datasets import ImageDataset

CLASSIFIER_VERSION = 2  # bump when the architecture or its training changes: old caches retrain
FEATURES = 128
# epochs per dataset: enough for >95 % on digits and >98 % on MNIST, a few minutes on 2 CPU cores
EPOCHS = {"digits": 80, "mnist": 3, "cifar10": 8}


class FeatureClassifier(nn.Module):
    """Three 3x3 convolutions, pooled to 2x2, a 128-unit feature layer, then the class logits. The
    adaptive pool lets one architecture serve 8x8, 28x28 and 32x32 images."""

    def __init__(self, image_shape: tuple[int, int, int], classes: int) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        channels = image_shape[0]
        self.convs = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        )
        self.feature_layer = nn.Sequential(nn.Linear(512, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, classes)

    def features(self, flat: torch.Tensor) -> torch.Tensor:
        """(n, C*H*W) images in [-1, 1] -> (n, 128) features."""
        return self.feature_layer(self.convs(flat.reshape(-1, *self.image_shape)))

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(flat))


@torch.no_grad()
def accuracy(model: FeatureClassifier, images: torch.Tensor, labels: torch.Tensor, chunk: int = 2048) -> float:
    model.eval()
    correct = sum(int((model(images[i:i + chunk]).argmax(1) == labels[i:i + chunk]).sum())
                  for i in range(0, len(images), chunk))
    return correct / max(len(images), 1)


def train_classifier(dataset: ImageDataset, epochs: int | None = None, seed: int = 0,
                     verbose: bool = True) -> tuple[FeatureClassifier, float]:
    """Train on the training split (small shifts as augmentation); return it and its held-out accuracy."""
    epochs = epochs or EPOCHS.get(dataset.name, 5)
    # called from inside an evaluation (no_grad) on first use: gradients must be on here
    with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
        torch.manual_seed(seed)
        model = FeatureClassifier(dataset.image_shape, dataset.classes)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
        gen = torch.Generator().manual_seed(seed)
        start = time.perf_counter()
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(dataset.train), generator=gen)
            for i in range(0, len(order), 128):
                idx = order[i:i + 128]
                x = _shifted(dataset.train[idx], dataset.image_shape, gen)
                loss = F.cross_entropy(model(x), dataset.train_labels[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            schedule.step()
            if verbose:
                print(f"ganlab: feature classifier epoch {epoch + 1}/{epochs} "
                      f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    return model, accuracy(model, dataset.test, dataset.test_labels)


def _shifted(flat: torch.Tensor, shape: tuple[int, int, int], gen: torch.Generator) -> torch.Tensor:
    """Each image moved by up to one pixel (edges padded with the background, -1)."""
    images = flat.reshape(-1, *shape)
    padded = F.pad(images, (1, 1, 1, 1), value=-1.0)
    dy, dx = (int(v) for v in torch.randint(0, 3, (2,), generator=gen))
    return padded[:, :, dy:dy + shape[1], dx:dx + shape[2]].reshape(len(flat), -1)


def cache_dir() -> Path:
    if os.environ.get("GANLAB_CACHE"):
        return Path(os.environ["GANLAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ganlab"


def cache_path(dataset: ImageDataset) -> Path:
    return cache_dir() / "classifiers" / f"{dataset.fingerprint}-v{CLASSIFIER_VERSION}.pt"


def load_or_train_classifier(dataset: ImageDataset, verbose: bool = True) -> tuple[FeatureClassifier, float]:
    """The cached classifier for this dataset, trained first if missing or unreadable."""
    path = cache_path(dataset)
    model = FeatureClassifier(dataset.image_shape, dataset.classes)
    if path.exists():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state["weights"])
            model.eval()
            return model, float(state["accuracy"])
        except Exception as exc:  # a broken cache file is retrained, not fatal
            print(f"ganlab: retraining the feature classifier: cached {path} unreadable ({type(exc).__name__})",
                  file=sys.stderr)
    if verbose:
        print(f"ganlab: training a feature classifier on {dataset.name} for the Frechet distance "
              f"(once; cached in {path.parent})", file=sys.stderr, flush=True)
    model, acc = train_classifier(dataset, verbose=verbose)
    save_atomic({"weights": model.state_dict(), "accuracy": acc}, path)
    if verbose:
        print(f"ganlab: feature classifier held-out accuracy {acc:.1%}", file=sys.stderr, flush=True)
    model.eval()
    return model, acc
