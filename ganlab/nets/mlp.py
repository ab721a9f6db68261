"""A multilayer perceptron whose sizes, per-layer activations, batch norm, dropout and init all come
from config (S2's image G puts batch norm between Linear and ReLU; S5 adds dropout after each ReLU)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module] | None] = {
    "none": None,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}
INITS = ("default", "normal", "xavier")


def activation(name: str) -> nn.Module:
    layer = ACTIVATIONS[name]
    return nn.Identity() if layer is None else layer()


def init_linear(layer: nn.Linear, scheme: str, std: float) -> None:
    """'default' keeps PyTorch's init; 'normal' is N(0, std) weights, 'xavier' xavier-uniform; biases 0."""
    if scheme == "default":
        return
    if scheme == "normal":
        nn.init.normal_(layer.weight, 0.0, std)
    elif scheme == "xavier":
        nn.init.xavier_uniform_(layer.weight)
    else:
        raise ValueError(f"unknown init '{scheme}'; allowed: {', '.join(INITS)}")
    nn.init.zeros_(layer.bias)


def mlp(
    in_features: int,
    hidden: Sequence[int],
    activations: Sequence[str],
    out_features: int | None,
    output_activation: str = "none",
    init: str = "default",
    init_std: float = 0.02,
    batch_norm: Sequence[bool] = (),
    dropout: float = 0.0,
) -> nn.Sequential:
    """Per hidden layer: Linear, [BatchNorm1d if ``batch_norm[i]``], activation, [Dropout(dropout)];
    then an optional output Linear and activation. An empty ``batch_norm`` means none.

    ``out_features=None`` stops after the last hidden activation (a feature trunk).
    """
    norms = list(batch_norm) or [False] * len(hidden)
    if len(norms) != len(hidden):
        raise ValueError(f"batch_norm has {len(norms)} entries for {len(hidden)} hidden layers")
    layers: list[nn.Module] = []
    width = in_features
    for size, act, norm in zip(hidden, activations, norms, strict=True):
        linear = nn.Linear(width, size)
        init_linear(linear, init, init_std)
        layers.append(linear)
        if norm:
            layers.append(nn.BatchNorm1d(size))
        layers.append(activation(act))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = size
    if out_features is not None:
        linear = nn.Linear(width, out_features)
        init_linear(linear, init, init_std)
        layers.append(linear)
        if output_activation != "none":
            layers.append(activation(output_activation))
    return nn.Sequential(*layers)


def output_width(net: nn.Sequential, in_features: int) -> int:
    """The feature width a trunk produces (the last Linear's size, or the input if there is none)."""
    width = in_features
    for layer in net:
        if isinstance(layer, nn.Linear):
            width = layer.out_features
    return width


__all__ = ["ACTIVATIONS", "INITS", "activation", "init_linear", "mlp", "output_width"]
