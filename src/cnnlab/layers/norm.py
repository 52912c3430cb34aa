"""BatchNorm (Keras defaults and momentum convention) and AlexNet's LocalResponseNorm."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import ConfigError, ShapeError
from cnnlab.layers.base import Layer, number, register
from cnnlab.layers.shapes import shape_str


@register("BatchNormalization")
class BatchNorm(Layer):
    """Batch normalisation per channel (images) or per feature (vectors), Keras' defaults.

    Momentum follows Keras: moving = momentum * moving + (1 - momentum) * batch statistic, so
    Keras' 0.99 is PyTorch's momentum=0.01 (torch weighs the new batch by its momentum). `.bn` is
    the nn.BatchNorm2d (for C x H x W) or nn.BatchNorm1d (for F). Its moving mean and variance
    count as non-trainable parameters in the summary, as in Keras.

    Args:
        momentum: Keras-style momentum of the moving statistics (0.99).
        epsilon: added to the variance (Keras' 1e-3; PyTorch's default is 1e-5).
        num_features: channels/features, to create the layer now as a 2-D (image) batch norm.
    """

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, num_features: int | None = None):
        super().__init__()
        self.momentum = number(momentum, "BatchNorm momentum")
        self.epsilon = number(epsilon, "BatchNorm epsilon")
        if not 0 <= self.momentum <= 1:
            raise ConfigError(f"BatchNorm momentum must be between 0 and 1 (Keras-style, e.g. 0.99), got {momentum!r}.")
        if not self.epsilon > 0:
            raise ConfigError(f"BatchNorm epsilon must be positive, got {epsilon!r}.")
        self.num_features = num_features
        self.register_module("bn", None)
        if num_features is not None:
            self._make_bn(num_features, image=True)

    def _make_bn(self, features: int, image: bool) -> None:
        cls = nn.BatchNorm2d if image else nn.BatchNorm1d
        self.bn = cls(features, eps=self.epsilon, momentum=1.0 - self.momentum)

    def _build(self, input_shape):
        if len(input_shape) not in (1, 3):
            raise ShapeError(f"{self.label} needs C x H x W or a vector but gets {shape_str(input_shape)}; "
                             "put it after a Conv2D or Dense layer.")
        image = len(input_shape) == 3
        if self.bn is not None and self.bn.num_features != input_shape[0]:
            raise ShapeError(
                f"{self.label} was made for {self.bn.num_features} channels but gets "
                f"{shape_str(input_shape)}; set num_features={input_shape[0]} or leave it out so it is inferred."
            )
        if self.bn is None or isinstance(self.bn, nn.BatchNorm2d) != image:
            self._make_bn(input_shape[0], image)
        return input_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn is None:
            self.ensure_built(x)
        return self.bn(x)

    def get_config(self) -> dict:
        return {"momentum": self.momentum, "epsilon": self.epsilon, "num_features": self.num_features}


@register("LRN")
class LocalResponseNorm(Layer):
    """AlexNet's local response normalisation across channels, in the paper's formula.

    b_c = a_c / (k + alpha * sum_{c' within size/2 of c} a_c'^2) ** beta (Krizhevsky et al. 2012,
    section 3.3). torch.nn.LocalResponseNorm divides alpha by `size`, so `.lrn` is built with
    alpha * size to give the paper's numbers.

    Args:
        size: channels in the window (n in the paper).
        alpha, beta, k: the paper's constants (1e-4, 0.75, 2).
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
        super().__init__()
        if not isinstance(size, int) or size < 1:
            raise ConfigError(f"LocalResponseNorm size must be a positive whole number, got {size!r}.")
        self.size = size
        self.alpha = number(alpha, "LocalResponseNorm alpha")
        self.beta = number(beta, "LocalResponseNorm beta")
        self.k = number(k, "LocalResponseNorm k")
        self.lrn = nn.LocalResponseNorm(size, alpha=self.alpha * size, beta=self.beta, k=self.k)

    def _build(self, input_shape):
        self.need_rank(input_shape, 3, "normalise feature maps before Flatten().")
        return input_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lrn(x)

    def get_config(self) -> dict:
        return {"size": self.size, "alpha": self.alpha, "beta": self.beta, "k": self.k}
