"""Batch augmentations: shapes, determinism, and that each one does what it says."""

import pytest
import torch

from cnnlab.data import FLIP_KEEPS_LABEL, Augment, default_augment
from cnnlab.data.augment import cutout, random_flip, random_translate
from cnnlab.errors import ConfigError


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _images(n=64, channels=3, side=12, low=1):
    return torch.randint(low, 256, (n, channels, side, side), generator=_gen(9), dtype=torch.uint8)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_shape_and_dtype_kept(dtype):
    x = _images().to(dtype)
    out = Augment(flip=True, translate=2, cutout=4)(x, _gen())
    assert out.shape == x.shape and out.dtype == dtype


def test_same_seed_same_output_other_seed_other_output():
    aug = Augment(flip=True, translate=3, cutout=4, padding="reflect")
    x = _images()
    assert torch.equal(aug(x, _gen(1)), aug(x, _gen(1)))
    assert not torch.equal(aug(x, _gen(1)), aug(x, _gen(2)))


def test_flip_really_flips_about_half():
    x = _images(n=400)
    out = random_flip(x, _gen())
    flipped = (out == x.flip(3)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert (flipped | kept).all()  # each image is either itself or its mirror image
    assert 140 < int(flipped.sum()) < 260
    assert torch.equal(random_flip(x, _gen(), p=1.0), x.flip(3))


def test_translate_shifts_content_and_pads_with_zeros():
    x = _images(n=32, channels=2, side=9)
    p = 2
    out = random_translate(x, _gen(4), p)
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    shifts = []
    for i in range(len(x)):  # the test may loop; the code under test may not
        match = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                 if torch.equal(out[i], padded[i, :, dy:dy + 9, dx:dx + 9])]
        assert match, f"image {i} is not a shifted copy"
        shifts.append(match[0])
    assert len(set(shifts)) > 5  # shifts vary from image to image


def test_translate_reflect_never_pads_with_zeros():
    x = _images(n=16, side=8, low=1)  # no zero pixels in the input
    assert (random_translate(x, _gen(), 3, "reflect") > 0).all()
    assert (random_translate(x, _gen(), 3, "zeros") == 0).any()


@pytest.mark.parametrize("size", [1, 4, 12])
def test_cutout_zeroes_one_square_of_the_right_size(size):
    x = _images(n=40, side=12, low=1)
    out = cutout(x, _gen(5), size)
    zero = out == 0  # (B, C, H, W)
    assert (zero.sum(dim=(2, 3)) == size * size).all()  # every channel, exactly size^2 pixels
    assert torch.equal(zero[:, 0], zero[:, 2])  # the same square on every channel
    rows, cols = zero[:, 0].any(2), zero[:, 0].any(1)  # (B, H), (B, W)
    assert (rows.sum(1) == size).all() and (cols.sum(1) == size).all()  # a square, not scattered
    assert torch.equal(out[~zero], x[~zero])


def test_cutout_too_big():
    with pytest.raises(ConfigError, match="does not fit"):
        cutout(_images(side=6), _gen(), 7)


def test_defaults_flip_only_where_the_label_survives():
    assert default_augment("fashion-mnist").flip and default_augment("cifar10").flip
    assert not default_augment("mnist").flip and not default_augment("kmnist").flip
    assert not default_augment("my-folder").flip
    assert default_augment("cifar10", translate=4).get_config() == \
        {"flip": True, "translate": 4, "cutout": 0, "padding": "reflect"}
    assert set(FLIP_KEEPS_LABEL) >= {"fashion-mnist", "mnist", "kmnist", "cifar10"}


def test_config_round_trip_and_validation():
    aug = Augment(flip=True, translate=2, cutout=3)
    assert Augment(**aug.get_config()).get_config() == aug.get_config()
    with pytest.raises(ConfigError):
        Augment(translate=-1)
    with pytest.raises(ConfigError):
        Augment(padding="wrap")
