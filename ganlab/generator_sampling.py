"""A trained generator with what drawing from it needs: its noise, target and label conditioning.

Why apart from :class:`~ganlab.training.gan_module.GANModule`: ``python -m ganlab.sample`` needs
neither the discriminator nor the training loop, and building the LightningModule imported Lightning
(~3 s of the ~10 s that 10^6 samples took). The module draws its evaluation samples through
:func:`draw_samples` too, so both sample alike.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from ganlab.data.noise import Noise, build_noise
from ganlab.data.targets import Target, build_target
from ganlab.nets.conditioning import LabelConditioning
from ganlab.nets.models import MODELS, build_generator

SAMPLE_CHUNK = 65_536  # samples generated at once: bounded memory for large n


def build_parts(cfg: DictConfig) -> tuple[Target, Noise, LabelConditioning, nn.Module]:
    """The run's target, noise, label conditioning and (untrained) generator, as its config builds them."""
    target, noise = build_target(cfg.data), build_noise(cfg.noise)
    conditioning = LabelConditioning(target.classes if MODELS[cfg.model.name].conditional else 0)
    units = target.standard_units() if cfg.model.standardize else None
    generator = build_generator(cfg.model, noise.dim + conditioning.extra_features(), target.dim, units)
    return target, noise, conditioning, generator


@torch.no_grad()
def generate_eval(generator: nn.Module, conditioning: LabelConditioning, z: torch.Tensor,
                  labels: torch.Tensor | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """G(z | labels) in eval mode (G's train mode restored after)."""
    was_training = generator.training
    generator.eval()
    try:
        labels = None if labels is None else labels.to(device)
        return generator(conditioning.join(z.to(device), labels))
    finally:
        generator.train(was_training)


@torch.no_grad()
def draw_samples(generator: nn.Module, conditioning: LabelConditioning, noise: Noise, target: Target, n: int,
                 rng: torch.Generator | None = None, label: int | None = None, chunk: int = SAMPLE_CHUNK,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor | None]:
    """n samples, generated ``chunk`` at a time, and their classes (a conditional model's ``label``,
    else classes drawn as in training; None if unconditional). The noise is drawn before the labels,
    from ``rng`` if given."""
    z, labels = conditioning.draw_inputs(noise, target, n, rng, label)
    parts = [generate_eval(generator, conditioning, z[i:i + chunk],
                           None if labels is None else labels[i:i + chunk], device) for i in range(0, n, chunk)]
    return torch.cat(parts), labels


class GeneratorSampler:
    """A run's generator for sampling alone (``python -m ganlab.sample``): the interface of the module's
    sampling side (``eval_generator``, ``replace_eval_generator``, ``sample``, ``target``, ``conditioning``)."""

    def __init__(self, cfg: DictConfig) -> None:
        self.target, self.noise, self.conditioning, self.eval_generator = build_parts(cfg)

    def replace_eval_generator(self, generator: nn.Module) -> None:
        """Sample from another G (a loaded MLflow Model)."""
        self.eval_generator = generator

    def sample(self, n: int, generator: torch.Generator | None = None, label: int | None = None,
               chunk: int = SAMPLE_CHUNK) -> tuple[torch.Tensor, torch.Tensor | None]:
        return draw_samples(self.eval_generator, self.conditioning, self.noise, self.target, n, generator, label,
                            chunk)
