"""TensorBatches: shapes, normalisation, seeded shuffling, exact mid-epoch resume."""

import math

import pytest
import torch

from cnnlab.data import Augment, TensorBatches
from cnnlab.errors import ConfigError

N = 103  # not a multiple of the batch size, so the last batch is short


def _data(channels=1):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (N, channels, 6, 6), generator=g, dtype=torch.uint8)
    return x, torch.arange(N)  # label = sample index, so batches show which samples they hold


def _loader(**kw):
    x, y = _data(kw.pop("channels", 1))
    args = dict(shuffle=True, seed=0, mean=(0.5,), std=(0.25,))
    args.update(kw)
    return TensorBatches(x, y, 10, **args)


def test_shapes_dtypes_and_length():
    batches = _loader()
    out = list(batches)
    assert len(batches) == len(out) == math.ceil(N / 10)
    x, y = out[0]
    assert x.shape == (10, 1, 6, 6) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert out[-1][0].shape[0] == 3
    assert batches.x.dtype == torch.uint8 and batches.y.shape == (N,)


def test_drop_last():
    batches = _loader(drop_last=True)
    out = list(batches)
    assert len(batches) == len(out) == N // 10 and all(len(y) == 10 for _, y in out)


def test_a_lone_last_image_joins_the_batch_before_it():
    # 101 images in batches of 10: ten batches, the last of 11 (BatchNorm cannot train on one image)
    x, y = _data()
    batches = TensorBatches(x[:101], y[:101], 10, shuffle=True, seed=0)
    out = list(batches)
    assert len(batches) == len(out) == 10 and [len(b) for _, b in out] == [10] * 9 + [11]
    assert torch.equal(torch.sort(torch.cat([b for _, b in out])).values, torch.arange(101))
    batches.start_at(9)  # resuming at the last batch gives the same 11 images
    batches.set_epoch(0)
    assert torch.equal(next(iter(batches))[1], out[-1][1])
    assert len(TensorBatches(x[:1], y[:1], 10)) == 1 and len(TensorBatches(x[:11], y[:11], 10)) == 1


def test_every_sample_once_per_epoch():
    ys = torch.cat([y for _, y in _loader()])
    assert torch.equal(torch.sort(ys).values, torch.arange(N))
    assert not torch.equal(ys, torch.arange(N))  # actually shuffled


def test_normalisation_values():
    x, _ = _data(channels=3)
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    batches = TensorBatches(x, torch.arange(N), 16, shuffle=False, mean=mean, std=std)
    got = torch.cat([b for b, _ in batches])
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(got, (x.float() / 255 - m) / s, rtol=1e-5, atol=1e-5)


def test_no_shuffle_keeps_order():
    assert torch.equal(torch.cat([y for _, y in _loader(shuffle=False)]), torch.arange(N))


def test_permutation_is_fixed_by_seed_and_epoch():
    first = [y for _, y in _loader(seed=5)]
    again = [y for _, y in _loader(seed=5)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    other_seed = torch.cat([y for _, y in _loader(seed=6)])
    assert not torch.equal(torch.cat(first), other_seed)


def test_epochs_reshuffle_and_set_epoch_replays():
    batches = _loader(seed=1)
    epoch0 = torch.cat([y for _, y in batches])
    epoch1 = torch.cat([y for _, y in batches])  # a finished pass moves on to the next epoch
    assert batches.epoch == 2 and not torch.equal(epoch0, epoch1)
    batches.set_epoch(1)
    assert torch.equal(torch.cat([y for _, y in batches]), epoch1)


def test_start_at_resumes_identically_with_augmentation():
    aug = Augment(flip=True, translate=1, cutout=2)
    full = list(_loader(seed=2, augment=aug))
    resumed = _loader(seed=2, augment=aug)
    resumed.start_at(4)
    tail = list(resumed)
    assert len(tail) == len(full) - 4
    for (xa, ya), (xb, yb) in zip(full[4:], tail):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert len(list(resumed)) == len(full)  # start_at applies to one pass only


def test_augment_sees_uint8_and_labels_stay():
    seen = []

    def spy(x, generator):
        seen.append((x.dtype, generator.device))
        return x.flip(3)

    plain = list(_loader(seed=3))
    flipped = list(_loader(seed=3, augment=spy))
    assert seen[0] == (torch.uint8, torch.device("cpu"))
    for (xa, ya), (xb, yb) in zip(plain, flipped):
        assert torch.equal(ya, yb) and torch.equal(xa.flip(3), xb)


def test_channels_last_and_dtype():
    x, _ = next(iter(_loader(channels=3, mean=(0.5,) * 3, std=(0.25,) * 3,
                             channels_last=True, dtype=torch.bfloat16)))
    assert x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)


def test_bad_arguments():
    x, y = _data()
    with pytest.raises(ConfigError, match="103 images but 5 labels"):
        TensorBatches(x, y[:5], 10)
    with pytest.raises(ConfigError, match="uint8"):
        TensorBatches(x.float(), y, 10)
    with pytest.raises(ConfigError, match="1 or 1 values|mean and std"):
        TensorBatches(x, y, 10, mean=(0.1, 0.2))
    with pytest.raises(ConfigError, match="cannot start at batch 12"):
        TensorBatches(x, y, 10).start_at(12)
