"""Max, average and min pooling (TensorFlow 'same' semantics) and global pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError
from cnnlab.layers.base import Layer, register
from cnnlab.layers.shapes import check_windows, pair, same_pads, windows
from cnnlab.native import maxpool2x2, maxpool2x2_cuda


def _max_pool(x: torch.Tensor, size: tuple[int, int], strides: tuple[int, int], relu: bool = False) -> torch.Tensor:
    """F.max_pool2d(x, size, strides), followed by torch.relu if `relu`. 2x2 windows with stride 2
    on channels-last tensors go through cnnlab's kernels, with the same values and gradients and the
    ReLU in the same pass: C on the CPU (native/maxpool2x2.c, ~3x faster), Triton on CUDA
    (native/maxpool2x2_cuda.py)."""
    if size == (2, 2) and strides == (2, 2):
        native = maxpool2x2_cuda if x.is_cuda else maxpool2x2
        y = native.max_pool_2x2_if_fits(x, relu)
        if y is not None:
            return y
    y = F.max_pool2d(x, size, strides)
    return torch.relu(y) if relu else y


class _Pool2D(Layer):
    """Shared shape logic of the windowed poolings; subclasses define `_pool(x, pads)`."""

    def __init__(self, pool_size=2, strides=None, padding: str = "valid"):
        super().__init__()
        name = type(self).__name__
        self.pool_size = pair(pool_size, f"{name} pool_size")
        self.strides = self.pool_size if strides is None else pair(strides, f"{name} strides")
        self.strides_given = strides is not None
        if min(*self.pool_size, *self.strides) < 1:
            raise ConfigError(f"{name} pool_size and strides must be at least 1.")
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ConfigError(f"{name} padding must be 'valid' or 'same', got {padding!r}.")
        self.padding = padding.lower()

    def _windows(self, hw):
        return windows(hw, self.pool_size, self.strides, (1, 1), self.padding)

    def _build(self, input_shape):
        self.need_rank(input_shape, 3, "pool images before Flatten().")
        wins = self._windows(input_shape[1:])
        check_windows(self.label, input_shape, wins, "use padding='same' or remove one pooling layer.",
                      self.padding)
        return (input_shape[0], wins[0].out, wins[1].out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, OH, OW)."""
        return self._pool(x, self._pads(x))

    def _pads(self, x: torch.Tensor) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) zero for 'valid'; TensorFlow's split for 'same'."""
        if self.padding != "same":
            return (0, 0, 0, 0)
        (t, b), (l, r) = (same_pads(n, k, s) for n, k, s in zip(x.shape[-2:], self.pool_size, self.strides))
        return (l, r, t, b)

    def _pool(self, x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
        raise NotImplementedError

    def arithmetic(self) -> list[str]:
        return [w.formula() for w in self._windows(self.input_shape[1:])] if self.built else []

    def receptive_field(self):
        return self.pool_size, self.strides

    def get_config(self) -> dict:
        size = self.pool_size[0] if self.pool_size[0] == self.pool_size[1] else list(self.pool_size)
        strides = None
        if self.strides_given:
            strides = self.strides[0] if self.strides[0] == self.strides[1] else list(self.strides)
        return {"pool_size": size, "strides": strides, "padding": self.padding}


@register("MaxPooling2D")
class MaxPool2D(_Pool2D):
    """Largest value in each window; padded positions are -inf so they never win.

    Args:
        pool_size: int or (h, w) window.
        strides: int or (sh, sw); None means pool_size (non-overlapping windows).
        padding: 'valid' (drop what does not fit) or 'same' (out = ceil(H/S), as in TensorFlow).
    """

    def _pool(self, x, pads, relu: bool = False):
        if any(pads):
            x = F.pad(x, pads, value=float("-inf"))
        return _max_pool(x, self.pool_size, self.strides, relu)

    def relu_forward(self, x: torch.Tensor) -> torch.Tensor:
        """torch.relu(self(x)) without this layer's hooks, in one pass where the C kernel applies
        (Sequential's pool-first path: relu(max(...)) = max(relu(...)))."""
        return self._pool(x, self._pads(x), relu=True)


@register("MinPooling2D")
class MinPool2D(_Pool2D):
    """Smallest value in each window (the lectures' min pooling); padded positions never win.

    Args:
        pool_size: int or (h, w) window.
        strides: int or (sh, sw); None means pool_size.
        padding: 'valid' or 'same'.
    """

    def _pool(self, x, pads):
        x = -x  # min(x) = -max(-x); padding -x with -inf is padding x with +inf
        if any(pads):
            x = F.pad(x, pads, value=float("-inf"))
        return -_max_pool(x, self.pool_size, self.strides)


@register("AveragePooling2D", "AvgPooling2D")
class AvgPool2D(_Pool2D):
    """Mean of each window; with 'same', padded positions are left out of the mean (as in TF).

    Args:
        pool_size: int or (h, w) window.
        strides: int or (sh, sw); None means pool_size.
        padding: 'valid' or 'same'.
    """

    def _pool(self, x, pads):
        if not any(pads):
            return F.avg_pool2d(x, self.pool_size, self.strides)
        # sum over the window / number of real pixels in it: avg(pad(x)) / avg(pad(ones)),
        # correct for asymmetric pads where torch's count_include_pad=False cannot be used.
        ones = torch.ones((1, 1, *x.shape[-2:]), dtype=x.dtype, device=x.device)
        total = F.avg_pool2d(F.pad(x, pads), self.pool_size, self.strides)
        count = F.avg_pool2d(F.pad(ones, pads), self.pool_size, self.strides)
        return total / count


class _GlobalPool2D(Layer):
    """(C, H, W) -> (C,): one number per channel; the receptive field becomes the whole input."""

    collapses_space = True

    def _build(self, input_shape):
        self.need_rank(input_shape, 3, "use global pooling on images, before Flatten().")
        return (input_shape[0],)


@register("GlobalMaxPooling2D")
class GlobalMaxPool2D(_GlobalPool2D):
    """Largest value of each channel: (N, C, H, W) -> (N, C).

    Eagerly it is amax, whose gradient splits evenly among tied maxima (as TensorFlow's reduce_max,
    which Keras' GlobalMaxPooling2D is). Under torch.compile it is max over the flattened map, whose
    gradient goes to one of them: inductor's amax backward gives NaN gradients under bf16/fp16
    autocast (pytorch/pytorch#186799; here it made fastnet-large's loss NaN at step 2, on the CPU
    and on an H100). The values are the same; only ties' gradients differ.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return x.flatten(2).max(dim=2).values
        return x.amax(dim=(2, 3))


@register("GlobalAveragePooling2D", "GlobalAvgPooling2D")
class GlobalAvgPool2D(_GlobalPool2D):
    """Mean of each channel: (N, C, H, W) -> (N, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))
