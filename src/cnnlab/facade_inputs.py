"""The Keras facade's inputs: fit / evaluate / predict's arguments checked (one sentence for each
mistake, naming the fix) and turned into tensors and batches for cnnlab's Trainer (facade.py)."""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from cnnlab.data.loader import batch_count, batch_slice
from cnnlab.errors import ConfigError, ShapeError

# Keras options cnnlab's compile / fit / evaluate / predict do not take (refused with one sentence)
KERAS_ONLY = ("sample_weight", "class_weight", "steps", "steps_per_epoch", "validation_steps",
              "validation_batch_size", "validation_freq", "callbacks", "loss_weights", "weighted_metrics",
              "run_eagerly", "steps_per_execution", "jit_compile", "auto_scale_loss")
KERAS_BATCH_SIZE = 32  # what Keras' fit, evaluate and predict take batch_size=None to mean


def batch_size_of(value: Any, method: str) -> int:
    """batch_size as a positive int (None: Keras' 32); ConfigError otherwise."""
    if value is None:
        return KERAS_BATCH_SIZE
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{method} got batch_size={value!r}: give a positive whole number of images per "
                          f"step, like {KERAS_BATCH_SIZE}, or None for Keras' {KERAS_BATCH_SIZE}")
    return int(value)


def refuse_options(method: Callable, options: dict) -> None:
    """ConfigError for the first keyword `method` (KerasFacade.fit, ...) does not take: one of Keras'
    that cnnlab leaves out, or a misspelling, named with the closest option."""
    from cnnlab.train.config import closest

    if not options:
        return
    called, name = method.__name__, next(iter(options))
    if name in KERAS_ONLY:
        raise ConfigError(f"cnnlab's model.{called}() does not take Keras' {name}=: leave it out")
    params = inspect.signature(method).parameters.values()
    accepted = [p.name for p in params if p.name != "self" and p.kind != p.VAR_KEYWORD]
    near = closest(name, accepted)
    hint = f"did you mean {near}?" if near else f"it takes {', '.join(accepted)}"
    raise ConfigError(f"model.{called}() has no option {name}=: {hint}")


def check_pair(x: torch.Tensor, y: torch.Tensor, what: str) -> None:
    """ConfigError unless x holds images and y one label for each."""
    if len(x) == 0:
        raise ConfigError(f"{what} got no images: pass at least one image and its label")
    if len(x) != len(y):
        raise ConfigError(f"{what} got {len(x)} images but {len(y)} labels: pass one label per image")


def split_tail(x: torch.Tensor, y: torch.Tensor, fraction: float) -> tuple:
    """(x, y, (x_val, y_val)): the last images held out as Keras' validation_split holds them out."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"validation_split must be in (0, 1), got {fraction}")
    cut = math.floor(len(x) * (1.0 - fraction))  # Keras' split_at (train_validation_split)
    if cut in (0, len(x)):
        empty, fix = ("training", "a smaller") if cut == 0 else ("validation", "a larger")
        raise ConfigError(f"validation_split={fraction} of {len(x)} images leaves no {empty} images: pass "
                          f"more images or {fix} validation_split")
    return x[:cut], y[:cut], (x[cut:], y[cut:])


def as_tensor(x: Any, what: str, model: nn.Module | None = None) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    if what == "x":
        if t.dtype == torch.uint8:
            return normalise(model, t.float() / 255.0)
        if not t.is_floating_point():
            raise ConfigError(f"x must be uint8 images or floats, got {t.dtype}: convert with .float()")
        return t.float()
    if t.ndim == 2 and t.shape[1] == 1:  # (N, 1) indices, as keras.datasets.cifar10 gives them
        t = t.reshape(-1)
    return t.float() if t.ndim == 2 else t.long()  # one-hot (N, K) as probabilities, else indices


def normalise(model: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std per channel of x (N, C, H, W) in [0, 1], by the input_mean and input_std a loaded
    model carries (runs.load_run); x itself for a model without them, or a shape check_images refuses."""
    mean, std = getattr(model, "input_mean", None), getattr(model, "input_std", None)
    if mean is None or std is None or x.dim() != 4 or x.shape[1] != len(mean):
        return x
    mean, std = (torch.tensor(v, device=x.device).view(-1, 1, 1) for v in (mean, std))  # (C, 1, 1)
    return (x - mean) / std


def per_channel(name: str, values: Any, channels: int, positive: bool) -> list[float]:
    """values as one finite float per channel (positive ones for a std); ConfigError otherwise."""
    try:
        floats = [float(v) for v in values]
    except (TypeError, ValueError):
        floats = []
    if len(floats) != channels or not all(math.isfinite(v) and (v > 0 or not positive) for v in floats):
        kind = "positive number" if positive else "number"
        raise ConfigError(f"save needs {name} as one {kind} per input channel ({channels}), got {values!r}")
    return floats


def check_labels(model, y: torch.Tensor, what: str) -> None:
    """ShapeError, with the fix, when the model's scores cannot meet labels y: indices (N,) above
    its last output or below 0, or one-hot (N, K) for another K (check_num_classes words it)."""
    from cnnlab.model import check_num_classes

    if y.ndim == 2:
        check_num_classes(model, y.shape[1])
        return
    if y.ndim != 1:
        raise ConfigError(f"{what} got labels of shape {tuple(y.shape)}; pass class indices (N,) or "
                          "one-hot rows (N, K)")
    if len(y) == 0:
        return
    low, high = int(y.min()), int(y.max())
    if low < 0:
        raise ConfigError(f"{what} got label {low}; labels are class indices 0, 1, ..., K - 1")
    out = getattr(model, "output_shape", None)
    if out is not None and (len(out) != 1 or high >= out[0]):
        check_num_classes(model, max(high + 1, 2))


def check_images(model, x: torch.Tensor, what: str) -> None:
    """ShapeError, with the fix, when images x (N, C, H, W) do not fit the model's input (C, H, W):
    most often Keras' channels-last (N, H, W, C) or grey images without their channel axis."""
    expected = getattr(model, "input_shape", None)
    if expected is None or tuple(x.shape[1:]) == tuple(expected):
        return
    got, (c, h, w) = tuple(x.shape), tuple(expected)
    if x.dim() == 4 and got[1:] == (h, w, c):
        fix = ("they are channels-last (N, H, W, C), as Keras stores images; move the channels first with "
               "x.transpose(0, 3, 1, 2) (NumPy) or x.permute(0, 3, 1, 2) (torch)")
    elif x.dim() == 3 and c == 1 and got[1:] == (h, w):
        fix = "grey images need their channel axis: pass x[:, None] (NumPy or torch)"
    else:
        fix = f"resize or reshape them to (N, {c}, {h}, {w}), or build the model for their shape"
    raise ShapeError(f"{what} got images of shape {got} but the model takes (N, {c}, {h}, {w}) "
                     f"(N, C, H, W); {fix}")


class ArrayBatches:
    """In-memory (x, y) batches with a seeded per-epoch shuffle (the Trainer's batch protocol)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int, device):
        self.x, self.y = x.to(device), y.to(device)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def start_at(self, batch_index: int) -> None:
        self.start = batch_index

    def __len__(self) -> int:
        return batch_count(len(self.x), self.batch_size)

    def __iter__(self):
        n = len(self.x)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(n, generator=g).to(self.x.device)
        else:
            order = torch.arange(n, device=self.x.device)
        for i in range(self.start, len(self)):
            idx = order[batch_slice(i, n, self.batch_size)]
            yield self.x[idx], self.y[idx]
        self.start = 0
