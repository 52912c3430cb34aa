"""Input, Flatten, Dense, Dropout and Activation."""

from __future__ import annotations

import math

import torch
from torch import nn

from cnnlab.errors import ConfigError, ShapeError
from cnnlab.layers.activations import make_activation
from cnnlab.layers.base import Layer, register
from cnnlab.layers.shapes import shape_str
from cnnlab.layers.weighted import WeightedLayer


@register("InputLayer")
class Input(Layer):
    """Marks the input shape (C, H, W) when first in a layer list; passes data through unchanged.

    Args:
        shape: (C, H, W) channels first, or (F,) for vectors; no batch dimension.
    """

    def __init__(self, shape):
        super().__init__()
        if not isinstance(shape, (list, tuple)) or not shape or any(
            isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape
        ):
            raise ConfigError(f"Input shape must be positive whole numbers like (1, 28, 28), got {shape!r}.")
        self.shape = tuple(shape)

    def _build(self, input_shape):
        if input_shape != self.shape:
            raise ShapeError(f"{self.label} declares {shape_str(self.shape)} but gets {shape_str(input_shape)}; "
                             "make the two input shapes agree.")
        return input_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def get_config(self) -> dict:
        return {"shape": list(self.shape)}


@register()
class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W), channels-first order (Keras flattens H, W, C; counts agree)."""

    collapses_space = True

    def _build(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


@register()
class Dense(WeightedLayer):
    """Fully connected layer: y = activation(x W^T + b); its input size is inferred at build.

    `.linear` is the nn.Linear, `.activation` the activation (nn.Identity when None). Weights start
    glorot_uniform, biases zeros, like Keras.

    Args:
        units: number of outputs.
        activation: Keras name (relu, softmax, ...) or None.
        use_bias: add a bias per unit.
        kernel_initializer, bias_initializer: Keras names (glorot_uniform, he_normal, zeros, ...).
        kernel_regularizer: 'l2(1e-4)', 'l1(...)', 'l1_l2(l1=..., l2=...)' or {'l2': 1e-4}.
        in_features: input size, to create the weights now instead of at build time.
    """

    weight_module = "linear"

    def __init__(self, units: int, activation=None, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform", bias_initializer: str = "zeros",
                 kernel_regularizer=None, in_features: int | None = None):
        super().__init__()
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ConfigError(f"Dense units must be a positive whole number, got {units!r}.")
        self.units = units
        self._set_weight_options(activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer)
        self.in_features = in_features
        if in_features is not None:
            self._make_linear(in_features)

    def _make_linear(self, in_features: int) -> None:
        self.linear = nn.Linear(in_features, self.units, bias=self.use_bias)
        self._initialize(self.linear)

    def _build(self, input_shape):
        if len(input_shape) != 1:
            raise ShapeError(
                f"{self.label} needs a vector of features but gets {shape_str(input_shape)}; "
                f"add Flatten() before it (it would then get {math.prod(input_shape)} features)."
            )
        if self.linear is not None and self.linear.in_features != input_shape[0]:
            raise ShapeError(
                f"{self.label} was made for {self.linear.in_features} input features but gets "
                f"{input_shape[0]}; set in_features={input_shape[0]} or leave in_features out so it is inferred."
            )
        if self.linear is None:
            self._make_linear(input_shape[0])
        return (self.units,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, F) -> (N, units)."""
        self.ensure_built(x)
        return self.activation(self.linear(x))

    def get_config(self) -> dict:
        return {
            "units": self.units, **self._weight_config(), "in_features": self.in_features,
        }


@register()
class Dropout(Layer):
    """Zeroes a random `rate` fraction of values while training, scaling the rest by 1/(1 - rate).

    Args:
        rate: fraction dropped, 0 <= rate < 1.
    """

    def __init__(self, rate: float):
        super().__init__()
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ConfigError(f"Dropout rate must be a number from 0 up to (not including) 1, got {rate!r}.")
        self.rate = float(rate)
        self.dropout = nn.Dropout(self.rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x)

    def get_config(self) -> dict:
        return {"rate": self.rate}


@register()
class Activation(Layer):
    """An activation as its own layer (relu, sigmoid, tanh, softmax, gelu, elu, leaky_relu, selu, swish).

    Args:
        name: the activation's Keras name.
    """

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self.activation = make_activation(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(x)

    def get_config(self) -> dict:
        return {"name": self.name}
