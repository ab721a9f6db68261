"""A multilayer perceptron whose sizes, per-layer activations and init all come from config."""

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
) -> nn.Sequential:
    """Linear+activation per hidden layer, then an optional output Linear and activation.

    ``out_features=None`` stops after the last hidden activation (a feature trunk).
    """
    layers: list[nn.Module] = []
    width = in_features
    for size, act in zip(hidden, activations, strict=True):
        linear = nn.Linear(width, size)
        init_linear(linear, init, init_std)
        layers += [linear, activation(act)]
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
