"""TensorBatches: shuffled, normalised, augmented batches from one uint8 tensor on the device.

The set is moved to the device once, as uint8 (Fashion-MNIST: 47 MB); each batch is gathered
by index, augmented and normalised there, so an epoch costs no per-sample Python and no
host-to-device copies (airbench's CifarLoader works the same way).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence

import torch

from cnnlab.data.mix import BatchMix
from cnnlab.errors import ConfigError

AugmentFn = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

_MASK64 = (1 << 64) - 1


def derive_seed(*parts: int) -> int:
    """Mix integers into one 63-bit seed (splitmix64 finaliser), so (seed, epoch, ...) tuples
    that differ anywhere give unrelated random streams."""
    h = 0x9E3779B97F4A7C15
    for part in parts:
        h = (h ^ (part & _MASK64)) * 0xBF58476D1CE4E5B9 & _MASK64
        h = (h ^ (h >> 27)) * 0x94D049BB133111EB & _MASK64
        h ^= h >> 31
    return h >> 1  # torch seeds must fit a signed 64-bit integer


def batch_count(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Batches in a pass over n images. A lone last image joins the batch before it (which then
    holds batch_size + 1): BatchNorm in training cannot normalise one value per channel, and
    torch raises "Expected more than 1 value per channel" where Keras trains on."""
    if drop_last:
        return n // batch_size
    return n // batch_size if n % batch_size == 1 and n > batch_size else math.ceil(n / batch_size)


def batch_slice(i: int, n: int, batch_size: int, drop_last: bool = False) -> slice:
    """Positions of batch i in a pass over n images (see batch_count)."""
    last = i == batch_count(n, batch_size, drop_last) - 1
    return slice(i * batch_size, n if last and not drop_last else (i + 1) * batch_size)


