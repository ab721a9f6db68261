"""The 2D targets (config group ``data``): Gaussian mixtures (ring8, grid25) and pictures
used as densities (``data=image_density``: white = more mass).

Every sampler is vectorised in torch (no Python loop per sample) and reproducible with a CPU
``torch.Generator``. Conditional targets also return a class label per sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


class Target2D:
    """A 2D distribution: a torch sampler, a plot box, and (for conditional targets) class labels."""

    dim = 2
    classes = 0  # > 0: a conditional target whose samples carry labels 0..classes-1

    def sample(self, n: int, device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> torch.Tensor:
        return self.sample_with_labels(n, device, generator)[0]

    def sample_with_labels(self, n: int, device: torch.device | str = "cpu",
                           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def box(self) -> tuple[float, float, float, float]:
        """(xmin, xmax, ymin, ymax) of the region plots show."""
        raise NotImplementedError


class GaussianMixture2D(Target2D):
    """Isotropic Gaussian modes with one shared std: the PacGAN / VEEGAN mode-collapse benchmarks."""

    def __init__(self, means: np.ndarray, std: float, weights: Sequence[float] | None = None) -> None:
        self.means = np.asarray(means, dtype=np.float64).reshape(-1, 2)
        self.std = float(std)
        k = len(self.means)
        self.weights = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, dtype=np.float64)

    def sample_with_labels(self, n, device="cpu", generator=None):
        where = device if generator is None else "cpu"
        weights = torch.as_tensor(self.weights, dtype=torch.float32, device=where)
        modes = torch.multinomial(weights, n, replacement=True, generator=generator)
        centers = torch.as_tensor(self.means, dtype=torch.float32, device=where)[modes]
        x = centers + self.std * torch.randn(n, 2, generator=generator, device=where)
        return x.to(device), None

    def standard_units(self) -> tuple[list[float], list[float]]:
        """The mixture's mean and std per coordinate (what ``model.standardize`` maps G and D by)."""
        mean = self.weights @ self.means
        var = self.weights @ (self.means - mean) ** 2 + self.std**2
        return mean.tolist(), np.sqrt(var).tolist()

    def box(self):
        pad = max(0.25 * float(np.ptp(self.means, axis=0).max()), 6 * self.std, 0.5)
        (xmin, ymin), (xmax, ymax) = self.means.min(axis=0), self.means.max(axis=0)
        return float(xmin - pad), float(xmax + pad), float(ymin - pad), float(ymax + pad)


def ring_means(count: int, radius: float) -> np.ndarray:
    """``count`` distinct points on a circle. Angles are 2*pi*k/count for k < count: the common
    ``linspace(0, 2*pi, count)`` puts the last point on the first and loses a mode."""
    angles = 2 * np.pi * np.arange(count) / count
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def grid_means(side: int, spacing: float) -> np.ndarray:
    """A side x side grid centred on 0: side=5, spacing=2 gives {-4, -2, 0, 2, 4}^2."""
    ticks = spacing * (np.arange(side) - (side - 1) / 2)
    xx, yy = np.meshgrid(ticks, ticks, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1)


class PictureDensity(Target2D):
    """A picture as a density on a box: a pixel's probability is proportional to its brightness.

    Sampling is exact on the pixel grid: one inverse-CDF lookup (``searchsorted``) over all pixels
    picks a pixel, then ``jitter`` spreads the point uniformly over that share of the pixel
    (1: the whole pixel, a piecewise-constant density; 0: the pixel centre). Image row 0 is the top.
    """

    def __init__(self, weights: np.ndarray, box: Sequence[float] = (0.0, 1.0, 0.0, 1.0),
                 jitter: float = 1.0) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        self.height, self.width = self.weights.shape
        self._box = tuple(float(b) for b in box)
        self.jitter = float(jitter)
        cdf = torch.from_numpy(np.cumsum(self.weights.ravel()))
        self._cdf = cdf / cdf[-1]
        self._cdf[-1] = 1.0
        self.mass = float(self.weights.sum())

    @property
    def probabilities(self) -> np.ndarray:
        return self.weights / self.mass

    def sample_with_labels(self, n, device="cpu", generator=None):
        where = "cpu"  # the CDF table lives on the CPU; one copy of n points to the device at the end
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=where)
        index = torch.searchsorted(self._cdf, u, right=True).clamp_max(self._cdf.numel() - 1)
        rows, cols = index // self.width, index % self.width
        offset = 0.5 + self.jitter * (torch.rand(n, 2, generator=generator, device=where) - 0.5)
        xmin, xmax, ymin, ymax = self._box
        x = xmin + (cols + offset[:, 0]) * ((xmax - xmin) / self.width)
        y = ymax - (rows + offset[:, 1]) * ((ymax - ymin) / self.height)
        return torch.stack([x, y], dim=1).float().to(device), None

    def box(self):
        return self._box

    def pixel_weights_at(self, points: np.ndarray) -> np.ndarray:
        """Each point's pixel brightness (0 outside the box): 0 means the point is off the density."""
        xmin, xmax, ymin, ymax = self._box
        cols = np.floor((points[:, 0] - xmin) / (xmax - xmin) * self.width).astype(np.int64)
        rows = np.floor((ymax - points[:, 1]) / (ymax - ymin) * self.height).astype(np.int64)
        inside = (cols >= 0) & (cols < self.width) & (rows >= 0) & (rows < self.height)
        out = np.zeros(len(points))
        out[inside] = self.weights[rows[inside], cols[inside]]
        return out


class ConditionalPictureDensity(Target2D):
    """Several pictures on one box, one class each (S4's conditional GAN). A class's share of the
    samples is its picture's total brightness, so all classes together form the summed picture."""

    def __init__(self, images: Sequence[PictureDensity]) -> None:
        self.images = list(images)
        self.classes = len(self.images)
        masses = np.array([image.mass for image in self.images])
        self.class_weights = masses / masses.sum()
        self.union = PictureDensity(sum(image.weights for image in self.images), self.images[0].box(),
                                  self.images[0].jitter)

    def sample_labels(self, n: int, device: torch.device | str = "cpu",
                      generator: torch.Generator | None = None) -> torch.Tensor:
        weights = torch.as_tensor(self.class_weights, dtype=torch.float32)
        return torch.multinomial(weights, n, replacement=True, generator=generator).to(device)

    def sample_with_labels(self, n, device="cpu", generator=None):
        labels = self.sample_labels(n, generator=generator)
        x = torch.empty(n, 2)
        for k, image in enumerate(self.images):  # one vectorised draw per class, not per sample
            chosen = (labels == k).nonzero().squeeze(1)
            x[chosen] = image.sample(chosen.numel(), generator=generator)
        return x.to(device), labels.to(device)

    def box(self):
        return self.union.box()
