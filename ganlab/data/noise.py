"""Generator input samplers (config group ``noise``) and their registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ganlab.errors import require, require_positive
from ganlab.registry import Registry


class Noise:
    """Draws (n, dim) generator inputs; ``generator`` makes a fixed evaluation batch reproducible."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def sample(self, n: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None):
        raise NotImplementedError

    def sample_batches(self, k: int, n: int, device: torch.device | str = "cpu",
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """(k, n, dim): k batches of n, each drawn as :meth:`sample` draws one (population training draws
        every member's batch at once). Independent draws are one draw of k * n; a sampler whose batch is
        not i.i.d. (stratified) overrides this."""
        return self.sample(k * n, device, generator).view(k, n, self.dim)


class UniformNoise(Noise):
    def __init__(self, dim: int, low: float, high: float) -> None:
        super().__init__(dim)
        self.low, self.high = low, high

    def sample(self, n, device="cpu", generator=None):
        where = device if generator is None else "cpu"  # one op: the loop draws noise every step
        return torch.empty(n, self.dim, device=where).uniform_(self.low, self.high, generator=generator).to(device)


class NormalNoise(Noise):
    def __init__(self, dim: int, mean: float, std: float) -> None:
        super().__init__(dim)
        self.mean, self.std = mean, std

    def sample(self, n, device="cpu", generator=None):
        where = device if generator is None else "cpu"
        return torch.empty(n, self.dim, device=where).normal_(self.mean, self.std, generator=generator).to(device)


class StratifiedNoise(Noise):
    """S3: linspace(low, high, n) + U(0, 1) * jitter. Extra dimensions get shuffled copies of the grid."""

    def __init__(self, dim: int, low: float, high: float, jitter: float) -> None:
        super().__init__(dim)
        self.low, self.high, self.jitter = low, high, jitter

    def sample(self, n, device="cpu", generator=None):
        return self.sample_batches(1, n, device, generator)[0]

    def sample_batches(self, k, n, device="cpu", generator=None):
        """Each of the k batches is its own grid (one draw of k * n would give each a k-th of the range).
        Extra dimensions shuffle it by one ``randperm`` per batch, so k = 1 draws what a batch always drew."""
        where = device if generator is None else "cpu"
        grid = torch.linspace(self.low, self.high, n, device=where).expand(k, n)
        cols = [grid] + [grid.gather(1, torch.stack([torch.randperm(n, generator=generator, device=where)
                                                     for _ in range(k)])) for _ in range(self.dim - 1)]
        z = torch.stack(cols, dim=2) + torch.rand(k, n, self.dim, generator=generator, device=where) * self.jitter
        return z.to(device)


@dataclass(frozen=True)
class NoiseEntry:
    """How to check and build one sampler from its ``noise`` config node."""

    build: Callable[[Any], Noise]
    check: Callable[[Any], None]


def _check_range(noise) -> None:
    require_positive(noise, "noise", "dim")
    require(noise.low < noise.high, "noise.high", noise.high, f"must be > noise.low={noise.low}")


def _check_normal(noise) -> None:
    require_positive(noise, "noise", "dim", "std")


def _check_stratified(noise) -> None:
    _check_range(noise)
    require(noise.jitter >= 0, "noise.jitter", noise.jitter, "must be >= 0")


NOISES: Registry[NoiseEntry] = Registry("noise.name")
NOISES.add("uniform", NoiseEntry(lambda c: UniformNoise(c.dim, c.low, c.high), _check_range))
NOISES.add("normal", NoiseEntry(lambda c: NormalNoise(c.dim, c.mean, c.std), _check_normal))
NOISES.add("stratified", NoiseEntry(lambda c: StratifiedNoise(c.dim, c.low, c.high, c.jitter), _check_stratified))


AUTO = "auto"  # resolved when the run is composed, by noise_for_family


def noise_for_family(family: str) -> str:
    """noise=auto's pick: uniform for 1D targets (the S1 task ganlab's default recipe was tuned on),
    normal for 2D points, pictures and images. A uniform square's corners are what G must fold away
    on 2D targets: the points recipe on grid25 reached 22/25 modes, 4 % high-quality samples with
    uniform noise and 25/25, 77 % with normal noise (seed 0)."""
    return "uniform" if family == "1d" else "normal"


def build_noise(cfg) -> Noise:
    """Build the sampler named by a ``noise`` config node."""
    return NOISES[cfg.name].build(cfg)
