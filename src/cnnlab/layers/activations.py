"""Activation functions by their Keras names."""

from __future__ import annotations

from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.layers.base import closest

# Keras name -> module factory. softmax runs over dim 1 (channels/classes), Keras' axis=-1 in NHWC.
# leaky_relu uses 0.2, the slope of keras.activations.leaky_relu (torch's default is 0.01);
# swish is x * sigmoid(x) (torch's SiLU); gelu is the exact erf form (Keras' approximate=False).
ACTIVATIONS = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "softmax": lambda: nn.Softmax(dim=1),
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "selu": nn.SELU,
    "swish": nn.SiLU,
    "silu": nn.SiLU,
    "linear": nn.Identity,
}


def make_activation(name: str | None) -> nn.Module:
    """The activation module called `name` (None or 'linear': identity); ConfigError if unknown."""
    if name is None:
        return nn.Identity()
    if not isinstance(name, str) or name.lower() not in ACTIVATIONS:
        raise ConfigError(
            f"unknown activation {name!r}{closest(name, ACTIVATIONS)}; use one of {', '.join(ACTIVATIONS)}."
        )
    return ACTIVATIONS[name.lower()]()