class TensorBatches:
    """Batches of (x normalised (B, C, H, W), y int64 (B,)) from a whole uint8 set on `device`;
    with `mix`, y is soft targets (B, K) float32 instead.

    Args:
        x_uint8: images uint8 (N, C, H, W).
        y: labels (N,), any integer dtype.
        batch_size: images per batch.
        shuffle: a fresh permutation each epoch, drawn from (seed, epoch) alone.
        drop_last: skip the final short batch (else a lone last image joins the batch before it:
            batch_count).
        seed: with the epoch, fixes the permutation and the augmentation draws.
        device: where the set lives and batches are made.
        mean, std: per channel of x / 255 (ImageDataset.mean / .std).
        augment: optional (x uint8 (B, C, H, W), generator) -> x, applied before normalising. An
            Augment with flip "alternating" also gets flip_mask (B,) bool: image i is mirrored in
            epoch e when its fixed random bit (drawn from the seed) differs from e's parity.
        channels_last: hand out batches in channels-last memory format.
        dtype: floating dtype of the normalised batches.
        mix: optional data.mix.BatchMix (mixup or CutMix), applied to each normalised batch and its
            labels, with draws from (seed, epoch, batch) like the augmentation's.
    """

    def __init__(self, x_uint8: torch.Tensor, y: torch.Tensor, batch_size: int, *,
                 shuffle: bool = True, drop_last: bool = False, seed: int = 0,
                 device: str | torch.device = "cpu", mean: Sequence[float] = (0.0,),
                 std: Sequence[float] = (1.0,), augment: AugmentFn | None = None,
                 channels_last: bool = False, dtype: torch.dtype = torch.float32, mix: BatchMix | None = None):
        if x_uint8.dtype != torch.uint8 or x_uint8.dim() != 4:
            raise ConfigError(f"TensorBatches needs uint8 images (N, C, H, W), got "
                              f"{x_uint8.dtype} {tuple(x_uint8.shape)}")
        if len(x_uint8) != len(y):
            raise ConfigError(f"TensorBatches got {len(x_uint8)} images but {len(y)} labels; "
                              "pass matching x and y")
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        channels = x_uint8.shape[1]
        if len(mean) not in (1, channels) or len(std) not in (1, channels):
            raise ConfigError(f"mean and std need 1 or {channels} values, got {len(mean)} and "
                              f"{len(std)}; use the dataset's .mean and .std")
        self.device = torch.device(device)
        self.x = x_uint8.to(self.device)
        self.y = y.to(self.device, torch.int64)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.augment, self.channels_last = seed, augment, channels_last
        self.dtype, self.mix = dtype, mix
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        # (x / 255 - mean) / std == x * scale + shift, one fused op per batch, shape (1, C, 1, 1)
        mean_t = torch.tensor(self.mean, dtype=torch.float64).view(1, -1, 1, 1)
        std_t = torch.tensor(self.std, dtype=torch.float64).view(1, -1, 1, 1)
        self._scale = (1.0 / (255.0 * std_t)).to(self.device, dtype)
        self._shift = (-mean_t / std_t).to(self.device, dtype)
        self.epoch = 0
        self._start = 0
        self._flip_bits = None  # (N,) bool on the device, for an alternating flip
        if getattr(augment, "flip_mode", None) == "alternating":
            g = torch.Generator().manual_seed(derive_seed(seed, 0, 2))  # on the CPU: the same on every device
            self._flip_bits = (torch.rand(len(self.x), generator=g) < 0.5).to(self.device)

    def __len__(self) -> int:
        return batch_count(len(self.x), self.batch_size, self.drop_last)

    def set_epoch(self, epoch: int) -> None:
        """Use epoch's permutation and augmentation draws for the next pass."""
        self.epoch = epoch

    def start_at(self, batch_index: int) -> None:
        """Begin the next pass at batch_index, skipping earlier batches (exact resume)."""
        if not 0 <= batch_index <= len(self):
            raise ConfigError(f"cannot start at batch {batch_index}; an epoch has {len(self)}")
        self._start = batch_index

    def order(self, epoch: int | None = None) -> torch.Tensor:
        """The epoch's sample order (N,) int64 on the device."""
        epoch = self.epoch if epoch is None else epoch
        if not self.shuffle:
            return torch.arange(len(self.x), device=self.device)
        # drawn on the CPU: the same order on every device, so a run resumed elsewhere, or
        # tested on the CPU, sees the permutation a GPU run saw; 60k indices cost ~1 ms
        g = torch.Generator().manual_seed(derive_seed(self.seed, epoch, 0))
        return torch.randperm(len(self.x), generator=g).to(self.device)

    def _augment_generator(self, epoch: int, batch_index: int) -> torch.Generator:
        # one generator per batch, seeded from (seed, epoch, batch): a resumed pass makes the
        # same draws for batch k whether or not it made batches 0..k-1
        g = torch.Generator(device=self.device)
        return g.manual_seed(derive_seed(self.seed, epoch, 1, batch_index))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> (x / 255 - mean) / std in self.dtype."""
        x = torch.addcmul(self._shift, x.to(self.dtype), self._scale)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def sample_images(self, n: int) -> torch.Tensor:
        """The first n images (fewer if the set is smaller) as a batch has them, unaugmented:
        normalised, in the batches' dtype and memory layout; (n, C, H, W)."""
        return self.normalise(self.x[:n])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, start = self.epoch, self._start
        self._start = 0
        order = self.order(epoch)
        for i in range(start, len(self)):
            idx = order[batch_slice(i, len(self.x), self.batch_size, self.drop_last)]
            x = self.x[idx]
            if self._flip_bits is not None:
                flip = self._flip_bits[idx] ^ bool(epoch % 2)  # the other side every other epoch
                x = self.augment(x, self._augment_generator(epoch, i), flip_mask=flip)
            elif self.augment is not None:
                x = self.augment(x, self._augment_generator(epoch, i))
            x, y = self.normalise(x), self.y[idx]
            if self.mix is not None:  # host-side draws: no wait on the device
                x, y = self.mix(x, y, random.Random(derive_seed(self.seed, epoch, 3, i)))
            yield x, y
        # a finished pass moves on, so iterating again without set_epoch reshuffles
        self.epoch = epoch + 1
