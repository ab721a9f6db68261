"""Class conditioning (S4's conditional GAN): the class, one-hot encoded, is appended to G's noise
and to D's input. Any network family can be made conditional this way, with no change to its layers."""

from __future__ import annotations

import torch
from torch.nn import functional as F


class LabelConditioning:
    """Joins inputs with one-hot labels; with ``classes == 0`` (an unconditional model) it passes
    inputs through unchanged, so the training loop treats every model the same way."""

    def __init__(self, classes: int = 0) -> None:
        self.classes = classes

    def extra_features(self) -> int:
        """How many inputs the one-hot code adds to G and to D."""
        return self.classes

    def join(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if not self.classes:
            return x
        if labels is None:
            raise ValueError(f"this model is conditional on {self.classes} classes: pass one label per sample")
        # the last dimension: x is [n, features], or [K, n, features] for K stacked members (populations)
        return torch.cat([x, F.one_hot(labels, self.classes).to(x.dtype)], dim=-1)

    def draw_labels(self, target, n: int, device: torch.device | str = "cpu",
                    generator: torch.Generator | None = None, label: int | None = None) -> torch.Tensor | None:
        """Classes for n generated samples: ``label`` for all of them if given, else drawn as the real
        data's are (``target.sample_labels``); None for an unconditional model (nothing is drawn)."""
        if not self.classes:
            return None
        if label is not None:
            return torch.full((n,), label, dtype=torch.long, device=device)
        return target.sample_labels(n, device, generator)

    def draw_inputs(self, noise, target, n: int, generator: torch.Generator | None = None,
                    label: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """n noise draws, then their classes (see :meth:`draw_labels`), on the CPU from ``generator``: the
        one order in which every loop draws a generator's final samples, so they match from seed to seed."""
        z = noise.sample(n, generator=generator)
        return z, self.draw_labels(target, n, "cpu", generator, label)

    def input_example(self, noise, target, n: int = 8) -> torch.Tensor:
        """n inputs of G as its MLflow Model takes them (seeded): noise, then the one-hot class if conditional."""
        return self.join(*self.draw_inputs(noise, target, n, torch.Generator().manual_seed(0)))
