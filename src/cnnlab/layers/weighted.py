"""WeightedLayer: what Conv2D and Dense share (activation, bias, initialisers, kernel regulariser)."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.layers.activations import make_activation
from cnnlab.layers.base import Layer
from cnnlab.layers.weights import check_initializer, initialize, parse_regularizer, penalty


class WeightedLayer(Layer):
    """A layer around one torch module with a weight (`.conv`, `.linear`) followed by an activation.

    Subclasses name that module in `weight_module`, call `_set_weight_options` in __init__, create
    the module once the input size is known and pass it to `_initialize`.
    """

    weight_module = ""  # "conv" for Conv2D, "linear" for Dense

    def _set_weight_options(self, activation, use_bias, kernel_initializer, bias_initializer,
                            kernel_regularizer) -> None:
        self.activation_name = activation
        self.activation = make_activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = check_initializer(kernel_initializer, "kernel_initializer")
        self.bias_initializer = check_initializer(bias_initializer, "bias_initializer")
        self.kernel_regularizer = parse_regularizer(kernel_regularizer)
        self.register_module(self.weight_module, None)  # created at build, or now if sizes are given

    def _initialize(self, module: nn.Module) -> None:
        """Keras-style initial values for the new module's weight and bias."""
        initialize(module.weight, self.kernel_initializer)
        if self.use_bias:
            initialize(module.bias, self.bias_initializer)

    def regularization_loss(self) -> torch.Tensor:
        """The kernel_regularizer's penalty on the weights (a 0-d zero when there is none)."""
        module = getattr(self, self.weight_module)
        if module is None:
            return torch.zeros(())
        return penalty(module.weight, self.kernel_regularizer)

    def _weight_config(self) -> dict:
        """The shared constructor arguments, for get_config."""
        return {"activation": self.activation_name, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer, "bias_initializer": self.bias_initializer,
                "kernel_regularizer": self.kernel_regularizer}
