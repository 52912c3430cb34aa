"""Residual: output = activation(block(x) + shortcut(x)), the ResNet skip connection."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import ConfigError, ShapeError
from cnnlab.layers.activations import make_activation
from cnnlab.layers.base import Layer, layer_from_config, layer_to_config, register
from cnnlab.layers.shapes import shape_str


def _chain(layers, what: str):
    """A cnnlab Sequential from a list of layers (or layer configs) or an existing Sequential."""
    from cnnlab.model import Sequential  # model.py imports this package; import here to avoid a cycle

    if isinstance(layers, Sequential):
        return layers
    if not isinstance(layers, (list, tuple)):
        raise ConfigError(f"Residual {what} must be a list of layers, got {type(layers).__name__}.")
    return Sequential([l if isinstance(l, nn.Module) else layer_from_config(l) for l in layers])


@register()
class Residual(Layer):
    """A ResNet-style skip: activation(block(x) + shortcut(x)); the shortcut defaults to identity.

    Args:
        block: the main path, a list of layers or a Sequential.
        shortcut: the skip path (e.g. [Conv2D(64, 1, strides=2), BatchNorm()]); None is identity.
        activation: applied after the sum (ResNet: 'relu').
    """

    def __init__(self, block, shortcut=None, activation=None):
        super().__init__()
        self.block = _chain(block, "block")
        self.shortcut = nn.Identity() if shortcut is None else _chain(shortcut, "shortcut")
        self.activation_name = activation
        self.activation = make_activation(activation)

    def set_label(self, path: str) -> None:
        super().set_label(path)
        self.block.set_label(f"{path}.block")
        if not isinstance(self.shortcut, nn.Identity):
            self.shortcut.set_label(f"{path}.shortcut")

    def _build(self, input_shape):
        main = self.block.build(input_shape)
        skip = input_shape if isinstance(self.shortcut, nn.Identity) else self.shortcut.build(input_shape)
        if main != skip:
            raise ShapeError(
                f"{self.label} gets {shape_str(input_shape)} and its block gives {shape_str(main)} but "
                f"its shortcut gives {shape_str(skip)}; {self._fix(input_shape, main)}"
            )
        return main

    @staticmethod
    def _fix(input_shape, main) -> str:
        """Suggest the 1x1 projection shortcut that makes the two branches agree."""
        if len(main) == 3 and len(input_shape) == 3 and main[1] >= 1 and input_shape[1] % main[1] == 0:
            stride = input_shape[1] // main[1]
            return (f"add shortcut=[Conv2D({main[0]}, 1, strides={stride})] (a 1x1 projection) so both "
                    "branches give the same shape.")
        return "make the block keep the input shape, or add a shortcut (e.g. a 1x1 Conv2D with strides) that matches it."

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.block(x) + self.shortcut(x))

    def get_config(self) -> dict:
        shortcut = None
        if not isinstance(self.shortcut, nn.Identity):
            shortcut = [layer_to_config(l) for l in self.shortcut]
        return {"block": [layer_to_config(l) for l in self.block], "shortcut": shortcut,
                "activation": self.activation_name}
