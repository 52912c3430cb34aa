"""Conv2D (TensorFlow 'same' padding included) and ZeroPadding2D."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import ConfigError, ShapeError
from cnnlab.layers.base import Layer, register
from cnnlab.layers.shapes import (
    check_windows, explicit_padding, padding_config, pair, same_pads, shape_str, windows,
)
from cnnlab.layers.weighted import WeightedLayer


def compact(p: tuple[int, int]):
    """(3, 3) -> 3, (3, 5) -> [3, 5]: how configs write a pair."""
    return p[0] if p[0] == p[1] else list(p)


@register("Convolution2D")
class Conv2D(WeightedLayer):
    """2-D convolution (cross-correlation, as in every framework) with Keras' arguments, NCHW.

    `.conv` is the nn.Conv2d whose output is the feature map; `.activation` turns it into the
    activation map (the layer's output). Weights start glorot_uniform and biases zeros, like Keras
    (PyTorch's own default would be kaiming_uniform(a=sqrt(5)); pass kernel_initializer='torch').

    Args:
        filters: number of output channels.
        kernel_size: int or (kh, kw).
        strides: int or (sh, sw).
        padding: 'valid' (none), 'same' (TensorFlow's: out = ceil(H/S), extra pixel bottom/right),
            an int, (ph, pw) or ((top, bottom), (left, right)) zero pixels.
        activation: Keras name (relu, softmax, ...) or None.
        use_bias: add a bias per filter.
        kernel_initializer, bias_initializer: Keras names (glorot_uniform, he_normal, zeros, ...).
        kernel_regularizer: 'l2(1e-4)', 'l1(1e-5)', 'l1_l2(l1=..., l2=...)' or {'l2': 1e-4}; the
            training engine adds `regularization_loss()` to the loss.
        dilation_rate: int or (dh, dw).
        in_channels: input channels, to create the weights now instead of at build time.
    """

    weight_module = "conv"

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid", activation=None,
                 use_bias: bool = True, kernel_initializer: str = "glorot_uniform",
                 bias_initializer: str = "zeros", kernel_regularizer=None, dilation_rate=1,
                 in_channels: int | None = None):
        super().__init__()
        if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
            raise ConfigError(f"Conv2D filters must be a positive whole number, got {filters!r}.")
        self.filters = filters
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.strides = pair(strides, "strides")
        self.dilation_rate = pair(dilation_rate, "dilation_rate")
        if min(*self.kernel_size, *self.strides, *self.dilation_rate) < 1:
            raise ConfigError("Conv2D kernel_size, strides and dilation_rate must be at least 1.")
        self.padding = explicit_padding(padding, "Conv2D")
        self._set_weight_options(activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer)
        self.in_channels = in_channels
        if in_channels is not None:
            self._make_conv(in_channels)

    def _make_conv(self, in_channels: int) -> None:
        # The symmetric part of the padding goes into nn.Conv2d; forward() F.pads the rest. For 'same'
        # that is the smallest top/left pad any input size needs: max(span - S, 0) // 2.
        if self.padding == "valid":
            pad = (0, 0)
        elif self.padding == "same":
            pad = tuple(max((k - 1) * d + 1 - s, 0) // 2
                        for k, s, d in zip(self.kernel_size, self.strides, self.dilation_rate))
        else:
            pad = (min(self.padding[0]), min(self.padding[1]))
        self.conv = nn.Conv2d(in_channels, self.filters, self.kernel_size, self.strides, pad,
                              self.dilation_rate, bias=self.use_bias)
        self._initialize(self.conv)

    def _build(self, input_shape):
        self.need_rank(input_shape, 3, "put convolutions before Flatten() and Dense layers.")
        channels = input_shape[0]
        if self.conv is not None and self.conv.in_channels != channels:
            raise ShapeError(
                f"{self.label} was made for {self.conv.in_channels} input channels but gets "
                f"{shape_str(input_shape)} ({channels} channels); set in_channels={channels} or leave "
                "in_channels out so it is inferred."
            )
        wins = windows(input_shape[1:], self.kernel_size, self.strides, self.dilation_rate, self.padding)
        smaller = "kernel, stride or dilation_rate" if max(self.dilation_rate) > 1 else "kernel or stride"
        check_windows(self.label, input_shape, wins,
                      f"use padding='same', a smaller {smaller}, or remove one pooling layer before it.",
                      self.padding)
        if self.conv is None:
            self._make_conv(channels)
        return (self.filters, wins[0].out, wins[1].out)

    def _extra_pads(self, h: int, w: int) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) pixels F.pad adds before self.conv for an h x w input."""
        if self.padding == "valid":
            return (0, 0, 0, 0)
        if self.padding == "same":
            (t, b), (l, r) = (same_pads(n, k, s, d) for n, k, s, d in
                              zip((h, w), self.kernel_size, self.strides, self.dilation_rate))
        else:
            (t, b), (l, r) = self.padding
        ph, pw = self.conv.padding
        return (l - pw, r - pw, t - ph, b - ph)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, filters, OH, OW)."""
        return self.activation(self.pre_activation(x))

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, filters, OH, OW): the convolution's output before the activation."""
        self.ensure_built(x)
        pads = self._extra_pads(x.shape[-2], x.shape[-1])
        if any(pads):
            x = F.pad(x, pads)
        return self.conv(x)

    def arithmetic(self) -> list[str]:
        if not self.built:
            return []
        wins = windows(self.input_shape[1:], self.kernel_size, self.strides, self.dilation_rate, self.padding)
        return [w.formula() for w in wins]

    def receptive_field(self):
        span = tuple((k - 1) * d + 1 for k, d in zip(self.kernel_size, self.dilation_rate))
        return span, self.strides

    def get_config(self) -> dict:
        return {
            "filters": self.filters, "kernel_size": compact(self.kernel_size),
            "strides": compact(self.strides), "padding": padding_config(self.padding),
            **self._weight_config(), "dilation_rate": compact(self.dilation_rate), "in_channels": self.in_channels,
        }


@register()
class ZeroPadding2D(Layer):
    """Adds rows and columns of zeros around each channel (Keras' ZeroPadding2D).

    Args:
        padding: int, (ph, pw) for symmetric pads, or ((top, bottom), (left, right)).
    """

    def __init__(self, padding=1):
        super().__init__()
        pads = explicit_padding(padding, "ZeroPadding2D")
        if isinstance(pads, str):
            raise ConfigError("ZeroPadding2D padding must be a number of pixels, not 'same' or 'valid'.")
        self.padding = pads

    def _build(self, input_shape):
        self.need_rank(input_shape, 3, "pad images before Flatten().")
        (t, b), (l, r) = self.padding
        c, h, w = input_shape
        return (c, h + t + b, w + l + r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (t, b), (l, r) = self.padding
        return F.pad(x, (l, r, t, b))

    def get_config(self) -> dict:
        return {"padding": padding_config(self.padding)}
