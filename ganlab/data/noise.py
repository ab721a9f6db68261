"""Generator input samplers (config group ``noise``)."""

from __future__ import annotations

import torch


class Noise:
    """Draws (n, dim) generator inputs; ``generator`` makes a fixed evaluation batch reproducible."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def sample(self, n: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None):
        raise NotImplementedError


class UniformNoise(Noise):
    def __init__(self, dim: int, low: float, high: float) -> None:
        super().__init__(dim)
        self.low, self.high = low, high

    def sample(self, n, device="cpu", generator=None):
        u = torch.rand(n, self.dim, generator=generator, device=device if generator is None else "cpu")
        return (self.low + (self.high - self.low) * u).to(device)


class NormalNoise(Noise):
    def __init__(self, dim: int, mean: float, std: float) -> None:
        super().__init__(dim)
        self.mean, self.std = mean, std

    def sample(self, n, device="cpu", generator=None):
        z = torch.randn(n, self.dim, generator=generator, device=device if generator is None else "cpu")
        return (self.mean + self.std * z).to(device)


class StratifiedNoise(Noise):
    """S3: linspace(low, high, n) + U(0, 1) * jitter. Extra dimensions get shuffled copies of the grid."""

    def __init__(self, dim: int, low: float, high: float, jitter: float) -> None:
        super().__init__(dim)
        self.low, self.high, self.jitter = low, high, jitter

    def sample(self, n, device="cpu", generator=None):
        where = device if generator is None else "cpu"
        grid = torch.linspace(self.low, self.high, n, device=where)
        cols = [grid] + [grid[torch.randperm(n, generator=generator, device=where)] for _ in range(self.dim - 1)]
        z = torch.stack(cols, dim=1) + torch.rand(n, self.dim, generator=generator, device=where) * self.jitter
        return z.to(device)


NOISE_NAMES = ("uniform", "normal", "stratified")


def build_noise(cfg) -> Noise:
    """Build the sampler named by a ``noise`` config node."""
    if cfg.name == "uniform":
        return UniformNoise(cfg.dim, cfg.low, cfg.high)
    if cfg.name == "normal":
        return NormalNoise(cfg.dim, cfg.mean, cfg.std)
    if cfg.name == "stratified":
        return StratifiedNoise(cfg.dim, cfg.low, cfg.high, cfg.jitter)
    raise ValueError(f"unknown noise '{cfg.name}'; allowed: {', '.join(NOISE_NAMES)}")
