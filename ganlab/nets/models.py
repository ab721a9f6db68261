"""Build G and D for the model families (config group ``model``).

- ``vanilla``: per-sample MLP G and D (needs preprocess=none).
- ``devnag``: D judges a whole batch, fed by a batch transform (preprocess raw/diffs/variances/moments).
- ``minibatch``: per-sample D with a minibatch-discrimination layer before its output (S3).
- ``quantile``: ganlab's batch D (the default recipe's): sorted groups in 1D, packed groups in 2D.
- ``conditional``: per-sample MLPs with the class one-hot appended to G's and D's inputs (S4).

D always returns logits; the loss applies the sigmoid in its numerically stable form, which is
the same function as S1-S5's Sigmoid output layer followed by BCE.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ganlab.nets.data_units import ToDataUnits, ToStandardUnits
from ganlab.nets.fourier_features import FourierFeatures
from ganlab.nets.minibatch_discrimination import MinibatchDiscrimination
from ganlab.nets.mlp import init_linear, mlp, output_width
from ganlab.preprocess import Preprocess
from ganlab.registry import Registry


@dataclass(frozen=True)
class ModelEntry:
    """What a model family is: whether D judges whole batches (needs a batch preprocess), whether D can
    read packed inputs, whether D ends in a minibatch-discrimination layer, whether G and D see the class."""

    judges_batches: bool = False
    packable: bool = False
    minibatch: bool = False
    conditional: bool = False


MODELS: Registry[ModelEntry] = Registry("model.name")
MODELS.add("vanilla", ModelEntry(packable=True))
MODELS.add("devnag", ModelEntry(judges_batches=True, packable=True))
MODELS.add("minibatch", ModelEntry(minibatch=True))
MODELS.add("quantile", ModelEntry(judges_batches=True, packable=True))
MODELS.add("conditional", ModelEntry(packable=True, conditional=True))


def batch_models() -> tuple[str, ...]:
    return tuple(name for name, entry in MODELS.items() if entry.judges_batches)


def packable_models() -> tuple[str, ...]:
    return tuple(name for name, entry in MODELS.items() if entry.packable)


class Discriminator(nn.Module):
    """[standard units] -> [Fourier features per point] -> preprocess -> MLP trunk -> [minibatch
    discrimination] -> Linear to one logit."""

    def __init__(self, preprocess: Preprocess, trunk: nn.Sequential, head: nn.Linear,
                 minibatch: MinibatchDiscrimination | None = None, lift: FourierFeatures | None = None,
                 units: ToStandardUnits | None = None) -> None:
        super().__init__()
        self.preprocess, self.trunk, self.head = preprocess, trunk, head
        self.minibatch = minibatch
        self.lift = lift  # applied to each point before preprocess groups or packs them
        self.units = units  # model.standardize: the data's units -> standard, first of all

    @property
    def input_std(self) -> torch.Tensor | None:
        """The std D divides its input by (None: D reads the data's units); an input gradient times
        this is the gradient in the units D works in (R1 is taken there)."""
        return None if self.units is None else self.units.std

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        if self.units is not None:
            x = self.units(x)
        return self.trunk(self.preprocess(x if self.lift is None else self.lift(x)))

    @property
    def judges_inputs_apart(self) -> bool:
        """Whether each D input's logit depends on that input alone: no minibatch layer, batch norm or
        dropout. Then real and fake batches can go through D in one call, with the same logits."""
        mixing = (nn.BatchNorm1d, nn.Dropout)
        return self.minibatch is None and not any(isinstance(m, mixing) for m in self.trunk.modules())

    def in_context(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Logits of each sample of ``x`` judged within a batch made of it and ``context``."""
        if self.minibatch is None:
            return self(x)
        features = self.minibatch.against(self._features(x), self._features(context))
        return self.head(features)

    def forward(self, x: torch.Tensor, batch: int | None = None) -> torch.Tensor:
        """Logits. ``batch``: score x as consecutive training batches of that size (what the
        minibatch layer compares); by default x is one batch. x is [n, dim], or [K, n, dim] for K
        members trained together (``ganlab.population``)."""
        features = self._features(x)
        if self.minibatch is not None:
            if batch is not None:
                features = self.minibatch(features.unflatten(-2, (-1, batch))).flatten(-3, -2)
            else:
                features = self.minibatch(features)
        return self.head(features)


Units = tuple[list[float], list[float]]  # the target's mean and std per coordinate


def build_generator(model_cfg, noise_dim: int, data_dim: int, units: Units | None = None) -> nn.Sequential:
    """G's MLP; with ``units`` (``model.standardize``) it ends in the map from standard units to the data's."""
    g = model_cfg.g
    net = mlp(noise_dim, g.hidden, g.activations, data_dim, g.output_activation, g.init, g.init_std,
              g.batch_norm, g.dropout)
    if units is not None:
        net.append(ToDataUnits(*units))
    return net


def build_lift(model_cfg, dim: int) -> FourierFeatures | None:
    """D's per-point Fourier features, or None when ``model.d.fourier_features`` is 0."""
    d = model_cfg.d
    return FourierFeatures(dim, d.fourier_features, d.fourier_scale) if d.fourier_features > 0 else None


def build_discriminator(model_cfg, preprocess: Preprocess, lift: FourierFeatures | None = None,
                        units: Units | None = None, twice_differentiable: bool = False) -> Discriminator:
    """D; with ``units`` (``model.standardize``) it first maps its input from the data's units to standard.
    ``twice_differentiable``: D will be differentiated twice (an R1 penalty), see the minibatch layer."""
    d = model_cfg.d
    in_features = preprocess.out_features()
    trunk = mlp(in_features, d.hidden, d.activations, None, init=d.init, init_std=d.init_std,
                batch_norm=d.batch_norm, dropout=d.dropout)
    width = output_width(trunk, in_features)
    minibatch = None
    if MODELS[model_cfg.name].minibatch:
        minibatch = MinibatchDiscrimination(width, model_cfg.kernels, model_cfg.kernel_dim,
                                            model_cfg.minibatch_init_std, twice_differentiable)
        width += minibatch.out_extra
    head = nn.Linear(width, 1)
    init_linear(head, d.init, d.init_std)
    return Discriminator(preprocess, trunk, head, minibatch, lift, None if units is None else ToStandardUnits(*units))
