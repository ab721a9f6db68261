"""Preprocess (config group ``preprocess``): what the discriminator sees of a batch, and the registry.

``none`` hands D single samples. The others are S1's batch-as-one-sample transforms: a batch of
``batch_size`` samples becomes one D input vector, so D judges a whole distribution at once.
Each transform declares its output size for a given batch size, which sizes D's first layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ganlab.registry import Registry

STD_FLOOR = 1e-8  # keeps moments finite if G collapses to a single value


class Preprocess(nn.Module):
    """Maps (N, dim) samples to D's inputs (groups, features)."""

    per_sample: bool = False

    def __init__(self, batch_size: int, dim: int) -> None:
        super().__init__()
        self.batch_size, self.dim = batch_size, dim  # batch_size: samples per D input

    def out_features(self) -> int:
        raise NotImplementedError

    def groups(self, n: int) -> int:
        """How many D inputs (and D outputs) n samples make."""
        return n if self.per_sample else n // self.batch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.per_sample:
            return x
        if x.shape[0] % self.batch_size:
            raise ValueError(f"got {x.shape[0]} samples, not a multiple of batch_size={self.batch_size}")
        return self.transform(x.reshape(-1, self.batch_size, self.dim))

    def transform(self, batches: torch.Tensor) -> torch.Tensor:
        """(groups, batch_size, dim) -> (groups, features)."""
        raise NotImplementedError


class IdentityPreprocess(Preprocess):
    """`none`: D judges single samples; the batch only supplies statistics."""

    per_sample = True

    def out_features(self) -> int:
        return self.dim


class ConcatPreprocess(Preprocess):
    """`raw` (S1 flag 2): the batch as one vector of batch_size * dim numbers. `pack` (PacGAN) is the
    same transform on groups of m samples: D sees m samples at once, all real or all fake."""

    def out_features(self) -> int:
        return self.batch_size * self.dim

    def transform(self, batches: torch.Tensor) -> torch.Tensor:
        return batches.flatten(1)


class CenteredPreprocess(Preprocess):
    """`diffs` / `variances` (S1 flags 1 / 0): raw data and its deviations from the batch mean."""

    def __init__(self, batch_size: int, dim: int, keep_raw: bool = True, squared: bool = False) -> None:
        super().__init__(batch_size, dim)
        self.keep_raw, self.squared = keep_raw, squared

    def out_features(self) -> int:
        return self.batch_size * self.dim * (2 if self.keep_raw else 1)

    def transform(self, batches: torch.Tensor) -> torch.Tensor:
        centered = batches - batches.mean(dim=1, keepdim=True)
        if self.squared:
            centered = centered**2
        parts = [batches.flatten(1), centered.flatten(1)] if self.keep_raw else [centered.flatten(1)]
        return torch.cat(parts, dim=1)


class SortedPreprocess(Preprocess):
    """`sorted` (ganlab's own): each group of samples sorted, i.e. its empirical quantile function.

    S1's `raw` fails because a D on an unordered batch must first learn that order does not matter;
    sorting removes that burden and lets D compare the generated quantiles with the real ones.
    """

    def out_features(self) -> int:
        return self.batch_size * self.dim

    def transform(self, batches: torch.Tensor) -> torch.Tensor:
        return batches.sort(dim=1).values.flatten(1)


class MomentsPreprocess(Preprocess):
    """`moments` (S1 flag 3): mean, std, skewness, excess kurtosis of the batch, per dimension.

    Population (biased) estimators, the same as scipy.stats.skew / kurtosis with bias=True.
    """

    def out_features(self) -> int:
        return 4 * self.dim

    def transform(self, batches: torch.Tensor) -> torch.Tensor:
        mean = batches.mean(dim=1)
        centered = batches - mean.unsqueeze(1)
        std = centered.pow(2).mean(dim=1).sqrt().clamp_min(STD_FLOOR)
        z = centered / std.unsqueeze(1)
        skew = z.pow(3).mean(dim=1)
        kurtosis = z.pow(4).mean(dim=1) - 3.0
        return torch.cat([mean, std, skew, kurtosis], dim=1)


AUTO = "auto"  # resolved at composition: none for per-sample models; sorted (1D) or pack (2D) for batch models

# name -> (batch_size, dim, config node) -> the transform. ``batch_size`` is the samples per D input.
PREPROCESSES: Registry[Callable[[int, int, Any], Preprocess]] = Registry("preprocess.name")
PREPROCESSES.add("none", lambda n, dim, cfg: IdentityPreprocess(n, dim))
PREPROCESSES.add("raw", lambda n, dim, cfg: ConcatPreprocess(n, dim))
PREPROCESSES.add("diffs", lambda n, dim, cfg: CenteredPreprocess(n, dim, cfg.get("keep_raw", True), squared=False))
PREPROCESSES.add("variances", lambda n, dim, cfg: CenteredPreprocess(n, dim, cfg.get("keep_raw", True), squared=True))
PREPROCESSES.add("moments", lambda n, dim, cfg: MomentsPreprocess(n, dim))
PREPROCESSES.add("sorted", lambda n, dim, cfg: SortedPreprocess(n, dim))
PREPROCESSES.add("pack", lambda n, dim, cfg: ConcatPreprocess(n, dim))
# the transforms that summarise each coordinate on its own (they lose the joint law of 2D data)
PER_COORDINATE = ("diffs", "variances", "moments", "sorted")


def samples_per_input(preprocess_cfg) -> int:
    """How many samples one D input holds as configured: `pack`'s m, else group_size (0: the whole batch)."""
    if preprocess_cfg.name == "pack":
        return preprocess_cfg.m
    return preprocess_cfg.get("group_size", 0)


def build_preprocess(preprocess_cfg, batch_size: int, dim: int) -> Preprocess:
    """The configured transform for batches of ``batch_size`` samples of ``dim`` numbers
    (``samples_per_input`` of them make one D input; 0: the whole batch, as in S1)."""
    per_input = samples_per_input(preprocess_cfg) or batch_size
    return PREPROCESSES[preprocess_cfg.name](per_input, dim, preprocess_cfg)
