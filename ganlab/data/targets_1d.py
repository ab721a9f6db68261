"""The 1D targets (config group ``data``): sampled in torch for training, exact in scipy for metrics."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import stats


class Target1D:
    """A 1D distribution with exact CDF/pdf (for KS, W1 and plots) and a fast torch sampler."""

    dim = 1
    classes = 0  # 1D targets are never conditional

    def sample(self, n: int, device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, 1) samples on ``device``; a ``generator`` (CPU) makes them reproducible."""
        raise NotImplementedError

    def sample_with_labels(self, n: int, device: torch.device | str = "cpu",
                           generator: torch.Generator | None = None) -> tuple[torch.Tensor, None]:
        return self.sample(n, device, generator), None

    def cdf(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def pdf(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def quantiles(self, n: int) -> np.ndarray:
        """The (i + 0.5) / n quantiles: an n-point stand-in for the target in 1D transport distances."""
        raise NotImplementedError

    mean: float
    std: float

    def standard_units(self) -> tuple[list[float], list[float]]:
        """The target's mean and std per coordinate (what ``model.standardize`` maps G and D by)."""
        return [self.mean], [self.std]

    def plot_range(self) -> tuple[float, float]:
        lo, hi = self.quantiles(2000)[[0, -1]]
        pad = 0.5 * (hi - lo)
        return float(lo - pad), float(hi + pad)


class Gaussian1D(Target1D):
    def __init__(self, mean: float, std: float) -> None:
        self.mean, self.std = float(mean), float(std)
        self._dist = stats.norm(loc=self.mean, scale=self.std)

    def sample(self, n, device="cpu", generator=None):
        where = device if generator is None else "cpu"
        return torch.empty(n, 1, device=where).normal_(self.mean, self.std, generator=generator).to(device)

    def cdf(self, x: np.ndarray) -> np.ndarray:
        return self._dist.cdf(x)

    def pdf(self, x: np.ndarray) -> np.ndarray:
        return self._dist.pdf(x)

    def quantiles(self, n: int) -> np.ndarray:
        return self._dist.ppf((np.arange(n) + 0.5) / n)


class Mixture1D(Target1D):
    def __init__(self, weights: Sequence[float], means: Sequence[float], stds: Sequence[float]) -> None:
        self.weights = np.asarray(weights, dtype=float)
        self.means = np.asarray(means, dtype=float)
        self.stds = np.asarray(stds, dtype=float)
        self._components = [stats.norm(m, s) for m, s in zip(self.means, self.stds, strict=True)]
        self.mean = float(self.weights @ self.means)
        self.std = float(np.sqrt(self.weights @ (self.stds**2 + self.means**2) - self.mean**2))

    def sample(self, n, device="cpu", generator=None):
        where = device if generator is None else "cpu"
        weights = torch.as_tensor(self.weights, dtype=torch.float32, device=where)
        idx = torch.multinomial(weights, n, replacement=True, generator=generator)
        means = torch.as_tensor(self.means, dtype=torch.float32, device=where)[idx]
        stds = torch.as_tensor(self.stds, dtype=torch.float32, device=where)[idx]
        z = torch.randn(n, generator=generator, device=where)
        return (means + stds * z).unsqueeze(1).to(device)

    def cdf(self, x: np.ndarray) -> np.ndarray:
        return sum(w * c.cdf(x) for w, c in zip(self.weights, self._components, strict=True))

    def pdf(self, x: np.ndarray) -> np.ndarray:
        return sum(w * c.pdf(x) for w, c in zip(self.weights, self._components, strict=True))

    def quantiles(self, n: int) -> np.ndarray:
        lo = float(np.min(self.means - 10 * self.stds))
        hi = float(np.max(self.means + 10 * self.stds))
        grid = np.linspace(lo, hi, 200_001)
        return np.interp((np.arange(n) + 0.5) / n, self.cdf(grid), grid)
