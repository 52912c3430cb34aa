"""ImageDataset: a whole image classification set as uint8 tensors, plus shape conversion."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError

_CHUNK = 4096  # images per step when computing statistics or converting, to bound memory
# ITU-R BT.601 luma weights, the ones PIL's convert("L") uses
_LUMA = (0.299, 0.587, 0.114)
# the smallest std a channel is normalised by, in units of x / 255: one grey level. A channel
# that never varies over the training set (a blue channel always 0) has std 0, and (x - mean) / 0
# would make NaN or infinite inputs. (Keras's Normalization layer floors its std too, at 1e-7.)
MIN_STD = 1.0 / 255.0


def stratified_split(y: torch.Tensor, fraction: float, seed: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices so each class gives round(fraction * its count) to the held-out part.

    Returns:
        (kept indices, held-out indices), each sorted ascending, int64.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"a split fraction must lie strictly between 0 and 1, got {fraction}; "
                          "use e.g. 0.1 for 10%")
    y = y.to("cpu", torch.int64)
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    # group the shuffled indices by class; a stable sort keeps the random order within a class
    order = perm[torch.sort(y[perm], stable=True).indices]
    counts = torch.bincount(y, minlength=int(y.max()) + 1 if len(y) else 0)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(y)) - starts[y[order]]  # position of each index within its class
    take = torch.round(counts.double() * fraction).long()
    held = rank < take[y[order]]
    return torch.sort(order[~held]).values, torch.sort(order[held]).values


def convert_images(x: torch.Tensor, channels: int, size: int | tuple[int, int]) -> torch.Tensor:
    """Convert uint8 images (N, C, H, W) to `channels` (1 or 3) and `size` (H, W).

    Grey -> RGB repeats the channel; RGB -> grey uses the BT.601 luma weights (as PIL does).
    A size larger by an even amount on both sides zero-pads the border evenly (LeNet-5 took
    MNIST's 28x28 digits centred in a 32x32 field); any other change resizes bilinearly with
    antialiasing (torch.nn.functional.interpolate), rounded back to uint8.
    """
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if channels not in (1, 3):
        raise ConfigError(f"images can be converted to 1 (grey) or 3 (RGB) channels, not "
                          f"{channels}")
    if x.shape[1] not in (1, 3):
        raise ConfigError(f"images with {x.shape[1]} channels cannot be converted; use 1 or 3")
    out = torch.empty((len(x), channels, height, width), dtype=torch.uint8)
    dh, dw = height - x.shape[2], width - x.shape[3]
    pad = dh >= 0 and dw >= 0 and dh % 2 == 0 and dw % 2 == 0
    for start in range(0, len(x), _CHUNK):
        chunk = x[start:start + _CHUNK]
        if chunk.shape[1] != channels:
            if channels == 3:
                chunk = chunk.expand(-1, 3, -1, -1)
            else:
                weights = torch.tensor(_LUMA, dtype=torch.float32).view(1, 3, 1, 1)
                chunk = (chunk.float() * weights).sum(1, keepdim=True).round().to(torch.uint8)
        if (dh, dw) == (0, 0):
            pass
        elif pad:
            # (left, right, top, bottom) in pixels, zeros = black
            chunk = F.pad(chunk, (dw // 2, dw // 2, dh // 2, dh // 2))
        else:
            chunk = F.interpolate(chunk.float(), size=(height, width), mode="bilinear",
                                  antialias=True, align_corners=False)
            chunk = chunk.round().clamp(0, 255).to(torch.uint8)
        out[start:start + _CHUNK] = chunk
    return out


@dataclass
class ImageDataset:
    """A labelled image set: uint8 (N, C, H, W) images and int64 (N,) labels, on the CPU (the bench's
    bench.session.to_device makes a copy on the GPU that keeps the CPU copy's mean and std)."""

    name: str
    classes: list[str]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @cached_property
    def _stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        # exact: a 256-bin histogram of each channel's pixel values, then float64 moments of it
        # (no float copy of the whole set, which would take 4-8x its memory)
        values = torch.arange(256, dtype=torch.float64) / 255.0
        means, stds = [], []
        for c in range(self.x_train.shape[1]):
            hist = torch.zeros(256, dtype=torch.float64)
            for chunk in self.x_train[:, c].split(_CHUNK):
                hist += torch.bincount(chunk.reshape(-1), minlength=256).double()
            p = hist / hist.sum()
            mean = (p * values).sum()
            # population std of x / 255, as Keras's featurewise normalisation computes it
            stds.append(max(float((p * (values - mean) ** 2).sum().sqrt()), MIN_STD))
            means.append(float(mean))
        return tuple(means), tuple(stds)

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean of x_train / 255."""
        return self._stats[0]

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel standard deviation of x_train / 255, at least MIN_STD (one grey level)."""
        return self._stats[1]

    def split_validation(self, fraction: float, seed: int
                         ) -> tuple["ImageDataset", torch.Tensor, torch.Tensor]:
        """Hold out a stratified, seeded part of the training set for validation.

        Args:
            fraction: share of each class held out, in (0, 1).
            seed: the same seed always holds out the same images.

        Returns:
            (a dataset with the rest as x_train, x_val uint8 (M, C, H, W), y_val int64 (M,)).
        """
        keep, held = stratified_split(self.y_train, fraction, seed)
        rest = dataclasses.replace(self, x_train=self.x_train[keep], y_train=self.y_train[keep])
        return rest, self.x_train[held], self.y_train[held]

    def with_shape(self, channels: int, size: int | tuple[int, int]) -> "ImageDataset":
        """This dataset converted to a model's input: see convert_images for the rules.

        Args:
            channels: 1 (grey) or 3 (RGB).
            size: target side length, or (H, W).
        """
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        if self.input_shape == (channels, height, width):
            return self
        return dataclasses.replace(
            self,
            x_train=convert_images(self.x_train, channels, (height, width)),
            x_test=convert_images(self.x_test, channels, (height, width)),
        )
